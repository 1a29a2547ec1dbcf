# Names vulture cannot see used, for `./tasks.sh lint`'s dead-code check (vulture, configured
# in pyproject.toml's [tool.vulture]). Never imported or run: each line only mentions a name.
# Syscalls need no entry: functions registered by @syscall are skipped (ignore_decorators).
# Before adding a public method here, prefer a test that calls it.
# ruff: noqa
_ = object()

# The preview1 errno table is the spec's whole list: a guest may be answered any of them,
# through Errno(value) and errno_from_oserror's table, not by name.
_.E2BIG, _.EADDRINUSE, _.EADDRNOTAVAIL, _.EAFNOSUPPORT, _.EALREADY, _.EBADMSG, _.ECANCELED
_.ECHILD, _.EDEADLK, _.EDESTADDRREQ, _.EDOM, _.EIDRM, _.EINPROGRESS, _.EINTR, _.EMLINK
_.EMSGSIZE, _.EMULTIHOP, _.ENETDOWN, _.ENETRESET, _.ENETUNREACH, _.ENOBUFS, _.ENODEV
_.ENOEXEC, _.ENOLCK, _.ENOLINK, _.ENOMSG, _.ENOTEMPTY, _.ENOTRECOVERABLE, _.ENOTTY, _.ENXIO
_.EOWNERDEAD, _.EPERM, _.EPROTONOSUPPORT, _.EPROTOTYPE, _.ERANGE, _.ESRCH, _.ESTALE, _.ETXTBSY

# Parameters a signature must have though the body ignores them: the spec's syscall
# parameters, the C trampoline's argument count, the context-manager protocol.
precision, ri_flags, si_flags  # clock_time_get, sock_recv, sock_send
nvalues  # _bind's trampoline: wasmtime's wasmtime_func_unchecked_callback_t
exc_type, tb  # __exit__(self, exc_type, exc, tb)

# Settings that take effect by assignment: wasmtime.Config and wasmtime.WasiConfig properties.
_.consume_fuel, _.epoch_interruption, _.cranelift_opt_level, _.debug_info
_.wasm_threads, _.wasm_memory64, _.wasm_multi_memory
_.stdout_file, _.stderr_file, _.stdout_custom
_.mtime, _.linkname  # tarfile.TarInfo fields (artifact bundles, their tests)

# Attributes held only to keep an object alive while C code points into it.
_._func  # _capi.FuncCaller: the wasmtime extern behind its raw function address
_._functypes  # EngineHandle: the function types of the host functions defined on its linker
_._blob  # _snapshot.Resetter: the snapshot's contents, whose addresses its runs hold
_.__traceback__  # _remote: cleared so an error sent back to the driver drops the worker's frames

# Names other frameworks call: pytest's hooks and module marks, fixtures requested only for
# their side effect, http.server / socketserver hooks and settings.
pytest_configure, pytest_collection_finish, pytest_unconfigure, pytestmark
cluster, switch_often  # tests/test_ray.py, tests/test_fs_security.py
_.do_GET, _.log_message, _.protocol_version, _.daemon_threads, _.block_on_close
python_tool  # bench/agent_tools/: the agent tools whose lines bench_agent.py counts

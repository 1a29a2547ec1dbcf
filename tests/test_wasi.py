"""Our WASI preview1 layer, exercised by real guests: C programs and WAT calling the syscalls
directly with good and garbage arguments."""

from __future__ import annotations

import gc
import os
import re
import time
import uuid

import pytest

import wasm_sandbox as ws
from tests.conftest import sandbox
from wasm_sandbox._wasi._context import WasiContext
from wasm_sandbox._wasi._registry import SYSCALLS

PREVIEW1 = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
]


def test_syscall_table_covers_every_preview1_function() -> None:
    """Every wasi_snapshot_preview1 function is implemented, with its spec docstring."""
    assert sorted(SYSCALLS) == sorted(PREVIEW1)
    for sc in SYSCALLS.values():
        assert sc.impl.__doc__, sc.name


def test_hello_world(c_guest) -> None:
    """stdout is captured, exit code 0 when main returns 0."""
    result = sandbox(c_guest("probe")).run(["hello"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"hello from wasm\n", b"")
    assert result.ok


def test_args_reach_the_guest_with_program_name(c_guest) -> None:
    """argv[0] is the module's file name, then the arguments, unicode intact."""
    result = sandbox(c_guest("probe")).run(["args", "a b", "ünï", ""])
    assert result.stdout.decode() == f"[{c_guest('probe').name}][args][a b][ünï][]\n"


def test_builder_args_are_the_default(c_guest) -> None:
    """Arguments given to the builder are used when run() gets none."""
    sb = ws.WasmSandbox.builder().source(c_guest("probe")).args("env", "X").env({"X": "1"}).build()
    assert sb.run().stdout == b"1\n"


def test_environment_is_empty_unless_given(c_guest) -> None:
    """The host environment never leaks; given variables are visible."""
    sb = sandbox(c_guest("probe"))
    assert sb.run(["env", "PATH"]).stdout == b"(unset)\n"
    assert sb.run(["env", "GREETING"], env={"GREETING": "hi there"}).stdout == b"hi there\n"


def test_stdin_bytes_and_text(c_guest) -> None:
    """stdin given as bytes or str is what the guest reads."""
    sb = sandbox(c_guest("probe"))
    assert sb.run(["cat"], stdin=b"\x00\x01bytes").stdout == b"\x00\x01bytes"
    assert sb.run(["cat"], stdin="tëxt").stdout == "tëxt".encode()
    assert sb.run(["cat"]).stdout == b""


class _LateStream:
    """A stream without a file descriptor whose data arrives after it is configured."""

    def __init__(self) -> None:
        self.data = b""
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        data, self.data = self.data, b""
        return data


def test_config_stdin_stream_is_read_at_run_not_at_configuration(c_guest) -> None:
    """A stream given as the configured stdin is read by run(), never by building the config
    or the sandbox: data written after build() reaches the guest (a stream without a file
    descriptor, read to its end when the run starts, and a pipe)."""
    stream = _LateStream()
    builder = ws.WasmSandbox.builder().source(c_guest("probe")).stdin(stream)  # type: ignore[arg-type]
    config = builder.config()
    sb = ws.WasmSandbox(config)
    configured: object = config.stdin
    assert stream.reads == 0 and configured is stream
    stream.data = b"written after build"
    assert sb.run(["cat"]).stdout == b"written after build"
    assert stream.reads == 1
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        sb = ws.WasmSandbox.builder().source(c_guest("probe")).stdin(pipe).build()
        os.write(write_end, b"piped late")
        os.close(write_end)
        assert sb.run(["cat"]).stdout == b"piped late"


def test_proc_exit_code_is_a_result_not_an_error(c_guest) -> None:
    """exit(N) gives exit_code N; run() never raises for it."""
    for code in (0, 1, 42, 255):
        assert sandbox(c_guest("probe")).run(["exit", str(code)]).exit_code == code


def test_clock_and_sleep(c_guest) -> None:
    """The monotonic clock advances across a sleep; the realtime clock is near the host's."""
    out = sandbox(c_guest("probe")).run(["clock"]).stdout.split()
    assert 15 <= int(out[0]) < 1000
    assert abs(int(out[1]) - time.time()) < 5


def test_random_differs_between_runs(c_guest) -> None:
    """random_get returns fresh bytes each run."""
    sb = sandbox(c_guest("probe"))
    a, b = (sb.run(["random"]).stdout for _ in range(2))
    assert re.fullmatch(rb"[0-9a-f]{64}\n", a) and a != b


def test_opening_a_file_fails_cleanly_without_mounts(c_guest) -> None:
    """With no files mounted, open() fails with an errno and the report counts no escape."""
    result = sandbox(c_guest("probe")).run(["open", "/etc/passwd"])
    assert result.exit_code == 0
    assert result.stdout.startswith(b"fd=-1 errno=")


def _raw(call: str, params: str, args: str, memory_pages: int = 1) -> ws.WasmSandbox:
    wat = f"""(module
      (import "wasi_snapshot_preview1" "{call}" (func $f {params} (result i32)))
      (memory (export "memory") {memory_pages})
      (func (export "go") (result i32) {args} call $f))"""
    return sandbox(wat.encode())


EBADF, EFAULT, EINVAL, ENOSYS, ENOTSOCK, ESPIPE, ENOTDIR = 8, 21, 28, 52, 57, 70, 54


@pytest.mark.parametrize(
    ("call", "params", "args", "errno"),
    [
        (
            "fd_write",
            "(param i32 i32 i32 i32)",
            "i32.const 1 i32.const 70000 i32.const 1 i32.const 0",
            EFAULT,
        ),
        (
            "fd_write",
            "(param i32 i32 i32 i32)",
            "i32.const 1 i32.const 0 i32.const 1 i32.const 65535",
            EFAULT,
        ),
        (
            "fd_write",
            "(param i32 i32 i32 i32)",
            "i32.const 9 i32.const 0 i32.const 0 i32.const 0",
            EBADF,
        ),
        (
            "fd_read",
            "(param i32 i32 i32 i32)",
            "i32.const 0 i32.const -8 i32.const 1 i32.const 0",
            EFAULT,
        ),
        ("args_get", "(param i32 i32)", "i32.const 65534 i32.const 0", EFAULT),
        ("random_get", "(param i32 i32)", "i32.const 65000 i32.const 1000", EFAULT),
        ("clock_time_get", "(param i32 i64 i32)", "i32.const 99 i64.const 0 i32.const 0", EINVAL),
        ("fd_prestat_get", "(param i32 i32)", "i32.const 3 i32.const 0", EBADF),
        (
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32)",
            "i32.const 3 i32.const 0 i32.const 0 i32.const 1 i32.const 0 i64.const 0 i64.const 0 i32.const 0 i32.const 0",
            EBADF,
        ),
        ("path_unlink_file", "(param i32 i32 i32)", "i32.const 1 i32.const 0 i32.const 1", ENOTDIR),
        (
            "fd_seek",
            "(param i32 i64 i32 i32)",
            "i32.const 1 i64.const 0 i32.const 0 i32.const 0",
            ESPIPE,
        ),
        ("sock_shutdown", "(param i32 i32)", "i32.const 1 i32.const 0", ENOTSOCK),
        ("proc_raise", "(param i32)", "i32.const 9", ENOSYS),
        (
            "poll_oneoff",
            "(param i32 i32 i32 i32)",
            "i32.const 0 i32.const 0 i32.const 0 i32.const 0",
            EINVAL,
        ),
        (
            "poll_oneoff",
            "(param i32 i32 i32 i32)",
            "i32.const 65500 i32.const 0 i32.const 1 i32.const 0",
            EFAULT,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and "(" not in v else None,
)
def test_syscalls_return_errno_for_bad_or_unsupported_calls(
    call: str, params: str, args: str, errno: int
) -> None:
    """Garbage pointers give EFAULT, missing descriptors EBADF, unsupported calls their errno."""
    assert _raw(call, params, args).call("go") == errno


def _contexts_with_arg(marker: bytes) -> list[WasiContext]:
    return [o for o in gc.get_objects() if isinstance(o, WasiContext) and marker in o.args]


@pytest.mark.parametrize(("call", "fd"), [("fd_write", 1), ("fd_read", 0)])
def test_efault_keeps_nothing_of_the_execution_alive(call: str, fd: int) -> None:
    """After a guest made the host raise EFAULT (an iovec outside memory), deleting the
    sandbox frees that execution's WasiContext: no exception object shared between
    executions keeps its frames (the context, a view of the freed memory) alive."""
    wat = f"""(module
      (import "wasi_snapshot_preview1" "{call}" (func $f (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (if (i32.ne (call $f (i32.const {fd}) (i32.const 65532) (i32.const 1) (i32.const 0))
                    (i32.const {EFAULT}))
          (then unreachable))))"""
    marker = f"efault-{uuid.uuid4()}".encode()
    box = sandbox(wat.encode(), keep_instance=True)
    assert box.run(args=[marker.decode()]).exit_code == 0
    box.close()
    del box
    gc.collect()
    assert _contexts_with_arg(marker) == []


def test_module_without_memory_gets_efault() -> None:
    """A guest with no exported memory cannot make the host touch memory."""
    wat = b"""(module
      (import "wasi_snapshot_preview1" "random_get" (func $f (param i32 i32) (result i32)))
      (func (export "go") (result i32) i32.const 0 i32.const 4 call $f))"""
    assert sandbox(wat).call("go") == EFAULT


def test_unknown_import_is_refused_at_build() -> None:
    """Importing anything but preview1 functions is an InvalidModule naming the import."""
    wat = b'(module (import "env" "evil" (func)) (func (export "f")))'
    with pytest.raises(ws.InvalidModule, match=r"env\.evil"):
        sandbox(wat)


def test_wrong_signature_import_is_refused_at_build() -> None:
    """A preview1 import with the wrong signature cannot link."""
    wat = b'(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))) (func (export "f")))'
    with pytest.raises(ws.InvalidModule, match="link"):
        sandbox(wat)


def test_sched_yield_and_fd_fdstat() -> None:
    """sched_yield succeeds; fd_fdstat_get on stdout reports a character device."""
    wat = b"""(module
      (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
      (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $s (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "go") (result i32) call $y i32.const 1 i32.const 0 call $s i32.add)
      (func (export "kind") (result i32) i32.const 0 i32.load8_u))"""
    sb = sandbox(wat, keep_instance=True)
    assert sb.call("go") == 0
    assert sb.call("kind") == 2


def test_fd_close_then_write_is_ebadf() -> None:
    """A closed descriptor stays closed for the rest of the execution."""
    wat = b"""(module
      (import "wasi_snapshot_preview1" "fd_close" (func $c (param i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "go") (result i32)
        i32.const 1 call $c drop
        i32.const 1 i32.const 0 i32.const 0 i32.const 8 call $w))"""
    assert sandbox(wat).call("go") == EBADF


def test_the_door_refuses_guests_without_a_script_runtime() -> None:
    """host.call (a script runtime's door) links for any guest, and without a runtime behind
    it answers -1 ("no host"), touching nothing."""
    wat = """(module
      (import "host" "call" (func $call (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "go") (param i32 i32 i32 i32) (result i32)
        (call $call (local.get 0) (local.get 1) (local.get 2) (local.get 3))))"""
    sandbox = ws.WasmSandbox.builder().source(wat.encode()).build()
    assert sandbox.call("go", 0, 10, 100, 104) == -1
    assert sandbox.call("go", 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1) == -1

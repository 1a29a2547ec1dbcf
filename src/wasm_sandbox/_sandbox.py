"""``WasmSandbox`` (blocking) and ``AsyncWasmSandbox`` (its asyncio twin): build a guest once,
then call its functions or run it as a WASI command, each execution under the limits.
``SandboxCore`` is the internal call API behind both (see ``_invocation``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _errors as e
from ._builder import (
    SandboxBuilder,
    SandboxConfig,
    StdinSource,
    encode_args,
    env_pairs,
    normalize_stdin,
)
from ._config._hostfns import HostFunction
from ._config._mounts import Mount, check_mounts
from ._execution._calls import Command, DataCall, NumericCall, TurnCall
from ._execution._execute import Execution, Outcome, execution_result
from ._execution._plan import ExecutionPlan, Monitoring
from ._execution._preinit import boot_state, preparation, prepared_state
from ._guests._data import DATA_SIGNATURE, encode_kwargs, is_data_module
from ._guests._data import encode_args as encode_data
from ._guests._pypath import PythonPath, python_path
from ._guests._python import guest_env, private_tmp
from ._guests._sources import ScriptSource, load_source, script_source
from ._guests._turns import JavaScriptTurn, ScriptTurn, script_turn
from ._invocation import Invocation, in_thread, sandbox_core
from ._observe._code import CodeError, CodeResult, code_result, failed_code
from ._observe._monitor import ResourceUsage
from ._observe._report import ExecutionResult, MonitoredResult, ProfiledResult
from ._prepare import compile_progress, runtime_module
from ._runtime._engine import CompiledModule, default_cache_dir, get_engine
from ._runtime._snapshot import Snapshot
from ._session import AsyncSession, Session, load_session
from ._units import check_range, count_value
from ._wasi._context import WasiContext
from ._wasi._guard import NetworkStats

if TYPE_CHECKING:
    pass

__all__ = ["AsyncWasmSandbox", "WasmSandbox"]

log = logging.getLogger("wasm_sandbox")
T = TypeVar("T")
_RESERVE = 32 << 20  # free heap a preinitialised Python state keeps (bounded by limit / 4)
_INT_RANGES = {"i32": (-(2**31), 2**32 - 1), "i64": (-(2**63), 2**64 - 1)}


def _progress_callback(config: SandboxConfig, size: int) -> Callable[[str, float], None] | None:
    progress = config.progress
    if callable(progress):
        return progress
    if progress is False or size < (1 << 20):
        return None
    if progress is True or (progress is None and sys.stderr.isatty()):
        return compile_progress(size)
    return None


class WasmSandbox:
    """A compiled guest and the limits it runs under. Thread-safe: isolated calls may run
    concurrently from many threads (each has its own store); a kept instance serialises.
    """

    @staticmethod
    def builder() -> SandboxBuilder:
        """A fluent ``SandboxBuilder``."""
        return SandboxBuilder()

    def __init__(self, config: SandboxConfig) -> None:
        if not isinstance(config, SandboxConfig):
            raise TypeError(f"expected a SandboxConfig, got {type(config).__name__}")
        self.config = config
        cache_root = config.cache_dir or default_cache_dir()
        cache_dir = cache_root if config.use_cache else None
        self._script = script_source(config.source, config.language)
        mounts = config.mount_table
        wasm: bytes | None = None
        extra = PythonPath()
        if self._script is None:
            wasm, self.source_name = load_source(config.source, config.language, cache_dir)
        else:
            runtime_file, digest, needs = runtime_module(self._script.language, cache_root)
            self.source_name = self._script.filename
            extra = python_path(config.python_path, cache_root)
            mounts = _with_runtime_mounts(needs, (*extra.mounts, *mounts), self._script)
        # Python and JavaScript guests run on one compiled runtime, the metered one: fuel costs
        # them about 1.1x, a second (unmetered) compile a minute and 2.5 GB. Without a fuel
        # limit, their budget is unlimited.
        if self._script is not None and config.fuel_metering is False:
            raise e.ConfigurationError(
                f"{self._script.language} guests always count fuel (their runtime is compiled "
                "once, with metering; without a fuel limit the budget is unlimited): "
                "fuel_metering(False) applies to compiled guests only"
            )
        metered = config.metered or self._script is not None
        handle = get_engine(config.optimization_level, config.debug_mode, metered)
        # The build budget bounds what the user's module may cost to build; the Python and
        # JavaScript runtimes are ours (their scripts are not compiled to machine code).
        if wasm is not None:
            progress = _progress_callback(config, len(wasm))
            compiled = handle.load(wasm, cache_dir, progress, config.build_budget)
        else:  # a runtime: from its prepared artifact, without reading the module
            progress = _progress_callback(config, runtime_file.stat().st_size)
            compiled = handle.load_file(runtime_file, digest, cache_dir, progress)
        limits = config.limits
        if limits.memory_bytes is not None and compiled.initial_memory_bytes > limits.memory_bytes:
            raise e.MemoryLimitExceeded(
                compiled.initial_memory_bytes, limits.memory_bytes, "initial"
            )
        plan = ExecutionPlan(
            handle=handle,
            compiled=compiled,
            limits=limits,
            max_output_bytes=config.output_limit,
            verbose=config.verbose_resource_logging,
            profile=config.profile_name,
            mounts=mounts,
            strict_io=config.strict_io_limits,
            io_monitoring=config.io_monitoring_enabled,
            io_callback=config.io_callback,
            network_policy=config.network_policy,
            network_callback=_network_observer(config),
            strict_network=config.strict_network,
            on_stdout=config.on_stdout,
            on_stderr=config.on_stderr,
            monitoring=_monitoring(config),
            scaler=config.auto_scaler,
            debug=config.debug_mode,
            host_functions={f.name: f for f in config.host_functions},
        )
        calls: Execution | None = None  # fresh calls' execution, when not the runs'
        if self._script is not None:
            plan, calls = _script_plan(plan, self._script, config, cache_dir, extra)
        execution = Execution(plan, keep_instance=config.keep_instance)
        if config.auto_scaler is not None:  # its first limits are this sandbox's
            config.auto_scaler.limits_for(limits, compiled.initial_memory_bytes)
        self._compiled = compiled
        self._core = SandboxCore(
            config, self._script, execution, compiled, self.source_name, calls, extra.entries
        )
        if config.debug_mode:
            log.debug(
                "sandbox built",
                extra={"source": self.source_name, "from_cache": compiled.from_cache},
            )

    # --- introspection ------------------------------------------------------------------

    @property
    def exports(self) -> Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Exported functions (read-only): name -> (parameter types, result types). Empty
        for a Python guest, whose functions exist only once its source has run."""
        return self._core.exports

    @property
    def host_functions(self) -> tuple[HostFunction, ...]:
        """The host functions guests may call (name, description, schema, fn), in the order
        they were added; read-only (``SandboxBuilder.host_function``)."""
        return tuple(self.config.host_functions)

    @property
    def language(self) -> str:
        """``"python"`` or ``"javascript"`` for a script guest, else ``"wasm"`` (whatever
        the module was compiled from)."""
        return "wasm" if self._script is None else self._script.language

    @property
    def from_cache(self) -> bool:
        """True when the compiled module came from the on-disk cache."""
        return self._compiled.from_cache

    # --- calling ------------------------------------------------------------------------

    def call(self, export: str, *args: Any, **kwargs: Any) -> Any:
        """Call function ``export``; returns its result.

        Numeric functions take and return numbers (None for no result, a tuple for several).
        Data functions (the JSON data ABI: ``alloc``/``dealloc`` exports and a
        ``(ptr, len) -> i64`` signature) take any JSON values and bytes and return the
        guest's value; an error the guest reports raises ``GuestError``.

        For a Python or JavaScript guest, ``export`` is a function its source defines: each
        call runs the source in a fresh interpreter, then the function with ``args`` and
        ``kwargs`` (JSON values and bytes; in JavaScript the keywords arrive as one trailing
        object); an exception it raises comes back as ``GuestError`` with the guest's type,
        message and traceback."""
        return self._core.call(export, args, kwargs).value

    def session(
        self,
        timeout: timedelta | float | str | None = None,
        replay_timeout: timedelta | float | str | None = None,
    ) -> Session:
        """A ``Session``: one interpreter kept across statements, with this sandbox's limits
        (Python and JavaScript guests). The source is run once when it opens. ``timeout``:
        an optional wall-clock budget for the whole session (a timedelta, seconds or "5m").
        ``replay_timeout``: the longest a restore's replay may take (default: the
        per-statement timeout), beyond which the session is lost instead."""
        return Session(self, timeout, replay_timeout)

    def load_session(
        self,
        path: str | Path,
        timeout: timedelta | float | str | None = None,
        replay_timeout: timedelta | float | str | None = None,
    ) -> Session:
        """The session a ``Session.save`` wrote to ``path`` (in this process or another, on
        this machine or one with the same runtime), continuing where it stopped, with this
        sandbox's limits (``timeout`` and ``replay_timeout`` as for ``session``).
        ``SnapshotError`` for a file saved from another runtime or sandbox configuration
        (source, language, mounts), or one that is truncated or altered."""
        return load_session(self._core, path, timeout, replay_timeout)

    def call_with_profiling(self, export: str, *args: Any) -> ProfiledResult:
        """Call ``export`` and return its value with time, fuel and operator counts.

        On a sandbox that does not meter fuel, the call runs on a metered twin of it.
        """
        return _profiled(self._core.metered().invoke(Invocation.call(export, args)))

    def call_with_detailed_monitoring(
        self, export: str, *args: Any, **kwargs: Any
    ) -> MonitoredResult:
        """Call ``export`` (arguments as for ``call``) and return its value with a full
        ``ResourceReport`` and what the guest printed during the call."""
        return _monitored(self._core.invoke(Invocation.call(export, args, kwargs)))

    def run(
        self,
        args: Sequence[str] | None = None,
        stdin: StdinSource = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Run the module as a WASI command (its ``_start``); the exit code is a result.

        ``args`` (after argv[0]), ``stdin`` and ``env`` override the builder's for this run.
        """
        invocation = Invocation(kind="run", argv=args, stdin=stdin, env=env)
        return execution_result(self._core.invoke(invocation))

    def run_code(
        self,
        code: str,
        *,
        stdin: StdinSource = None,
        env: Mapping[str, str] | None = None,
    ) -> CodeResult:
        """Run ``code`` (Python or JavaScript source, as this sandbox's language) in a fresh
        interpreter, as a notebook cell: after the sandbox's own source (its functions and
        globals are there) and its ``preinitialize`` setup; ``result`` is the value of the
        last statement when it is an expression, as plain JSON values.

        Never raises for what the code does: an exception it raises, a limit that stops it
        and a non-zero exit are a ``CodeResult`` whose ``error`` is set, with what it printed
        until then. ``stdin`` and ``env`` are for this run (default: none, and the builder's).
        """
        return self._core.run_code(code, self._core.new_context(None, stdin, env))

    def close(self) -> None:
        """Release a kept instance. Isolated sandboxes hold nothing between calls."""
        self._core.close()

    def __enter__(self) -> WasmSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SandboxCore:
    """The internal call API of one ``WasmSandbox`` (module notes of ``_invocation``): the
    one entry point of calls and runs, for the sandbox's public methods, its asyncio twin,
    sessions, the load balancer and the process and Ray backends. Not public API."""

    def __init__(
        self,
        config: SandboxConfig,
        script: ScriptSource | None,
        execution: Execution,
        compiled: CompiledModule,
        source_name: str,
        calls: Execution | None = None,
        path: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.script = script
        """The Python or JavaScript guest, or None for a WebAssembly module."""
        self._execution = execution
        # Calls start from the state preinitialize() left, where the source is loaded
        # already (its own execution); otherwise they share the runs' execution.
        self._calls = execution if calls is None else calls
        self._loaded = calls is not None
        self._data_module = is_data_module(dict(compiled.functions))
        self.exports = MappingProxyType(
            {
                name: sig
                for name, sig in compiled.functions.items()
                if not name.startswith("__wsbx_") and script is None
            }
        )
        self._argv0 = Path(source_name).name.encode()
        self._args = [self._argv0, *encode_args(config.args)]
        self._env = list(_guest_env(script, config.env))
        self._path = list(path)  # a Python guest's python_path entries, sent in requests
        self._profiler: SandboxCore | None = None

    @property
    def plan(self) -> ExecutionPlan:
        """What every execution of this sandbox is made of (a session keeps its own
        instance of the same plan)."""
        return self._execution.plan

    def new_context(
        self,
        args: Sequence[str] | None = None,
        stdin: StdinSource = None,
        env: Mapping[str, str] | None = None,
        use_config_stdin: bool = False,
    ) -> WasiContext:
        """A fresh context for one execution: ``args``, ``stdin`` and ``env`` or the
        configured ones (the configured stdin only with ``use_config_stdin``: a run's)."""
        config = self.config
        argv = self._args if args is None else [self._argv0, *encode_args(args)]
        envv = self._env if env is None else list(_guest_env(self.script, env_pairs(env)))
        if stdin is None and use_config_stdin:
            stdin = config.stdin  # a stream is read now, at the run: never at configuration
        source = normalize_stdin(stdin)
        return self._execution.new_context(argv, envv, source)

    def prepare(self, invocation: Invocation) -> WasiContext:
        """The context ``invocation`` will run in (made before it runs, so an asyncio twin
        can cancel it), with the invocation's extra deadline composed in."""
        if invocation.kind == "run":
            ctx = self.new_context(
                invocation.argv, invocation.stdin, invocation.env, use_config_stdin=True
            )
        else:
            ctx = self.new_context()
        if invocation.limits is not None:
            ctx.run_under(invocation.limits)
        if invocation.deadline is not None:
            ctx.cap_deadline(invocation.deadline)
        return ctx

    def call(self, export: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Outcome:
        """A plain call: ``invoke`` of ``Invocation.call(export, args, kwargs)`` without
        building the invocation (the hot path of ``WasmSandbox.call``)."""
        ctx = self._execution.new_context(self._args, self._env, None)
        return self._call(export, args, ctx, kwargs)

    def invoke(self, invocation: Invocation, ctx: WasiContext | None = None) -> Outcome:
        """Run ``invocation`` (in ``ctx`` when given, from ``prepare``): the one entry point
        of calls and runs."""
        ctx = ctx if ctx is not None else self.prepare(invocation)
        if invocation.kind == "run":
            return self._run(ctx)
        return self._call(invocation.export, invocation.args, ctx, kwargs=invocation.kwargs)

    def run_code(self, code: str, ctx: WasiContext) -> CodeResult:
        """Run ``code`` as a cell (``WasmSandbox.run_code``) in ``ctx``."""
        try:
            outcome = self._calls.execute(ctx, TurnCall(self._cell(code), command=True))
        except e.ExecutionError as exc:
            return failed_code(exc)
        streams = outcome.ctx.streams
        error = None
        if outcome.exit_code != 0:
            error = CodeError("SystemExit", f"the code exited with status {outcome.exit_code}")
        value = outcome.value if error is None else None
        stdout, stderr = bytes(streams.stdout.data), bytes(streams.stderr.data)
        return code_result(stdout, stderr, outcome.report, value, error)

    def _cell(self, code: str) -> ScriptTurn:
        script = self.script
        if script is None:
            raise e.ConfigurationError(
                "run_code runs Python or JavaScript source: this sandbox runs a WebAssembly "
                "module (use call() or run())"
            )
        if not isinstance(code, str):
            raise TypeError(f"the code must be a str, got {type(code).__name__}")
        has_script = bool(script.text.strip())
        if script.language == "python":
            if self._loaded:  # preinitialize() loaded the source: its names, not a rerun
                return self.turn("cell", code, loaded=True)
            return self.turn("cell", code, script=script.text if has_script else None)
        prelude = (script.text, script.filename) if has_script and not self._loaded else None
        return JavaScriptTurn({"op": "cell"}, code, "<cell>", prelude)

    def turn(self, op: str, source: str | None = None, **fields: Any) -> ScriptTurn:
        """The turn that asks this sandbox's script runtime for ``op`` (``source``: the guest
        code it evaluates first: the script, or a session's statement)."""
        script = self.script
        if script is None:
            raise e.ConfigurationError("this sandbox runs no script")
        request: dict[str, Any] = {"op": op, **fields}
        if script.language == "python":
            if source is not None:
                request["source"] = source
            if op in _NAMED_OPS:  # the ops that name the script (a session's statement does not)
                request.setdefault("filename", script.filename)
                request.setdefault("module", script.module)
                if self._path:  # on sys.path before the script runs (once per instance)
                    request["path"] = self._path
        return script_turn(script.language, request, source, script.filename)

    def metered(self) -> SandboxCore:
        """This sandbox if it counts fuel, else a twin of it that does (built once)."""
        if self.plan.handle.metered:
            return self
        if self.config.keep_instance:
            raise e.ConfigurationError(
                "call_with_profiling counts fuel, and this sandbox keeps an instance without "
                "fuel metering: build it with .fuel_metering(True) or a max_fuel"
            )
        if self._profiler is None:
            self._profiler = sandbox_core(WasmSandbox(self.config.replace(fuel_metering=True)))
        return self._profiler

    def close(self) -> None:
        """Release a kept instance."""
        self._execution.close()
        self._calls.close()

    def _check_call(self, export: str, args: tuple[Any, ...]) -> bytes | None:
        """Check a call's arguments; returns the JSON payload of a data call, else None."""
        if not isinstance(export, str):
            raise TypeError(f"the function name must be a str, got {type(export).__name__}")
        signature = self.exports.get(export)
        if signature is None:
            raise e.FunctionNotFound(export, tuple(self.exports))
        if self._data_module and signature == DATA_SIGNATURE:
            return encode_data(args)
        params, _ = signature
        if len(args) != len(params):
            raise e.InvalidArguments(
                f"{export}({', '.join(params)}) takes {len(params)} argument(s), got {len(args)}"
            )
        for index, (value, kind) in enumerate(zip(args, params, strict=True)):
            _check_value(export, index, value, kind)
        return None

    def _call(
        self,
        export: str,
        args: tuple[Any, ...],
        ctx: WasiContext,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Outcome:
        if self.script is not None:
            turn = self._script_call(export, args, kwargs or {})
            return self._calls.execute(ctx, TurnCall(turn))
        if kwargs:
            raise e.InvalidArguments(
                "keyword arguments are for Python guests; WebAssembly functions take "
                "positional arguments only"
            )
        payload = self._check_call(export, args)
        call = NumericCall(export, args) if payload is None else DataCall(export, payload)
        return self._execution.execute(ctx, call)

    def _script_call(
        self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> ScriptTurn:
        if not isinstance(name, str):
            raise TypeError(f"the function name must be a str, got {type(name).__name__}")
        assert self.script is not None
        fields = {
            "args": encode_data(args).decode(),
            "kwargs": encode_kwargs(dict(kwargs)).decode(),
        }
        if self._loaded:  # preinitialize() loaded the source: it is not run again
            return self.turn("call", None, fn=name, loaded=True, **fields)
        if self.config.setup is not None:  # the source sees what the setup defined
            return self.turn("call", self.script.text, fn=name, prelude=True, **fields)
        return self.turn("call", self.script.text, fn=name, **fields)

    def _run(self, ctx: WasiContext) -> Outcome:
        script = self.script
        if script is not None:
            argv = [script.filename, *(a.decode("utf-8", "surrogateescape") for a in ctx.args[1:])]
            turn = self.turn("run", script.text, argv=argv)
            return self._execution.execute(ctx, TurnCall(turn, command=True))
        if "_start" not in self.exports:
            raise _no_start(self.exports)
        return self._execution.execute(ctx, Command())


def _no_start(exports: Mapping[str, object]) -> e.FunctionNotFound:
    """``run()`` of a library module: the error points to ``call()`` and what it can call."""
    names = tuple(n for n in exports if not n.startswith("_") and n not in _PLUMBING)
    problem = "this module has no _start (it is not a WASI command)"
    if not names:
        return e.FunctionNotFound("_start", (), f"{problem} and exports no function to call()")
    listed = e.FunctionNotFound.listed(names)
    return e.FunctionNotFound(
        "_start", names, f"{problem}: call one of its exports with call(name, ...): {listed}"
    )


_PLUMBING = frozenset({"alloc", "dealloc"})  # the data ABI's, not functions to call
_net_log = logging.getLogger("wasm_sandbox.network")
# Python requests that read filename and module
_NAMED_OPS = frozenset({"load", "call", "run", "cell"})


def _script_plan(
    plan: ExecutionPlan,
    script: ScriptSource,
    config: SandboxConfig,
    cache_dir: Path | None,
    extra: PythonPath,
) -> tuple[ExecutionPlan, Execution | None]:
    """A script runtime's plan, whose new instances start from its booted driver, or from
    the state ``preinitialize`` made with a setup; and, when preinitialize loaded the source
    instead, the execution of calls, whose instances start from that state."""
    env = _guest_env(script, config.env)
    plan = dataclasses.replace(plan, start=boot_state(plan, script.language, env, cache_dir))
    if not config.preinitialize:
        return plan, None
    prepared = _preinitialized(plan, script, config, cache_dir, extra)
    if config.setup is not None:  # every fresh execution starts after it
        return dataclasses.replace(plan, start=prepared), None
    calls = Execution(plan)  # calls use the loaded source; runs and sessions run it
    calls.start_from(prepared)
    return plan, calls


def _preinitialized(
    plan: ExecutionPlan,
    script: ScriptSource,
    config: SandboxConfig,
    cache_dir: Path | None,
    extra: PythonPath,
) -> Snapshot:
    """The state ``preinitialize()`` prepares (``_execution._preinit``). Not cached on disk,
    nor shared in this process, when the sandbox mounts host directories: the setup may read
    files that change later (python_path directories are keyed by what they hold instead)."""
    env = _guest_env(script, config.env)
    shareable = not any(mount.host_path is not None for mount in config.mount_table)
    limit = config.limits.memory_bytes
    reserve = _RESERVE if limit is None else min(_RESERVE, limit // 4)
    path = tuple(zip(extra.entries, extra.identity, strict=True))
    prepared = preparation(script, config.setup, env, cache_dir, shareable, reserve, path)
    return prepared_state(plan, prepared)


def _guest_env(script: ScriptSource | None, pairs: Sequence[tuple[str, str]]) -> tuple[bytes, ...]:
    """The environment a guest sees (``NAME=value``): a Python guest's over ``guest_env``'s
    defaults (its private /tmp, matplotlib's settings)."""
    if script is not None and script.language == "python":
        pairs = guest_env(tuple(pairs))
    return tuple(f"{k}={v}".encode() for k, v in pairs)


def _monitoring(config: SandboxConfig) -> Monitoring | None:
    """Live monitoring when samples or alerts are wanted."""
    if not config.resource_monitoring_enabled and config.resource_monitor is None:
        return None
    callback = config.resource_callback
    if callback is None and config.resource_monitoring:
        callback = _log_usage
    interval = config.sampling_interval.total_seconds()
    return Monitoring(interval, callback, config.resource_monitor)


_usage_log = logging.getLogger("wasm_sandbox.resources")


def _log_usage(usage: ResourceUsage) -> None:
    _usage_log.debug("resource usage", extra={"usage": usage})


def _network_observer(config: SandboxConfig) -> Callable[[NetworkStats], object] | None:
    """The network callback, or with monitoring on and no callback, the debug log."""
    if not config.network_monitoring_enabled:
        return None
    if config.network_callback is not None:
        return config.network_callback
    return lambda stats: _net_log.debug("network usage", extra={"network": stats})


def _with_runtime_mounts(
    runtime: tuple[Mount, ...], mounts: tuple[Mount, ...], script: ScriptSource
) -> tuple[Mount, ...]:
    """The runtime's own mounts (which may nest in one another: matplotlib's data is inside
    the stdlib zip's path), then ``mounts``, then a Python guest's private /tmp."""
    for own in runtime:
        for mount in mounts:
            if (
                mount.guest_path == "/"
                or own.guest_path.startswith(mount.guest_path.rstrip("/") + "/")
                or mount.guest_path.startswith(own.guest_path)
            ):
                raise e.ConfigurationError(
                    f"mount at {mount.guest_path!r} overlaps {own.guest_path}, where a Python "
                    "guest sees its standard library; mount elsewhere"
                )
    mounts = check_mounts(mounts)
    tmp = private_tmp(mounts) if script.language == "python" else None
    return (*runtime, *mounts) if tmp is None else (*runtime, *mounts, tmp)


def _check_value(export: str, index: int, value: Any, kind: str) -> None:
    where = f"argument {index} of {export} ({kind})"
    if kind in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise e.InvalidArguments(f"{where} must be an int, got {type(value).__name__}")
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise e.InvalidArguments(f"{where} is out of range: {value}")
    elif kind in ("f32", "f64"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise e.InvalidArguments(f"{where} must be a float, got {type(value).__name__}")
        if isinstance(value, int) and not math.isfinite(float(value)):
            raise e.InvalidArguments(f"{where} is out of range: {value}")
    else:
        raise e.InvalidArguments(f"{where}: parameters of type {kind} cannot be passed from Python")


def _monitored(outcome: Outcome) -> MonitoredResult:
    return MonitoredResult(
        value=outcome.value,
        resource_report=outcome.report,
        stdout=bytes(outcome.ctx.streams.stdout.data),
        stderr=bytes(outcome.ctx.streams.stderr.data),
    )


def _profiled(outcome: Outcome) -> ProfiledResult:
    report = outcome.report
    fuel = report.fuel_consumed if report.fuel_consumed is not None else 0
    return ProfiledResult(
        value=outcome.value,
        execution_time=report.execution_time,
        fuel_consumed=fuel,
        instruction_count=fuel,
    )


class AsyncWasmSandbox:
    """The asyncio twin of ``WasmSandbox``: same methods, as coroutines that run the guest in
    a worker thread. Cancelling the awaiting task stops the guest (``ExecutionCancelled``
    inside, ``CancelledError`` to the caller) within a few milliseconds.
    """

    def __init__(self, sandbox: WasmSandbox, max_concurrency: int | None = None) -> None:
        """``max_concurrency``: how many of this sandbox's calls run at once, each on a
        thread of its own pool (more wait for one); None (the default) runs them on the event
        loop's default executor (Python's default: ``min(32, CPUs + 4)`` threads, shared with
        everything else the loop runs in threads). Either way a call's time limit counts from
        when its guest starts, not while it waits for a thread."""
        self.sync = sandbox
        self._core = sandbox_core(sandbox)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if max_concurrency is not None:
            count = count_value("max_concurrency", max_concurrency)
            check_range("max_concurrency", count, 1, 4096)
            self._executor = concurrent.futures.ThreadPoolExecutor(
                count, thread_name_prefix="wasm-sandbox-async"
            )

    @classmethod
    async def create(
        cls, config: SandboxConfig, max_concurrency: int | None = None
    ) -> AsyncWasmSandbox:
        """Build (load and compile) off the event loop (``max_concurrency``: see the
        constructor)."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

        return cls(await asyncio.to_thread(WasmSandbox, config), max_concurrency)

    @staticmethod
    def builder() -> SandboxBuilder:
        """A fluent ``SandboxBuilder``; finish it with ``await builder.build_async()``."""
        return SandboxBuilder()

    @property
    def exports(self) -> Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Exported functions (read-only): name -> (parameter types, result types)."""
        return self.sync.exports

    @property
    def host_functions(self) -> tuple[HostFunction, ...]:
        """The host functions guests may call (see ``WasmSandbox.host_functions``)."""
        return self.sync.host_functions

    async def _invoke(self, invocation: Invocation, core: SandboxCore | None = None) -> Outcome:
        """Run ``invocation`` on a worker thread; cancelling the task stops the guest."""
        core = core if core is not None else self._core
        ctx = core.prepare(invocation)
        work = functools.partial(core.invoke, invocation, ctx)
        return await in_thread(ctx, work, executor=self._executor)

    async def call(self, export: str, *args: Any, **kwargs: Any) -> Any:
        """Coroutine twin of ``WasmSandbox.call``."""
        return (await self._invoke(Invocation.call(export, args, kwargs))).value

    async def call_with_profiling(self, export: str, *args: Any) -> ProfiledResult:
        """Coroutine twin of ``WasmSandbox.call_with_profiling``."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

        core = await asyncio.to_thread(self._core.metered)
        return _profiled(await self._invoke(Invocation.call(export, args), core))

    async def call_with_detailed_monitoring(
        self, export: str, *args: Any, **kwargs: Any
    ) -> MonitoredResult:
        """Coroutine twin of ``WasmSandbox.call_with_detailed_monitoring``."""
        return _monitored(await self._invoke(Invocation.call(export, args, kwargs)))

    async def run_code(
        self,
        code: str,
        *,
        stdin: StdinSource = None,
        env: Mapping[str, str] | None = None,
    ) -> CodeResult:
        """Coroutine twin of ``WasmSandbox.run_code`` (cancelling the task stops the code and
        raises ``CancelledError``, as for a call)."""
        core = self._core
        ctx = core.new_context(None, stdin, env)
        work = functools.partial(core.run_code, code, ctx)
        return await in_thread(ctx, work, executor=self._executor)

    async def run(
        self,
        args: Sequence[str] | None = None,
        stdin: StdinSource = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Coroutine twin of ``WasmSandbox.run``."""
        invocation = Invocation(kind="run", argv=args, stdin=stdin, env=env)
        return execution_result(await self._invoke(invocation))

    async def session(
        self,
        timeout: timedelta | float | str | None = None,
        replay_timeout: timedelta | float | str | None = None,
    ) -> AsyncSession:
        """Coroutine twin of ``WasmSandbox.session``: an ``AsyncSession`` (opened off the
        event loop)."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

        session = await asyncio.to_thread(Session, self.sync, timeout, replay_timeout)
        return AsyncSession(session)

    async def load_session(
        self,
        path: str | Path,
        timeout: timedelta | float | str | None = None,
        replay_timeout: timedelta | float | str | None = None,
    ) -> AsyncSession:
        """Coroutine twin of ``WasmSandbox.load_session``: an ``AsyncSession``."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

        session = await asyncio.to_thread(self.sync.load_session, path, timeout, replay_timeout)
        return AsyncSession(session)

    async def close(self) -> None:
        """Release a kept instance, and the threads of ``max_concurrency``'s pool."""
        self.sync.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncWasmSandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

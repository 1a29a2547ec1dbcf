"""One execution: a store and instance under limits, a deadline, accounting, and the
translation of how the guest ended into a value, an ``ExecutionResult`` or one error.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

from . import _errors as e
from ._autoscale import AutoScaler
from ._data import OutOfAddressSpace, decode_result
from ._engine import UNLIMITED_FUEL, CompiledModule, EngineHandle, GuestFailure, GuestInstance
from ._iomonitor import IoObserver, IoOperation
from ._limits import WASM_PAGE, ResourceLimits
from ._metrics import notify_report, observing
from ._monitor import MemoryUsage, ResourceMonitor, ResourceUsage, Sampler
from ._mounts import Mount
from ._network import NetworkGuard, NetworkPolicy, NetworkStats
from ._report import ExecutionResult, ResourceReport, summary_line
from ._traps import check_after_foreign_init
from ._turns import ScriptTurn
from ._wasi._bind import HostBinding
from ._wasi._context import (
    GuestStop,
    OutputBuffer,
    Stdin,
    StopReason,
    WasiContext,
    compose_deadline,
)
from ._wasi._fs import FdTable
from ._wasm import START_EXPORT

__all__ = ["Execution", "ExecutionPlan", "Outcome"]

log = logging.getLogger("wasm_sandbox")

_TRAPS: dict[str, type[e.GuestTrap]] = {
    "stack_overflow": e.StackOverflow,
    "memory_out_of_bounds": e.MemoryAccessOutOfBounds,
    "heap_misaligned": e.MemoryAccessOutOfBounds,
    "unreachable": e.UnreachableExecuted,
    "integer_division_by_zero": e.IntegerDivisionByZero,
    "integer_overflow": e.IntegerOverflow,
    "bad_conversion_to_integer": e.InvalidConversionToInteger,
    "table_out_of_bounds": e.TableAccessOutOfBounds,
    "indirect_call_to_null": e.IndirectCallError,
    "bad_signature": e.IndirectCallError,
}
_DEFAULT_BUFFER = 64 * 1024
INITIALIZE_EXPORT = "_initialize"
ADDRESS_SPACE = 1 << 32  # what a 32-bit guest can address at most


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """What every execution of one sandbox shares: module, engine, limits, I/O settings."""

    handle: EngineHandle
    compiled: CompiledModule
    limits: ResourceLimits
    max_output_bytes: int
    verbose: bool
    profile: str | None = None
    mounts: tuple[Mount, ...] = ()
    strict_io: bool = False
    io_monitoring: bool = False
    io_callback: Callable[[IoOperation], object] | None = None
    network_policy: NetworkPolicy = NetworkPolicy()  # noqa: RUF009 - frozen, immutable
    network_callback: Callable[[NetworkStats], object] | None = None
    strict_network: bool = False
    monitoring: Monitoring | None = None
    scaler: AutoScaler | None = None
    debug: bool = False  # debug_mode: each execution's report logged at DEBUG (INFO if verbose)


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Live monitoring of every execution: sample interval, sample callback, thresholds."""

    interval: float
    callback: Callable[[ResourceUsage], object] | None
    monitor: ResourceMonitor | None


class Measurement:
    """The raw figures of one execution, read while its instance still exists."""

    __slots__ = ("denied", "elapsed", "fuel_consumed", "peak_memory")

    def __init__(self, ctx: WasiContext, instance: GuestInstance | None, fuel: int) -> None:
        self.elapsed = time.monotonic() - ctx.start
        left = instance.fuel_left() if instance is not None else None
        self.fuel_consumed = fuel - left if left is not None else None
        self.peak_memory = instance.memory_bytes() if instance is not None else 0
        self.denied = instance.memory_denial() if instance is not None else None


class Outcome:
    """How an execution ended: a value (call) or exit code (run), plus what it used.

    The ``ResourceReport`` is built on first access: plain ``call()`` never pays for it.
    """

    __slots__ = ("_report", "ctx", "exit_code", "measurement", "outcome", "plan", "value")

    def __init__(
        self,
        value: Any,
        exit_code: int,
        ctx: WasiContext,
        plan: ExecutionPlan,
        measurement: Measurement,
        outcome: str,
    ) -> None:
        self.value = value
        self.exit_code = exit_code
        self.ctx = ctx
        self.plan = plan
        self.measurement = measurement
        self.outcome = outcome
        self._report: ResourceReport | None = None

    @property
    def report(self) -> ResourceReport:
        """What the execution used."""
        if self._report is None:
            self._report = _build_report(self)
        return self._report


def _log_report(
    plan: ExecutionPlan, what: str, outcome: Outcome, error: BaseException | None = None
) -> None:
    """With verbose_resource_logging (INFO) or debug_mode (DEBUG), one record per execution
    whose message carries the report's main figures (the whole report is in ``extra``)."""
    level = logging.INFO if plan.verbose else logging.DEBUG if plan.debug else None
    if level is None or not log.isEnabledFor(level):
        return
    report = outcome.report
    ending = "" if error is None else f" ({error})"
    extra = {"report": report.to_dict()}
    log.log(level, "%s: %s%s", what, summary_line(report), ending, extra=extra)


def _build_report(outcome: Outcome) -> ResourceReport:
    ctx, measured = outcome.ctx, outcome.measurement
    limits = ctx.limits or outcome.plan.limits
    net = ctx.net
    return ResourceReport(
        execution_time=timedelta(seconds=measured.elapsed),
        peak_memory_bytes=measured.peak_memory,
        fuel_consumed=measured.fuel_consumed,
        file_operations=ctx.file_calls,
        network_requests=net.requests if net is not None else 0,
        bytes_transferred=net.sent + net.received if net is not None else 0,
        network_bytes_sent=net.sent if net is not None else 0,
        network_bytes_received=net.received if net is not None else 0,
        network_refusals=net.refusals if net is not None else 0,
        network_limits_hit=dict(ctx.network_limits_hit),
        network_callback_errors=tuple(net.callback_errors) if net is not None else (),
        alerts=tuple(ctx.sampler.alerts) if ctx.sampler is not None else (),
        monitoring_samples=ctx.sampler.samples if ctx.sampler is not None else 0,
        monitoring_callback_errors=(
            tuple(ctx.sampler.callback_errors) if ctx.sampler is not None else ()
        ),
        syscalls=ctx.syscalls,
        stdout_bytes=ctx.stdout.total,
        stderr_bytes=ctx.stderr.total,
        memory_limit_bytes=limits.memory_bytes,
        fuel_limit=limits.max_fuel,
        timeout=limits.execution_timeout,
        memory_limit_hit=measured.denied is not None,
        outcome=outcome.outcome,
        profile=outcome.plan.profile,
        bytes_read=ctx.bytes_read,
        bytes_written=ctx.bytes_written,
        io_limits_hit=dict(ctx.limits_hit),
        security_events=tuple(ctx.security_events),
        io_callback_errors=tuple(ctx.io.errors) if ctx.io is not None else (),
        io_errors=tuple(ctx.io_errors),
    )


class Execution:
    """Runs guest code under a plan. With ``keep_instance`` the instance lives across calls."""

    def __init__(self, plan: ExecutionPlan, keep_instance: bool = False) -> None:
        self.plan = plan
        self.keep_instance = keep_instance
        self._kept: GuestInstance | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the kept instance, if any."""
        with self._lock:
            if self._kept is not None:
                self._kept.close()
                self._kept = None

    def new_context(
        self,
        args: list[bytes],
        env: list[bytes],
        stdin: bytes | BinaryIO | None,
        limits: ResourceLimits | None = None,
    ) -> WasiContext:
        """A fresh WASI context whose deadline starts now (``limits``: this execution's own,
        instead of the plan's: an auto-scaler's)."""
        cap = self.plan.max_output_bytes
        ctx = WasiContext(args, env, Stdin(stdin), OutputBuffer(cap), OutputBuffer(cap))
        ctx.limits = limits
        limits = limits or self.plan.limits
        ctx.memory_limit = limits.memory_bytes
        ctx.fds_limit = limits.max_open_files
        ctx.directory_entries_limit = limits.max_directory_entries
        ctx.file_size_limit = limits.max_file_size
        ctx.total_write_limit = limits.max_total_file_size
        ctx.file_ops_limit = limits.max_file_operations
        ctx.strict_io = self.plan.strict_io
        if self.plan.io_monitoring:
            ctx.io = IoObserver(self.plan.io_callback)
        if limits.buffer_size is not None or limits.io_batch_size is not None:
            ctx.buffer_size = limits.buffer_size or _DEFAULT_BUFFER
            ctx.io_batch_size = limits.io_batch_size
        ctx.net = NetworkGuard(
            self.plan.network_policy,
            max_connections=limits.max_connections,
            max_requests_per_second=limits.max_requests_per_second,
            max_upload_bytes=limits.max_upload_bytes,
            max_download_bytes=limits.max_download_bytes,
            network_timeout=_seconds(limits.network_timeout),
            connect_timeout=_seconds(limits.connect_timeout),
            strict=self.plan.strict_network,
            callback=self.plan.network_callback,
        )
        ctx.deadline = compose_deadline(ctx.start, _seconds(limits.execution_timeout), ())
        return ctx

    def execute(
        self,
        ctx: WasiContext,
        export: str,
        args: tuple[Any, ...],
        *,
        command: bool,
        payload: bytes | None = None,
        script: ScriptTurn | None = None,
    ) -> Outcome:
        """Run ``export`` (``command``: a WASI ``_start``, exit codes are results; with a
        ``payload``: a data call, ``args`` ignored; with a ``script``: one turn of a script
        runtime, whose answer comes through the door)."""
        check_after_foreign_init()
        restore = _catch_sigint(ctx)
        try:
            if self.keep_instance:
                with self._lock:
                    return self._execute(ctx, export, args, command, payload, script)
            scaler = self.plan.scaler
            if scaler is None:
                return self._execute(ctx, export, args, command, payload, script)
            return self._scaled(scaler, ctx, export, args, command, payload, script)
        finally:
            if restore is not None:
                _signal.signal(_SIGINT, restore)
                _release_sigint_target()
            if ctx.interrupted and ctx.stop_reason is None:
                raise KeyboardInterrupt  # Ctrl-C arrived after the guest had finished

    def _scaled(
        self,
        scaler: AutoScaler,
        ctx: WasiContext,
        export: str,
        args: tuple[Any, ...],
        command: bool,
        payload: bytes | None,
        script: ScriptTurn | None,
    ) -> Outcome:
        """One execution under the auto-scaler's limits; a memory-cap failure below its
        maximum is retried once at the raised cap (with a fresh context: same input), unless
        the first attempt acted outside the sandbox (a retry would act again)."""
        floor = self.plan.compiled.initial_memory_bytes
        self.rescale(ctx, scaler.limits_for(self.plan.limits, floor))
        try:
            outcome = self._execute(ctx, export, args, command, payload, script)
        except e.MemoryLimitExceeded:
            if ctx.stdin.fileno is not None or not scaler.memory_exhausted() or ctx.effects:
                raise
            retry = self.new_context(ctx.args, ctx.env, ctx.stdin.source())
            self.rescale(retry, scaler.limits_for(self.plan.limits, floor))
            outcome = self._execute(retry, export, args, command, payload, script)
        except e.ExecutionTimeout:
            scaler.timed_out()
            raise
        report = outcome.report
        scaler.observe(report.peak_memory_bytes, report.execution_time)
        return outcome

    def rescale(self, ctx: WasiContext, limits: ResourceLimits) -> None:
        """Run ``ctx`` under ``limits`` instead (an auto-scaler's); caps a caller added to
        its deadline stay."""
        ctx.limits = limits
        ctx.memory_limit = limits.memory_bytes
        timeout = _seconds(limits.execution_timeout)
        ctx.deadline = compose_deadline(ctx.start, timeout, ctx.deadline_caps)

    def _instance(self, ctx: WasiContext) -> tuple[GuestInstance, bool]:
        if self._kept is not None:
            binding = self._kept.binding
            binding.wasi = ctx
            ctx.fds = binding.fds
            return self._kept, False
        limits = ctx.limits or self.plan.limits
        fds = FdTable(self.plan.mounts)
        try:
            instance = GuestInstance(
                self.plan.handle,
                self.plan.compiled,
                HostBinding(ctx, fds),
                limits.memory_bytes,
                limits.memory_growth_limit,
            )
        except BaseException:
            fds.close()
            raise
        return instance, True

    def _execute(
        self,
        ctx: WasiContext,
        export: str,
        args: tuple[Any, ...],
        command: bool,
        payload: bytes | None,
        script: ScriptTurn | None = None,
    ) -> Outcome:
        limits = ctx.limits or self.plan.limits
        fuel = limits.max_fuel if limits.max_fuel is not None else UNLIMITED_FUEL
        instance: GuestInstance | None = None
        fresh = False
        value: Any = None
        exit_code = 0
        failure: GuestFailure | None = None
        data_error: e.GuestError | e.GuestExit | None = None
        prepared = False
        try:
            instance, fresh = self._instance(ctx)
            if self.plan.monitoring is not None:
                ctx.sampler = _sampler(self.plan.monitoring, ctx, instance, limits, fuel)
                instance.binding.on_tick = ctx.sampler.tick
            self._prepare(instance, fresh, fuel, command and script is None)
            prepared = True
            value, exit_code = _invoke(instance, ctx, export, args, command, payload, script)
        except GuestFailure as exc:
            failure = exc
        except GuestStop:  # the host stopped the guest between calls into it (a script turn)
            failure = GuestFailure(f"wasm-sandbox: guest stopped ({ctx.stop_reason})", None, "")
        except (e.GuestError, e.GuestExit) as exc:
            data_error = exc
        if ctx.sampler is not None and instance is not None:
            instance.binding.on_tick = None
            ctx.sampler.finish()
        try:
            ctx.io_errors.extend(ctx.fds.flush_all() if hasattr(ctx, "fds") else ())
            if failure is not None and ctx.stop_reason == StopReason.EXIT:
                exit_code = ctx.exit_code or 0
                failure = None if command else failure
            measured = Measurement(ctx, instance, fuel)
            error = self._error(ctx, measured, failure, fuel, command, exit_code)
            if error is None and data_error is not None:
                error = _reported_error(data_error, measured, limits)
            kind = "ok" if exit_code == 0 else "exit"
            outcome = Outcome(value, exit_code, ctx, self.plan, measured, kind)
            if observing():
                _observe(outcome, error)
            if error is not None:
                self._attach(error, outcome)
                raise error
            _log_report(self.plan, "execution finished", outcome)
            return outcome
        finally:
            if instance is not None:
                self._release(instance, fresh, prepared)

    def _prepare(self, instance: GuestInstance, fresh: bool, fuel: int, command: bool) -> None:
        """Fresh budget; on a new instance run its start function (and a reactor's
        ``_initialize`` when calling a function), under the same limits."""
        instance.set_fuel(fuel)
        if not fresh:
            instance.reset_denial()
            return
        for setup in (START_EXPORT, None if command else INITIALIZE_EXPORT):
            if setup is not None and setup in self.plan.compiled.functions:
                instance.invoke(setup, (), fuel=None)

    def _attach(self, error: e.ExecutionError, outcome: Outcome) -> None:
        """Give an error its report and the output written before it."""
        outcome.outcome = type(error).__name__
        error.report = outcome.report
        error.stdout = bytes(outcome.ctx.stdout.data)
        error.stderr = bytes(outcome.ctx.stderr.data)
        _log_report(self.plan, "execution failed", outcome, error)

    def _release(self, instance: GuestInstance, fresh: bool, prepared: bool) -> None:
        """Close an isolated instance; keep a new one whose start function completed."""
        if not self.keep_instance:
            instance.close()
        elif fresh:
            if prepared:
                self._kept = instance
            else:
                instance.close()  # its start function failed: the next call starts afresh

    def _error(
        self,
        ctx: WasiContext,
        measured: Measurement,
        failure: GuestFailure | None,
        fuel: int,
        command: bool,
        exit_code: int,
    ) -> e.ExecutionError | None:
        reason = ctx.stop_reason
        limits = ctx.limits or self.plan.limits
        stopped = _stop_error(ctx, limits)
        if stopped is not None:
            return stopped
        if failure is None and exit_code == 0:
            return None
        denial = measured.denied
        if failure is not None and failure.trap_code == "out_of_fuel":
            limit = limits.max_fuel if limits.max_fuel is not None else fuel
            used = measured.fuel_consumed  # what the guest burnt, as wasmtime counted it
            return e.FuelExhausted(used if used is not None else limit, limit)
        if denial is not None:
            return _memory_error(denial, limits)
        if failure is None:
            return None if command else e.GuestExit(exit_code)
        if reason == StopReason.EXIT:
            return e.GuestExit(exit_code)
        cls = _TRAPS.get(failure.trap_code or "", e.GuestTrap)
        return cls(f"Guest trapped: {failure}", failure.trap_code, failure.backtrace)


def _stop_error(ctx: WasiContext, limits: ResourceLimits) -> e.ExecutionError | None:
    """The error of a guest the host stopped (deadline, strict limits, cancellation, an
    effect a replay may not make, a host bug), or None when the host did not stop it."""
    reason = ctx.stop_reason
    if reason == StopReason.TIMEOUT:
        elapsed = timedelta(seconds=time.monotonic() - ctx.start)
        return e.ExecutionTimeout(_effective_timeout(ctx, limits), elapsed)
    if reason == StopReason.IO_LIMIT and ctx.strict_hit is not None:
        return e.IoLimitExceeded(*ctx.strict_hit)
    if reason == StopReason.NETWORK_LIMIT and ctx.strict_network_hit is not None:
        return e.NetworkLimitExceeded(*ctx.strict_network_hit)
    if reason == StopReason.SECURITY and ctx.security_violation is not None:
        return e.SecurityViolation(ctx.security_violation)
    if reason == StopReason.CANCELLED:
        return e.ExecutionCancelled("Execution cancelled by the host")
    if reason == StopReason.EXTERNAL_EFFECT:
        what = ctx.effects[-1] if ctx.effects else "an external effect"
        return e.ExecutionCancelled(
            f"Stopped before {what}: a session's replay may not act outside the sandbox"
        )
    if reason == StopReason.INTERRUPTED:  # Ctrl-C, or a callback's KeyboardInterrupt/SystemExit
        stop = ctx.host_exception
        if isinstance(stop, KeyboardInterrupt | SystemExit):
            raise stop.with_traceback(None)  # without the frames of the guest's host call
        raise KeyboardInterrupt
    if reason == StopReason.HOST_ERROR:
        err = e.HostError(f"Internal error in the wasm-sandbox host layer: {ctx.host_exception!r}")
        err.__cause__ = ctx.host_exception
        return err
    return None


def _data_call(instance: GuestInstance, export: str, payload: bytes) -> Any:
    """One data-ABI call: input in through ``alloc``, the envelope out, both freed."""
    in_len = len(payload)
    in_ptr = int(instance.invoke("alloc", (in_len,), fuel=None)) & 0xFFFFFFFF
    if in_ptr == 0 and in_len > 0:
        raise e.GuestError("OutOfMemory", f"the guest's alloc({in_len}) for the input failed")
    if not instance.write_memory(in_ptr, payload):
        raise e.GuestError("ProtocolError", f"alloc({in_len}) returned a pointer outside memory")
    packed = int(instance.invoke(export, (in_ptr, in_len), fuel=None)) & 0xFFFFFFFFFFFFFFFF
    out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
    data = instance.read_memory(out_ptr, out_len)
    if data is None:
        raise e.GuestError("ProtocolError", f"{export} returned an output outside memory")
    instance.invoke("dealloc", (out_ptr, out_len), fuel=None)
    instance.invoke("dealloc", (in_ptr, in_len), fuel=None)
    return decode_result(data)


def _invoke(
    instance: GuestInstance,
    ctx: WasiContext,
    export: str,
    args: tuple[Any, ...],
    command: bool,
    payload: bytes | None,
    script: ScriptTurn | None,
) -> tuple[Any, int]:
    """Call into the guest the way the execution asks: (value, exit code)."""
    if script is not None:
        value, exited = script.run(instance, ctx)
        if exited is None:
            return value, 0
        if not command:
            raise e.GuestExit(exited)
        return None, exited
    if payload is None:
        return instance.invoke(export, args, fuel=None), 0
    return _data_call(instance, export, payload), 0


def _reported_error(
    error: e.GuestError | e.GuestExit, measured: Measurement, limits: ResourceLimits
) -> e.ExecutionError:
    """The error a guest's reported failure becomes: the memory cap beats its symptoms."""
    if measured.denied is not None:
        return _memory_error(measured.denied, limits)
    if isinstance(error, OutOfAddressSpace):
        limit = limits.memory_bytes or ADDRESS_SPACE
        memory_error = e.MemoryLimitExceeded(ADDRESS_SPACE, limit)
        memory_error.__cause__ = error
        return memory_error
    return error


def _catch_sigint(ctx: WasiContext) -> Any:
    """On the main thread with Python's default Ctrl-C handling, route SIGINT to the guest's
    context (it stops within a tick, then KeyboardInterrupt is raised); returns the handler to
    restore, or None. A KeyboardInterrupt raised inside a wasmtime callback could not unwind."""
    if threading.current_thread() is not _MAIN_THREAD:
        return None
    previous = _signal.getsignal(_SIGINT)
    if previous is not _DEFAULT_INT_HANDLER:
        return None
    global _sigint_target  # noqa: PLW0603 - one running execution per main thread
    _sigint_target = ctx
    _signal.signal(_SIGINT, _route_sigint)
    return previous


def _release_sigint_target() -> None:
    global _sigint_target  # noqa: PLW0603 - one running execution per main thread
    _sigint_target = None  # do not keep the finished execution (and its descriptors) alive


def _route_sigint(signum: int, frame: object) -> None:
    target = _sigint_target
    if target is not None:
        target.interrupt()


# The C module behind ``signal``: its functions skip signal.signal's enum conversions.
_signal: Any = importlib.import_module("_signal")
_MAIN_THREAD = threading.main_thread()
_SIGINT = int(signal.SIGINT)
_DEFAULT_INT_HANDLER = signal.default_int_handler
_sigint_target: WasiContext | None = None


def _sampler(
    monitoring: Monitoring,
    ctx: WasiContext,
    instance: GuestInstance,
    limits: ResourceLimits,
    fuel: int,
) -> Sampler:
    """A sampler reading this execution on the guest's thread (epoch ticks and the end)."""
    cpu_start = time.thread_time()

    def read(final: bool) -> ResourceUsage:
        left = instance.fuel_left()
        net = ctx.net
        return ResourceUsage(
            elapsed=timedelta(seconds=time.monotonic() - ctx.start),
            memory=MemoryUsage(instance.memory_bytes(), limits.memory_bytes),
            fuel_consumed=None if left is None else fuel - left,
            cpu_time=timedelta(seconds=time.thread_time() - cpu_start),
            file_operations=ctx.file_calls,
            bytes_read=ctx.bytes_read,
            bytes_written=ctx.bytes_written,
            network_bytes_sent=net.sent if net is not None else 0,
            network_bytes_received=net.received if net is not None else 0,
            active_connections=net.active if net is not None else 0,
            final=final,
        )

    return Sampler(monitoring.interval, read, monitoring.callback, monitoring.monitor)


def _observe(outcome: Outcome, error: e.ExecutionError | None) -> None:
    """Give the finished execution's report to the process-wide observers (metrics)."""
    if error is not None:
        outcome.outcome = type(error).__name__
    notify_report(outcome.report)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _effective_timeout(ctx: WasiContext, limits: ResourceLimits) -> timedelta:
    """The limit that stopped the guest: the execution timeout, or a session's budget when
    that left the statement less time."""
    timeout = limits.execution_timeout
    if ctx.deadline is not None and (
        timeout is None or ctx.deadline < ctx.start + timeout.total_seconds() - 1e-6
    ):
        return timedelta(seconds=round(max(0.0, ctx.deadline - ctx.start), 3))
    return timeout if timeout is not None else timedelta(0)


def _memory_error(denial: tuple[int, int, int], limits: ResourceLimits) -> e.MemoryLimitExceeded:
    kind, pages, delta = denial
    if kind == 1 and limits.memory_growth_limit is not None:
        return e.MemoryLimitExceeded(delta * WASM_PAGE, limits.memory_growth_limit, kind="growth")
    limit = limits.memory_bytes if limits.memory_bytes is not None else pages * WASM_PAGE
    return e.MemoryLimitExceeded(pages * WASM_PAGE, limit)


def execution_result(outcome: Outcome) -> ExecutionResult:
    """The ``ExecutionResult`` of a finished ``run()``."""
    ctx = outcome.ctx
    return ExecutionResult(
        exit_code=outcome.exit_code,
        stdout=bytes(ctx.stdout.data),
        stderr=bytes(ctx.stderr.data),
        stdout_truncated=ctx.stdout.truncated,
        stderr_truncated=ctx.stderr.truncated,
        resource_report=outcome.report,
    )

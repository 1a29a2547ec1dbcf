"""One execution: a store and instance under limits, a deadline, accounting, and the
result or error of how the guest ended.

The parts: ``_plan`` (what every execution of a sandbox shares), ``_calls`` (what to run: one
class per kind of invocation), ``_ending`` (how it ended, a pure classifier), ``_reporting``
(what it used), ``_runtime._traps`` (Ctrl-C).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from typing import Any, BinaryIO, NamedTuple

from .. import _errors as e
from .._config._limits import ResourceLimits
from .._observe._metrics import OBSERVERS, notify_report
from .._observe._report import ExecutionResult, ResourceReport, summary_line
from .._runtime._engine import UNLIMITED_FUEL, GuestFailure, GuestInstance
from .._runtime._snapshot import Resetter, Snapshot
from .._runtime._traps import check_after_foreign_init, restore_sigint, route_sigint
from .._wasi._context import GuestStop, StopReason, WasiContext
from ._calls import Call
from ._ending import NORMAL, Ending, Facts, Measurement, classify
from ._plan import ExecutionPlan, Scaler, sampler
from ._reporting import build_report

__all__ = ["Execution", "Outcome", "execution_result"]

log = logging.getLogger("wasm_sandbox")


class Outcome:
    """How an execution ended (``ending``), its value (a call's) and what it used.

    The ``ResourceReport`` is built on first access: plain ``call()`` never pays for it.
    """

    __slots__ = ("_report", "ctx", "ending", "measurement", "plan", "value")

    def __init__(
        self,
        value: Any,
        ending: Ending,
        ctx: WasiContext,
        plan: ExecutionPlan,
        measurement: Measurement,
    ) -> None:
        self.value = value
        self.ending = ending
        self.ctx = ctx
        self.plan = plan
        self.measurement = measurement
        self._report: ResourceReport | None = None

    @property
    def exit_code(self) -> int:
        """The command's exit code (0 for a call)."""
        return self.ending.exit_code

    @property
    def report(self) -> ResourceReport:
        """What the execution used."""
        if self._report is None:
            ctx = self.ctx
            self._report = build_report(
                ctx.counters.snapshot(ctx.net, ctx.streams),
                self.measurement,
                ctx.limits,
                outcome=self.ending.kind,
                profile=self.plan.profile,
                sampler=ctx.sampler,
                io_callback_errors=tuple(ctx.io.errors) if ctx.io is not None else (),
                output_callback_errors=(
                    tuple(ctx.streams.output.errors) if ctx.streams.output is not None else ()
                ),
            )
        return self._report


class _Ran(NamedTuple):
    """What calling into the guest gave: a value and exit code, or how it failed (a tuple:
    made on every call's hot path)."""

    value: Any = None
    exit_code: int = 0
    failure: GuestFailure | None = None  # the call did not return normally
    reported: e.GuestError | e.GuestExit | None = None  # the guest reported a failure

    @property
    def clean(self) -> bool:
        """It returned, exit code 0, nothing reported."""
        return self.exit_code == 0 and self.failure is None and self.reported is None


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


class Execution:
    """Runs guest code under a plan. With ``keep_instance`` the instance lives across calls."""

    def __init__(
        self, plan: ExecutionPlan, keep_instance: bool = False, internal: bool = False
    ) -> None:
        self.plan = plan
        self.keep_instance = keep_instance
        # Ours, not the user's (a runtime's boot): no metrics, no report log.
        self.internal = internal
        self._kept: GuestInstance | None = None
        self._lock = threading.Lock()
        self._start = plan.start  # what new instances start from (None: their own boot)
        # Isolated executions made from a snapshot: instances put back to it after a clean
        # execution, for the next one (see _runtime._snapshot: a reset rewrites only what
        # was written, where a new instance pays a page fault per block).
        self._spares: list[GuestInstance] = []
        self._spare_lock = threading.Lock()
        self._resetter: Resetter | None = None
        weakref.finalize(self, _close_all, self._spares)

    def close(self) -> None:
        """Release the kept instance and the spare ones, if any."""
        with self._lock:
            if self._kept is not None:
                self._kept.close()
                self._kept = None
        with self._spare_lock:
            _close_all(self._spares)

    def capture(self) -> Snapshot:
        """A snapshot of the kept instance (``SnapshotError`` when there is none or it holds
        what a snapshot cannot carry)."""
        with self._lock:
            if self._kept is None:
                raise e.SnapshotError("there is no instance to snapshot")
            return self._kept.capture()

    def start_from(self, snapshot: Snapshot | None, ctx: WasiContext | None = None) -> None:
        """Drop the kept instance; new instances start from ``snapshot`` from now on (None:
        each boots itself). With ``ctx`` and a snapshot, the kept instance is made now:
        what the snapshot cannot restore here (``SnapshotError``, ``MemoryLimitExceeded``)
        is raised now rather than by the next call."""
        with self._lock:
            if self._kept is not None:
                self._kept.close()
                self._kept = None
            self._start = snapshot
            if ctx is not None and snapshot is not None and self.keep_instance:
                self._kept, _ = self._instance(ctx)
        with self._spare_lock:
            _close_all(self._spares)
            self._resetter = None

    def new_context(
        self,
        args: list[bytes],
        env: list[bytes],
        stdin: bytes | BinaryIO | None,
        limits: ResourceLimits | None = None,
    ) -> WasiContext:
        """A fresh WASI context for this execution's plan (see ``ExecutionPlan.context``)."""
        return self.plan.context(args, env, stdin, limits)

    def execute(self, ctx: WasiContext, call: Call) -> Outcome:
        """Run ``call`` in the context ``ctx``: its outcome, or the error it ended with."""
        check_after_foreign_init()
        restore = route_sigint(ctx)
        try:
            if self.keep_instance:
                with self._lock:
                    return self._execute(ctx, call)
            scaler = self.plan.scaler
            if scaler is None:
                return self._execute(ctx, call)
            return self._scaled(scaler, ctx, call)
        finally:
            if restore is not None:
                restore_sigint(restore)
            if ctx.stop_state.interrupted and ctx.stop_state.reason is None:
                raise KeyboardInterrupt  # Ctrl-C arrived after the guest had finished

    def _scaled(self, scaler: Scaler, ctx: WasiContext, call: Call) -> Outcome:
        """One execution under the auto-scaler's limits; a memory-cap failure below its
        maximum is retried once at the raised cap (with a fresh context: same input), unless
        the first attempt acted outside the sandbox (a retry would act again) or its output
        was already streamed to a callback (a retry would deliver it twice)."""
        floor = self.plan.compiled.initial_memory_bytes
        ctx.run_under(scaler.limits_for(self.plan.limits, floor))
        try:
            outcome = self._execute(ctx, call)
        except e.MemoryLimitExceeded:
            stdin, output = ctx.streams.stdin, ctx.streams.output
            if stdin.fileno is not None or (output is not None and output.delivered):
                raise
            if not scaler.memory_exhausted() or ctx.counters.effects:
                raise
            retry = self.new_context(ctx.args, ctx.env, stdin.source())
            retry.deadline_caps = ctx.deadline_caps
            retry.run_under(scaler.limits_for(self.plan.limits, floor))
            outcome = self._execute(retry, call)
        except e.ExecutionTimeout:
            scaler.timed_out()
            raise
        report = outcome.report
        scaler.observe(report.peak_memory_bytes, report.execution_time)
        return outcome

    def _instance(self, ctx: WasiContext) -> tuple[GuestInstance, bool]:
        """The instance to run on (the kept one, or a new one, made from the start snapshot
        when there is one) and whether it is new."""
        if self._kept is not None:
            self._kept.rebind(ctx)
            return self._kept, False
        if self._spares and ctx.limits is self.plan.limits:
            with self._spare_lock:
                spare = self._spares.pop() if self._spares else None
            if spare is not None:
                spare.rebind(ctx)
                return spare, True
        plan = self.plan
        instance = GuestInstance.create(plan.handle, plan.compiled, ctx, plan.mounts)
        if self._start is not None:
            try:
                instance.restore(self._start)
            except BaseException:
                instance.close()
                raise
        return instance, True

    def _execute(self, ctx: WasiContext, call: Call) -> Outcome:
        limits = ctx.limits
        fuel = limits.max_fuel if limits.max_fuel is not None else UNLIMITED_FUEL
        instance: GuestInstance | None = None
        fresh = prepared = False
        try:
            instance, fresh = self._instance(ctx)
            ctx.place = functools.partial(_place, instance)  # host answers: via its ``alloc``
            if self.plan.monitoring is not None:
                ctx.sampler = sampler(self.plan.monitoring, ctx, instance, fuel)
                instance.on_tick(ctx.sampler.tick)
            self._prepare(instance, fresh, fuel, call.initialize)
            prepared = True
            ran = _Ran(*call.run(instance, ctx))
        except GuestFailure as exc:
            ran = _Ran(failure=exc)
        except GuestStop:  # the host stopped the guest between calls into it (a script turn)
            reason = ctx.stop_state.reason
            ran = _Ran(failure=GuestFailure(f"wasm-sandbox: guest stopped ({reason})", None, ""))
        except (e.GuestError, e.GuestExit) as exc:
            ran = _Ran(reported=exc)
        # An instance whose call returned (a value or a reported error), under the plan's own
        # limits, may be put back for the next isolated execution.
        clean = ran.failure is None and ctx.stop_state.reason is None
        reusable = clean and ctx.limits is self.plan.limits
        ctx.place = None  # it holds the instance
        try:
            return self._finish(ctx, call, instance, fuel, ran)
        finally:
            if ctx.streams.output is not None:
                ctx.streams.output.finish()  # (done already, unless _finish failed early)
            if instance is not None:
                self._release(instance, fresh, prepared, reusable)

    def _finish(
        self, ctx: WasiContext, call: Call, instance: GuestInstance | None, fuel: int, ran: _Ran
    ) -> Outcome:
        """Stop monitoring, flush, measure, classify; the outcome, or its error raised."""
        if ctx.sampler is not None and instance is not None:
            instance.on_tick(None)
            ctx.sampler.finish()
        if ctx.has_fds:
            ctx.counters.io_errors.extend(ctx.fds.flush_all())
        measured = Measurement.read(time.monotonic() - ctx.start, instance, fuel)
        if instance is not None and not ran.clean and _rescue_due(ctx, ran, measured):
            _rescue_output(ctx, call, instance)
        if ctx.streams.output is not None:
            ctx.streams.output.finish()  # every chunk delivered before the result or error
        if ctx.stop_state.reason is None and ran.clean:
            ending = NORMAL  # what classify answers then, without building its facts
        else:
            ending = classify(self._facts(ctx, call, ran, measured))
        if ending.interrupt is not None:
            raise ending.interrupt.with_traceback(None)  # without the guest's host-call frames
        outcome = Outcome(ran.value, ending, ctx, self.plan, measured)
        if OBSERVERS and not self.internal:  # something wants every report (metrics)
            notify_report(outcome.report)
        error = ending.error
        if error is None:
            if (self.plan.verbose or self.plan.debug) and not self.internal:
                _log_report(self.plan, "execution finished", outcome)
            return outcome
        error.report = outcome.report
        error.stdout = bytes(ctx.streams.stdout.data)
        error.stderr = bytes(ctx.streams.stderr.data)
        _log_report(self.plan, "execution failed", outcome, error)
        raise error

    @staticmethod
    def _facts(ctx: WasiContext, call: Call, ran: _Ran, measured: Measurement) -> Facts:
        """What ``classify`` needs to know about this finished execution."""
        effects = ctx.counters.effects
        return Facts(
            stop=ctx.stop_state,
            measured=measured,
            limits=ctx.limits,
            command=call.command,
            exit_code=ran.exit_code,
            failure=ran.failure,
            reported=ran.reported,
            budget=None if ctx.deadline is None else ctx.deadline - ctx.start,
            last_effect=effects[-1] if effects else None,
        )

    def _prepare(self, instance: GuestInstance, fresh: bool, fuel: int, initialize: bool) -> None:
        """Fresh budget; on a new instance run its start function (and a reactor's
        ``_initialize`` when ``initialize``), under the same limits."""
        instance.set_fuel(fuel)
        if not fresh:
            instance.reset_denial()
            return
        if not instance.restored:  # made from a snapshot, it has started already
            instance.start(initialize)

    def _put_back(self, instance: GuestInstance) -> bool:
        """Reset ``instance`` to the start snapshot and keep it as a spare: True when kept."""
        start = self._start
        if start is None or not instance.restored or len(self._spares) >= _SPARES:
            return False
        resetter = self._resetter
        if resetter is None or resetter.state is not start.memory:
            resetter = self._resetter = Resetter(start.memory)
        try:
            if not instance.reset(start, resetter):
                return False
        except (OSError, e.SnapshotError):
            return False
        with self._spare_lock:
            if self._start is not start or len(self._spares) >= _SPARES:
                return False
            self._spares.append(instance)
        return True

    def _release(
        self, instance: GuestInstance, fresh: bool, prepared: bool, reusable: bool
    ) -> None:
        """Put an isolated instance back to the start snapshot for the next execution (when
        ``reusable`` and it can be), else close it; keep a new one whose start function
        completed."""
        if not self.keep_instance:
            if not (reusable and prepared and self._put_back(instance)):
                instance.close()
        elif fresh:
            if prepared:
                self._kept = instance
            else:
                instance.close()  # its start function failed: the next call starts afresh


def _place(instance: GuestInstance, data: bytes) -> int:
    """``data`` copied into memory the guest's ``alloc`` gave: its address (0: no room, no
    ``alloc`` export, or the guest failed in it)."""
    try:
        ptr = int(instance.invoke("alloc", (len(data),), fuel=None)) & 0xFFFFFFFF
    except (KeyError, GuestFailure):
        return 0
    return ptr if ptr and instance.write_memory(ptr, data) else 0


_SPARES = 2  # instances kept for reuse per sandbox (more threads make new ones)

# Output rescue: a guest stopped by a limit gets this much to write out what it buffers.
_RESCUE_SECONDS = 0.02
_RESCUE_FUEL = 50_000_000  # a flush turn of the Python runtime burns about 1% of it
# Stops after which the instance is sound (the host stopped it at a safe point) ...
_RESCUED_STOPS = frozenset(
    {StopReason.TIMEOUT, StopReason.IO_LIMIT, StopReason.NETWORK_LIMIT, StopReason.SECURITY}
)
# ... and traps after which its memory is suspect: never re-entered.
_SUSPECT_TRAPS = frozenset(
    {
        "memory_out_of_bounds", "heap_misaligned", "table_out_of_bounds",
        "indirect_call_to_null", "bad_signature", "stack_overflow",
    }
)  # fmt: skip


def _rescue_due(ctx: WasiContext, ran: _Ran, measured: Measurement) -> bool:
    """True when a limit stopped the guest mid-call (timeout, fuel, the memory cap, a strict
    I/O or network limit) and its instance may be entered once more: not after a trap that
    makes its memory suspect, a cancellation or Ctrl-C, nor when it ended on its own."""
    failure = ran.failure
    if failure is None or ctx.stop_state.cancelled:
        return False
    reason = ctx.stop_state.reason
    if reason is not None:
        return reason in _RESCUED_STOPS
    if failure.trap_code == "out_of_fuel":
        return True
    return measured.denied is not None and failure.trap_code not in _SUSPECT_TRAPS


def _rescue_output(ctx: WasiContext, call: Call, instance: GuestInstance) -> None:
    """Let the stopped guest write out what it still buffers (``Call.rescue_output``), under
    a budget of its own (``_RESCUE_SECONDS``, ``_RESCUE_FUEL``) that ends it quietly: the
    instance is given up, what it used was measured before, and whatever goes wrong in it
    is ignored."""
    deadline = ctx.deadline
    ctx.deadline = time.monotonic() + _RESCUE_SECONDS
    instance.set_fuel(_RESCUE_FUEL)
    try:
        call.rescue_output(instance)
    except (GuestFailure, GuestStop, e.SandboxError, KeyError):
        pass
    finally:
        ctx.deadline = deadline
    if ctx.stop_state.interrupted:  # Ctrl-C during the rescue: still a request to stop
        raise KeyboardInterrupt


def _close_all(instances: list[GuestInstance]) -> None:
    while instances:
        instances.pop().close()


def execution_result(outcome: Outcome) -> ExecutionResult:
    """The ``ExecutionResult`` of a finished ``run()``."""
    streams = outcome.ctx.streams
    return ExecutionResult(
        exit_code=outcome.exit_code,
        stdout=bytes(streams.stdout.data),
        stderr=bytes(streams.stderr.data),
        stdout_truncated=streams.stdout.truncated,
        stderr_truncated=streams.stderr.truncated,
        resource_report=outcome.report,
    )

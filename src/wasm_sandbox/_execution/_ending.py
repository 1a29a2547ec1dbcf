"""How an execution ended, as a value: ``classify`` turns the facts gathered when the guest
stopped (the host's stop state, the guest's failure, what was measured, the limits) into an
``Ending``: a normal end, an exit code, or the one error the user sees.

Pure: no store, no instance, no clock. ``tests/test_ending.py`` pins it with a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from .. import _errors as e
from .._config._limits import WASM_PAGE, ResourceLimits
from .._guests._data import OutOfAddressSpace
from .._wasi._context import StopReason
from .._wasi._state import StopState

if TYPE_CHECKING:
    from .._runtime._engine import GuestFailure, GuestInstance

__all__ = ["ADDRESS_SPACE", "NORMAL", "Ending", "Facts", "Measurement", "classify"]

ADDRESS_SPACE = 1 << 32  # what a 32-bit guest can address at most

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


class Measurement(NamedTuple):
    """The raw figures of one execution, read while its instance still existed (a tuple:
    made on every call's hot path)."""

    elapsed: float  # seconds
    fuel_consumed: int | None  # None: fuel is not metered
    peak_memory: int  # bytes
    denied: tuple[int, int, int] | None  # the memory cap's refusal: (kind, pages, delta)

    @staticmethod
    def read(elapsed: float, instance: GuestInstance | None, fuel: int) -> Measurement:
        """Read ``instance`` (None: instantiation failed) after it ran with ``fuel``."""
        if instance is None:
            return Measurement(elapsed, None, 0, None)
        left = instance.fuel_left()
        return Measurement(
            elapsed=elapsed,
            fuel_consumed=None if left is None else fuel - left,
            peak_memory=instance.memory_bytes(),
            denied=instance.memory_denial(),
        )


@dataclass(frozen=True, slots=True)
class Ending:
    """How one execution ended: ``error`` set (the user sees it), else ``exit_code`` (0 is a
    normal end). ``interrupt``: a KeyboardInterrupt or SystemExit to raise to the caller
    instead (Ctrl-C, or a callback's) — it is not an execution error."""

    exit_code: int = 0
    error: e.ExecutionError | None = None
    interrupt: BaseException | None = None

    @property
    def kind(self) -> str:
        """The report's ``outcome``: ``ok``, ``exit`` or the error's class name."""
        if self.error is not None:
            return type(self.error).__name__
        return "ok" if self.exit_code == 0 else "exit"


NORMAL = Ending()  # a call that returned (exit code 0) and the host never stopped


@dataclass(frozen=True, slots=True)
class Facts:
    """What ``classify`` needs to know about one finished execution."""

    stop: StopState
    measured: Measurement
    limits: ResourceLimits
    command: bool  # a WASI command: a nonzero exit code is a result, not an error
    exit_code: int = 0  # the command's, when it returned
    failure: GuestFailure | None = None  # the guest's call did not return normally
    reported: e.GuestError | e.GuestExit | None = None  # a script or data call's own failure
    budget: float | None = None  # seconds from start to the deadline (None: no deadline)
    last_effect: str | None = None  # the external effect a replay tried last


def classify(facts: Facts) -> Ending:
    """The ending of an execution: the host's reason to stop it first, then the guest's
    failure (fuel, the memory cap, an exit, a trap), then what the guest reported."""
    stop, failure, exit_code = facts.stop, facts.failure, facts.exit_code
    if failure is not None and stop.reason == StopReason.EXIT:
        exit_code = stop.exit_code or 0
        failure = None if facts.command else failure
    stopped = _stopped(facts)
    if stopped is not None:
        return stopped
    error = _guest_error(facts, failure, exit_code)
    if error is None and facts.reported is not None:
        error = _reported_error(facts.reported, facts.measured, facts.limits)
    return Ending(exit_code=exit_code, error=error)


def _stopped(facts: Facts) -> Ending | None:
    """The ending of a guest the host stopped (deadline, strict limits, cancellation, an
    effect a replay may not make, Ctrl-C, a host bug), or None when the host did not."""
    stop = facts.stop
    reason = stop.reason
    error: e.ExecutionError | None = None
    if reason == StopReason.TIMEOUT:
        elapsed = timedelta(seconds=facts.measured.elapsed)
        error = e.ExecutionTimeout(_effective_timeout(facts), elapsed)
    elif reason == StopReason.IO_LIMIT and stop.io_hit is not None:
        error = e.IoLimitExceeded(*stop.io_hit)
    elif reason == StopReason.NETWORK_LIMIT and stop.network_hit is not None:
        error = e.NetworkLimitExceeded(*stop.network_hit)
    elif reason == StopReason.HOST_CALL_LIMIT and stop.host_calls_hit is not None:
        error = e.HostCallLimitExceeded(*stop.host_calls_hit)
    elif reason == StopReason.SECURITY and stop.security_violation is not None:
        error = e.SecurityViolation(stop.security_violation, stop.security_detail)
    elif reason == StopReason.CANCELLED:
        error = e.ExecutionCancelled("Execution cancelled by the host")
    elif reason == StopReason.EXTERNAL_EFFECT:
        what = facts.last_effect or "an external effect"
        error = e.ExecutionCancelled(
            f"Stopped before {what}: a session's replay may not act outside the sandbox"
        )
    elif reason == StopReason.INTERRUPTED:  # Ctrl-C, or a callback's KeyboardInterrupt/SystemExit
        raised = stop.exception
        if not isinstance(raised, KeyboardInterrupt | SystemExit):
            raised = KeyboardInterrupt()
        return Ending(interrupt=raised)
    elif reason == StopReason.HOST_ERROR:
        error = e.HostError(f"Internal error in the wasm-sandbox host layer: {stop.exception!r}")
        error.__cause__ = stop.exception
    return None if error is None else Ending(exit_code=facts.exit_code, error=error)


def _guest_error(
    facts: Facts, failure: GuestFailure | None, exit_code: int
) -> e.ExecutionError | None:
    """The error of a guest that failed on its own (or exited), None when it did not."""
    if failure is None and exit_code == 0:
        return None
    measured, limits = facts.measured, facts.limits
    if failure is not None and failure.trap_code == "out_of_fuel":
        used = measured.fuel_consumed  # what the guest burnt, as wasmtime counted it
        limit = limits.max_fuel if limits.max_fuel is not None else used or 0
        return e.FuelExhausted(used if used is not None else limit, limit)
    if measured.denied is not None:
        return _memory_error(measured.denied, limits)
    if failure is None:
        return None if facts.command else e.GuestExit(exit_code)
    if facts.stop.reason == StopReason.EXIT:
        return e.GuestExit(exit_code)
    cls = _TRAPS.get(failure.trap_code or "", e.GuestTrap)
    return cls(f"Guest trapped: {failure}", failure.trap_code, failure.backtrace)


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


def _effective_timeout(facts: Facts) -> timedelta:
    """The limit that stopped the guest: the execution timeout, or a caller's deadline
    (a session's budget, a balancer's timeout) when that left it less time."""
    timeout = facts.limits.execution_timeout
    budget = facts.budget
    if budget is not None and (timeout is None or budget < timeout.total_seconds() - 1e-6):
        return timedelta(seconds=round(max(0.0, budget), 3))
    return timeout if timeout is not None else timedelta(0)


def _memory_error(denial: tuple[int, int, int], limits: ResourceLimits) -> e.MemoryLimitExceeded:
    kind, pages, delta = denial
    if kind == 1 and limits.memory_growth_limit is not None:
        return e.MemoryLimitExceeded(delta * WASM_PAGE, limits.memory_growth_limit, kind="growth")
    limit = limits.memory_bytes if limits.memory_bytes is not None else pages * WASM_PAGE
    return e.MemoryLimitExceeded(pages * WASM_PAGE, limit)

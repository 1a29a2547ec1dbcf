"""How an execution ended, decided without running any guest: ``_ending.classify`` maps the
host's stop state, the guest's failure and what was measured to one ending (a table)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

import wasm_sandbox as ws
from wasm_sandbox._config._limits import WASM_PAGE, ResourceLimits
from wasm_sandbox._execution._ending import ADDRESS_SPACE, NORMAL, Facts, Measurement, classify
from wasm_sandbox._execution._reporting import _COUNTED
from wasm_sandbox._guests._data import OutOfAddressSpace
from wasm_sandbox._runtime._engine import GuestFailure
from wasm_sandbox._wasi._context import StopReason
from wasm_sandbox._wasi._state import CounterSnapshot, StopState

LIMITS = ResourceLimits(
    memory_bytes=64 * WASM_PAGE,
    max_fuel=1000,
    execution_timeout=timedelta(seconds=2),
    memory_growth_limit=8 * WASM_PAGE,
)
CLEAN = Measurement(elapsed=0.5, fuel_consumed=10, peak_memory=WASM_PAGE, denied=None)
BURNT = Measurement(elapsed=0.5, fuel_consumed=1003, peak_memory=WASM_PAGE, denied=None)
DENIED = Measurement(elapsed=0.5, fuel_consumed=10, peak_memory=WASM_PAGE, denied=(0, 70, 6))
GROWTH = Measurement(elapsed=0.5, fuel_consumed=10, peak_memory=WASM_PAGE, denied=(1, 20, 9))


def trap(code: str | None) -> GuestFailure:
    """A guest call that ended in the trap ``code``."""
    return GuestFailure(f"trap {code}", code, "backtrace")


def stop(reason: str | None = None, **fields: Any) -> StopState:
    """The host's stop state with ``reason`` and ``fields``."""
    return StopState(reason=reason, **fields)


# (id, facts, expected kind, expected exit code, expected error attributes)
TABLE: list[tuple[str, Facts, str, int, dict[str, Any]]] = [
    ("returned", Facts(stop(), CLEAN, LIMITS, command=False), "ok", 0, {}),
    ("command exit 0", Facts(stop(), CLEAN, LIMITS, command=True), "ok", 0, {}),
    (
        "command exit 3 by proc_exit",
        Facts(stop(StopReason.EXIT, exit_code=3), CLEAN, LIMITS, True, failure=trap(None)),
        "exit",
        3,
        {},
    ),
    (
        "call that exited 3",
        Facts(stop(StopReason.EXIT, exit_code=3), CLEAN, LIMITS, False, failure=trap(None)),
        "GuestExit",
        3,
        {"exit_code": 3},
    ),
    (
        "out of fuel: used is what was burnt",
        Facts(stop(), BURNT, LIMITS, False, failure=trap("out_of_fuel")),
        "FuelExhausted",
        0,
        {"used": 1003, "limit": 1000},
    ),
    (
        "memory cap beats the trap it caused",
        Facts(stop(), DENIED, LIMITS, False, failure=trap("unreachable")),
        "MemoryLimitExceeded",
        0,
        {"used": 70 * WASM_PAGE, "limit": 64 * WASM_PAGE},
    ),
    (
        "growth cap",
        Facts(stop(), GROWTH, LIMITS, False, failure=trap("unreachable")),
        "MemoryLimitExceeded",
        0,
        {"used": 9 * WASM_PAGE, "limit": 8 * WASM_PAGE},
    ),
    (
        "stack overflow",
        Facts(stop(), CLEAN, LIMITS, False, failure=trap("stack_overflow")),
        "StackOverflow",
        0,
        {"trap_code": "stack_overflow"},
    ),
    (
        "unknown trap",
        Facts(stop(), CLEAN, LIMITS, False, failure=trap("something_new")),
        "GuestTrap",
        0,
        {"trap_code": "something_new"},
    ),
    (
        "timeout: the limit's",
        Facts(stop(StopReason.TIMEOUT), CLEAN, LIMITS, False, failure=trap(None), budget=2.0),
        "ExecutionTimeout",
        0,
        {"timeout": timedelta(seconds=2)},
    ),
    (
        "timeout: a caller's tighter deadline",
        Facts(stop(StopReason.TIMEOUT), CLEAN, LIMITS, False, failure=trap(None), budget=0.25),
        "ExecutionTimeout",
        0,
        {"timeout": timedelta(seconds=0.25)},
    ),
    (
        "strict I/O limit",
        Facts(stop(StopReason.IO_LIMIT, io_hit=("max_file_size", 9, 8)), CLEAN, LIMITS, False),
        "IoLimitExceeded",
        0,
        {"limit": "max_file_size", "attempted": 9, "cap": 8},
    ),
    (
        "strict network limit",
        Facts(
            stop(StopReason.NETWORK_LIMIT, network_hit=("max_connections", 2, 1)),
            CLEAN,
            LIMITS,
            False,
        ),
        "NetworkLimitExceeded",
        0,
        {"limit": "max_connections"},
    ),
    (
        "host call limit",
        Facts(stop(StopReason.HOST_CALL_LIMIT, host_calls_hit=(4, 3)), CLEAN, LIMITS, False),
        "HostCallLimitExceeded",
        0,
        {"limit": "max_host_calls", "attempted": 4, "cap": 3},
    ),
    (
        "strict policy refusal",
        Facts(stop(StopReason.SECURITY, security_violation="10.0.0.1:80"), CLEAN, LIMITS, False),
        "SecurityViolation",
        0,
        {},
    ),
    (
        "cancelled beats the trap it caused",
        Facts(stop(StopReason.CANCELLED), CLEAN, LIMITS, False, failure=trap(None)),
        "ExecutionCancelled",
        0,
        {},
    ),
    (
        "a replay's external effect",
        Facts(stop(StopReason.EXTERNAL_EFFECT), CLEAN, LIMITS, False, last_effect="connect x"),
        "ExecutionCancelled",
        0,
        {},
    ),
    (
        "host bug",
        Facts(stop(StopReason.HOST_ERROR, exception=ValueError("bug")), CLEAN, LIMITS, False),
        "HostError",
        0,
        {},
    ),
    (
        "a reported guest error",
        Facts(stop(), CLEAN, LIMITS, False, reported=ws.GuestError("ValueError", "bad")),
        "GuestError",
        0,
        {"type": "ValueError"},
    ),
    (
        "a reported error the memory cap caused",
        Facts(stop(), DENIED, LIMITS, False, reported=ws.GuestError("MemoryError", "")),
        "MemoryLimitExceeded",
        0,
        {"limit": 64 * WASM_PAGE},
    ),
    (
        "asked past the address space",
        Facts(stop(), CLEAN, LIMITS, False, reported=OutOfAddressSpace("MemoryError", "")),
        "MemoryLimitExceeded",
        0,
        {"used": ADDRESS_SPACE, "limit": 64 * WASM_PAGE},
    ),
]


@pytest.mark.parametrize(
    ("facts", "kind", "exit_code", "attributes"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_classify_maps_each_way_of_ending_to_one_result(
    facts: Facts, kind: str, exit_code: int, attributes: dict[str, Any]
) -> None:
    """Each row: the ending's kind (the report's ``outcome``), exit code and error fields."""
    ending = classify(facts)
    assert ending.kind == kind
    assert ending.exit_code == exit_code
    assert ending.interrupt is None
    if kind in ("ok", "exit"):
        assert ending.error is None
    else:
        assert ending.error is not None
        for name, value in attributes.items():
            assert getattr(ending.error, name) == value, name


def test_an_interrupt_is_raised_to_the_caller_not_reported() -> None:
    """Ctrl-C (or a callback's SystemExit) is not an execution error: the ending carries the
    exception to raise, the callback's own one when there is one."""
    exit_ = SystemExit(2)
    ending = classify(Facts(stop(StopReason.INTERRUPTED, exception=exit_), CLEAN, LIMITS, False))
    assert ending.error is None and ending.interrupt is exit_
    plain = classify(Facts(stop(StopReason.INTERRUPTED), CLEAN, LIMITS, False))
    assert isinstance(plain.interrupt, KeyboardInterrupt)


def test_the_fast_path_constant_is_what_classify_answers_for_a_clean_return() -> None:
    """An execution skips building facts when the guest returned cleanly and the host never
    stopped it; the constant it uses is classify's answer for those facts."""
    for measured in (CLEAN, BURNT, DENIED):
        for command in (False, True):
            assert classify(Facts(stop(), measured, LIMITS, command)) == NORMAL


def test_every_counter_reaches_the_report_by_name() -> None:
    """A counter of one execution is reported under its own name (the builder copies them by
    name), so adding one touches its counter, its syscall and the report field; only the
    live figure of open connections is for monitoring samples alone."""
    counters = set(CounterSnapshot._fields)
    assert counters - set(_COUNTED) == {"active_connections"}
    assert set(_COUNTED) <= {f.name for f in dataclasses.fields(ws.ResourceReport)}

"""Every limit driven by a real guest into it: memory cap, per-grow cap, initial memory, fuel,
wall-clock (compute loop, poll_oneoff sleep, blocked stdin read), traps and output caps."""

from __future__ import annotations

import os
import time
import warnings
from datetime import timedelta

import pytest

import wasm_sandbox as ws
from tests.conftest import sandbox

MiB = 1024 * 1024
PAGE = 65536

GROW_WAT = b"""(module
  (memory (export "memory") 1)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "grow_or_trap") (param i32) (result i32)
    local.get 0 memory.grow
    i32.const -1 i32.eq
    if unreachable end
    memory.size)
  (func (export "size") (result i32) memory.size))"""

SPIN_WAT = b"""(module
  (func (export "spin") (loop br 0))
  (func (export "count") (param i32) (result i32) (local i32)
    (loop
      local.get 1 i32.const 1 i32.add local.set 1
      local.get 1 local.get 0 i32.lt_u br_if 0)
    local.get 1))"""


# --- memory ----------------------------------------------------------------------------------


def test_memory_cap_trap_raises_memory_limit_exceeded_with_exact_message() -> None:
    """A guest that traps after its grow was refused reports the size it asked for."""
    sb = sandbox(GROW_WAT, memory_limit=64 * MiB)
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        sb.call("grow_or_trap", 2047)  # 1 + 2047 pages = 128 MiB
    assert str(info.value) == (
        "Memory limit exceeded: used 134217728, limit 67108864 "
        "(tried to allocate 128 MiB; the limit is 64 MiB)"
    )
    assert (info.value.used, info.value.limit) == (128 * MiB, 64 * MiB)
    assert info.value.report.memory_limit_hit


def test_memory_cap_allows_growth_up_to_the_limit() -> None:
    """Growth up to exactly the cap succeeds; one more page is refused with -1."""
    sb = sandbox(GROW_WAT, memory_limit=4 * MiB, keep_instance=True)
    assert sb.call("grow", 63) == 1
    assert sb.call("size") == 64
    assert sb.call("grow", 1) == -1


def test_guest_that_handles_refusal_succeeds_but_report_records_it() -> None:
    """A refused grow is not an error when the guest copes; the report says it happened."""
    sb = sandbox(GROW_WAT, memory_limit=2 * MiB)
    result = sb.call_with_detailed_monitoring("grow", 100)
    assert result.value == -1
    assert result.resource_report.memory_limit_hit
    assert result.resource_report.peak_memory_bytes == PAGE


def test_memory_growth_limit_caps_a_single_grow() -> None:
    """memory_growth_limit refuses one grow larger than it, even under the total cap."""
    sb = sandbox(GROW_WAT, memory_limit=64 * MiB, memory_growth_limit=1 * MiB)
    assert sb.call("grow", 16) == 1  # exactly 1 MiB
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        sb.call("grow_or_trap", 17)
    assert info.value.kind == "growth"
    assert (info.value.used, info.value.limit) == (17 * PAGE, 1 * MiB)
    assert str(info.value) == (
        f"Memory limit exceeded: used {17 * PAGE}, limit {MiB} "
        "(one memory.grow tried to allocate 1.06 MiB; memory_growth_limit is 1 MiB)"
    )


def test_initial_memory_over_limit_is_refused_at_build_time() -> None:
    """A module whose initial memory exceeds memory_bytes never runs."""
    wat = b'(module (memory (export "memory") 100) (func (export "f")))'  # 6.25 MiB
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        sandbox(wat, memory_limit=4 * MiB)
    assert info.value.kind == "initial"
    assert (info.value.used, info.value.limit) == (100 * PAGE, 4 * MiB)


def test_c_guest_malloc_failure_exit_is_memory_limit_exceeded(c_guest) -> None:
    """A C program whose malloc fails under the cap and exits non-zero raises MemoryLimitExceeded."""
    sb = sandbox(c_guest("probe"), memory_limit=8 * MiB)
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        sb.run(["alloc", "64"])
    assert info.value.limit == 8 * MiB
    assert info.value.used > 8 * MiB
    assert info.value.report.peak_memory_bytes <= 8 * MiB


def test_c_guest_malloc_failure_abort_is_memory_limit_exceeded(c_guest) -> None:
    """abort() after a refused grow is reported as the memory limit, not as a bare trap."""
    sb = sandbox(c_guest("probe"), memory_limit=8 * MiB)
    with pytest.raises(ws.MemoryLimitExceeded):
        sb.run(["alloc_abort"])


def test_c_guest_within_memory_limit_runs(c_guest) -> None:
    """The same guest under a larger cap completes and reports its peak memory."""
    result = sandbox(c_guest("probe"), memory_limit=32 * MiB).run(["alloc", "8"])
    assert result.exit_code == 0
    assert result.stdout == b"allocated 8 MiB\n"
    assert 8 * MiB < result.resource_report.peak_memory_bytes <= 32 * MiB


# --- fuel ------------------------------------------------------------------------------------


def test_fuel_exhaustion_raises_with_exact_message() -> None:
    """Running out of fuel raises FuelExhausted: used equals the limit."""
    sb = sandbox(SPIN_WAT, max_fuel=1_000_000)
    with pytest.raises(ws.FuelExhausted) as info:
        sb.call("spin")
    assert str(info.value) == "Fuel exhausted: used 1000000, limit 1000000"
    assert info.value.report.fuel_consumed == 1_000_000
    assert info.value.used == info.value.report.fuel_consumed  # measured, not the limit copied


def test_fuel_is_per_call() -> None:
    """Each call gets the whole budget again, also on a kept instance."""
    sb = sandbox(SPIN_WAT, max_fuel=100_000, keep_instance=True)
    for _ in range(3):
        assert sb.call("count", 1000) == 1000
    with pytest.raises(ws.FuelExhausted):
        sb.call("count", 1_000_000)
    assert sb.call("count", 1000) == 1000


def test_fuel_consumed_is_measured_and_grows_with_work() -> None:
    """Profiling reports fuel proportional to the work done, never the configured limit."""
    sb = sandbox(SPIN_WAT, max_fuel=10_000_000)
    small = sb.call_with_profiling("count", 1000)
    large = sb.call_with_profiling("count", 10_000)
    assert small.value == 1000 and large.value == 10_000
    assert 0 < small.fuel_consumed < large.fuel_consumed < 10_000_000
    assert 9 < large.fuel_consumed / small.fuel_consumed < 11
    assert large.instruction_count == large.fuel_consumed
    assert large.execution_time > timedelta(0)


# --- wall clock ------------------------------------------------------------------------------


def _assert_on_time(error: ws.ExecutionTimeout, started: float, timeout: float) -> None:
    elapsed = time.monotonic() - started
    assert timeout <= elapsed <= timeout * 1.1 + 0.05, elapsed
    assert error.timeout == timedelta(seconds=timeout)


def test_timeout_stops_a_pure_compute_loop_on_time() -> None:
    """An infinite wasm loop with unlimited fuel is stopped at the deadline."""
    sb = sandbox(SPIN_WAT, max_fuel=None, timeout_duration=0.5)
    started = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout) as info:
        sb.call("spin")
    _assert_on_time(info.value, started, 0.5)
    assert str(info.value) == "Execution timeout after 0.5 seconds"


def test_timeout_message_uses_whole_seconds() -> None:
    """The message reads like the seed's: 'Execution timeout after 1 second'."""
    sb = sandbox(SPIN_WAT, max_fuel=None, timeout_duration=timedelta(seconds=1))
    with pytest.raises(ws.ExecutionTimeout, match=r"^Execution timeout after 1 second$"):
        sb.call("spin")


def test_timeout_stops_a_c_guest_sleeping_in_poll_oneoff(c_guest) -> None:
    """A guest blocked in poll_oneoff (usleep) is woken at the deadline, not after its sleep."""
    sb = sandbox(c_guest("probe"), timeout_duration=0.4)
    started = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout) as info:
        sb.run(["sleep", "10000"])
    _assert_on_time(info.value, started, 0.4)


def test_short_sleep_completes(c_guest) -> None:
    """A sleep shorter than the timeout completes and takes about as long as asked."""
    started = time.monotonic()
    result = sandbox(c_guest("probe"), timeout_duration=5).run(["nanosleep", "150"])
    assert result.stdout == b"woke\n"
    assert 0.15 <= time.monotonic() - started < 2


def test_timeout_stops_a_guest_blocked_reading_stdin(c_guest) -> None:
    """A guest blocked reading a pipe that never delivers is stopped at the deadline."""
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(read_end, "rb", buffering=0) as stream:
            sb = sandbox(c_guest("probe"), timeout_duration=0.4)
            started = time.monotonic()
            with pytest.raises(ws.ExecutionTimeout) as info:
                sb.run(["cat"], stdin=stream)
            _assert_on_time(info.value, started, 0.4)
    finally:
        os.close(write_end)


def test_stdin_stream_is_read_to_end(c_guest) -> None:
    """A stream given as stdin is read through to EOF."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"streamed input")
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as stream:
        result = sandbox(c_guest("probe")).run(["cat"], stdin=stream)
    assert result.stdout == b"streamed input"
    assert result.stderr == b"read 14 bytes\n"


def test_timeout_applies_to_each_call() -> None:
    """The deadline restarts for every call."""
    sb = sandbox(SPIN_WAT, max_fuel=None, timeout_duration=0.3, keep_instance=True)
    for _ in range(2):
        with pytest.raises(ws.ExecutionTimeout):
            sb.call("spin")
    assert sb.call("count", 10) == 10


# --- output caps -----------------------------------------------------------------------------


def test_output_is_capped_and_flagged(c_guest) -> None:
    """Output past max_output_bytes is dropped, counted and flagged, never silently lost."""
    sb = sandbox(c_guest("probe"), max_output_bytes=10_000)
    result = sb.run(["print", "1000000"])
    assert result.exit_code == 0
    assert result.stdout == b"x" * 10_000
    assert result.stdout_truncated
    assert result.resource_report.stdout_bytes == 1_000_000


def test_output_under_cap_is_whole(c_guest) -> None:
    """Output under the cap is captured whole and not flagged."""
    result = sandbox(c_guest("probe")).run(["print", "50000"])
    assert result.stdout == b"x" * 50_000
    assert not result.stdout_truncated and not result.stderr_truncated


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_timeout_still_enforced_in_a_forked_child() -> None:
    """A child forked after the sandbox ran still gets its epoch ticker (timeouts fire)."""
    sb = sandbox(SPIN_WAT, max_fuel=None, timeout_duration=0.2)
    with pytest.raises(ws.ExecutionTimeout):
        sb.call("spin")
    with warnings.catch_warnings():  # 3.12+ warns about fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: exit 0 only if the timeout fires
        try:
            sb.call("spin")
        except ws.ExecutionTimeout:
            os._exit(0)
        except BaseException:
            os._exit(2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_kept_instance_forgets_a_memory_refusal_between_calls() -> None:
    """A refusal in one call does not colour the next call's outcome or report."""
    wat = GROW_WAT.replace(
        b'(func (export "size")', b'(func (export "trap") unreachable)\n  (func (export "size")'
    )
    kept = sandbox(wat, memory_limit=2 * MiB, keep_instance=True)
    first = kept.call_with_detailed_monitoring("grow", 100)
    assert first.value == -1 and first.resource_report.memory_limit_hit
    with pytest.raises(ws.UnreachableExecuted) as info:
        kept.call("trap")
    assert not info.value.report.memory_limit_hit
    assert not kept.call_with_detailed_monitoring("size").resource_report.memory_limit_hit

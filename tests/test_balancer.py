"""The load balancer: jobs on worker threads behind a bounded queue; every job ends with its
value, its guest's error, or an explicit Overflow/Timeout. Real guests throughout."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

import wasm_sandbox as ws

GUEST = b"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "div") (param i32 i32) (result i32)
    (i32.div_s (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l)))
  ;; sleep(ms): one relative clock subscription at 0, events at 64, count at 128
  (func (export "sleep") (param $ms i32)
    (i64.store (i32.const 16) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"""


@pytest.fixture
def sandbox() -> ws.WasmSandbox:
    return ws.WasmSandbox.builder().source(GUEST).build()


def test_jobs_run_and_every_outcome_is_delivered(sandbox: ws.WasmSandbox) -> None:
    with ws.LoadBalancer(sandbox).max_concurrent_executions(2) as balancer:
        futures = [balancer.submit("add", i, i) for i in range(200)]
        assert [f.result() for f in futures] == [2 * i for i in range(200)]
        with pytest.raises(ws.IntegerDivisionByZero):
            balancer.execute("div", 1, 0)
        with pytest.raises(ws.FunctionNotFound):
            balancer.execute("missing")
        stats = balancer.stats()
    assert (stats.completed, stats.failed, stats.dropped, stats.queued) == (200, 2, 0, 0)
    assert stats.latency_p50 is not None and stats.latency_p99 is not None
    assert stats.latency_p50 <= stats.latency_p99


def test_parallel_workers_overlap(sandbox: ws.WasmSandbox) -> None:
    with ws.LoadBalancer(sandbox).max_concurrent_executions(4) as balancer:
        start = time.monotonic()
        for future in [balancer.submit("sleep", 200) for _ in range(4)]:
            future.result()
        assert time.monotonic() - start < 0.6  # four 200 ms sleeps at once, not 800 ms


@pytest.mark.parametrize(
    ("strategy", "refused"),
    [
        (ws.OverflowStrategy.REJECT, "raised"),
        (ws.OverflowStrategy.DROP_NEWEST, "newest"),
        (ws.OverflowStrategy.DROP_OLDEST, "oldest"),
    ],
)
def test_overflow_strategies(
    sandbox: ws.WasmSandbox, strategy: ws.OverflowStrategy, refused: str
) -> None:
    balancer = ws.LoadBalancer(sandbox).max_concurrent_executions(1).queue_size(2)
    with balancer.overflow_strategy(strategy):
        blocker = balancer.submit("sleep", 300)
        time.sleep(0.05)  # the worker has taken it
        first, second = balancer.submit("add", 1, 1), balancer.submit("add", 2, 2)
        if refused == "raised":
            with pytest.raises(ws.Overflow, match="queue is full"):
                balancer.submit("add", 3, 3)
            outcomes = [first.result(), second.result()]
            assert outcomes == [2, 4]
        else:
            third = balancer.submit("add", 3, 3)
            dropped = third if refused == "newest" else first
            with pytest.raises(ws.Overflow):
                dropped.result()
            kept = [f for f in (first, second, third) if f is not dropped]
            assert sorted(f.result() for f in kept) == ([2, 4] if refused == "newest" else [4, 6])
        blocker.result()
        assert balancer.stats().dropped == 1


def test_block_strategy_waits_for_room_and_times_out(sandbox: ws.WasmSandbox) -> None:
    balancer = (
        ws.LoadBalancer(sandbox)
        .max_concurrent_executions(1)
        .queue_size(1)
        .overflow_strategy(ws.OverflowStrategy.BLOCK)
        .timeout_duration(timedelta(milliseconds=400))
    )
    with balancer:
        running = balancer.submit("sleep", 150)
        time.sleep(0.05)
        queued = balancer.submit("add", 1, 1)
        start = time.monotonic()
        waited = balancer.submit("add", 2, 2)  # blocks until the worker takes `queued`
        assert time.monotonic() - start > 0.05
        assert [running.result(), queued.result(), waited.result()] == [None, 2, 4]
        slow = balancer.submit("sleep", 2000)  # stopped at 400 ms
        time.sleep(0.05)
        filler = balancer.submit("add", 5, 5)  # fills the queue
        start = time.monotonic()
        late = balancer.submit("add", 6, 6)  # waits until `slow` is stopped
        assert 0.25 < time.monotonic() - start < 0.6
        assert [filler.result(), late.result()] == [10, 12]
        with pytest.raises(ws.Timeout) as info:
            slow.result()
        assert isinstance(info.value.__cause__, ws.ExecutionTimeout)


def test_timeout_stops_a_running_guest(sandbox: ws.WasmSandbox) -> None:
    balancer = ws.LoadBalancer(sandbox).timeout_duration(timedelta(milliseconds=300))
    with balancer:
        start = time.monotonic()
        with pytest.raises(ws.Timeout):
            balancer.execute("spin")
        assert time.monotonic() - start < 0.3 * 1.1 + 0.1
        assert balancer.stats().timed_out == 1


def test_timeout_holds_with_an_auto_scaler(sandbox: ws.WasmSandbox) -> None:
    """The balancer's timeout_duration also stops a running guest of a sandbox with an
    AutoScaler (whose limits are set per execution): the deadline is composed in one place,
    so the scaler's 3 s time limit no longer replaces the balancer's 0.3 s."""
    scaler = ws.AutoScaler().memory_policy(ws.ScalingPolicy(min_limit=1 << 20, max_limit=64 << 20))
    scaled = (
        ws.WasmSandbox.builder().source(GUEST).timeout_duration(timedelta(seconds=3))
        .auto_scaler(scaler).build()
    )  # fmt: skip
    with ws.LoadBalancer(scaled).timeout_duration(timedelta(milliseconds=300)) as balancer:
        start = time.monotonic()
        with pytest.raises(ws.Timeout):
            balancer.execute("spin")
        assert time.monotonic() - start < 0.3 * 1.1 + 0.2


def test_close_ends_queued_jobs_with_overflow(sandbox: ws.WasmSandbox) -> None:
    balancer = ws.LoadBalancer(sandbox).max_concurrent_executions(1)
    running = balancer.submit("sleep", 200)
    time.sleep(0.05)
    queued = [balancer.submit("add", i, 1) for i in range(3)]
    balancer.close()
    assert running.result() is None
    for future in queued:
        with pytest.raises(ws.Overflow, match="closed"):
            future.result()
    with pytest.raises(ws.Overflow, match="closed"):
        balancer.submit("add", 1, 1)
    assert threading.active_count() >= 1


def test_execute_async(sandbox: ws.WasmSandbox) -> None:
    async def main() -> list[int]:
        with ws.LoadBalancer(sandbox) as balancer:
            return list(
                await asyncio.gather(*(balancer.execute_async("add", i, 1) for i in range(20)))
            )

    assert asyncio.run(main()) == [i + 1 for i in range(20)]


def test_configuration_is_checked(sandbox: ws.WasmSandbox) -> None:
    with pytest.raises(ws.ConfigurationError):
        ws.LoadBalancer(sandbox).max_concurrent_executions(0)
    with pytest.raises(ws.ConfigurationError):
        ws.LoadBalancer(sandbox).timeout_duration(-1)
    with pytest.raises(TypeError):
        ws.LoadBalancer(sandbox).overflow_strategy("reject")  # type: ignore[arg-type]
    with pytest.raises(ws.ConfigurationError, match="no sandbox"):
        ws.LoadBalancer().submit("add", 1, 2)


def test_workers_do_not_leak(sandbox: ws.WasmSandbox) -> None:
    before = threading.active_count()
    for _ in range(5):
        with ws.LoadBalancer(sandbox).max_concurrent_executions(3) as balancer:
            balancer.execute("add", 1, 2)
    assert threading.active_count() <= before


@pytest.mark.parametrize(
    ("timeout", "caps", "current", "expected"),
    [
        (None, (), None, None),
        (3.0, (), None, 13.0),
        (3.0, (10.3,), None, 10.3),
        (3.0, (12.0, 10.5), None, 10.5),
        (None, (11.0,), None, 11.0),
        (None, (), 12.0, 12.0),  # limits kept: the current deadline stays
        (None, (11.0,), 12.0, 11.0),
        (30.0, (11.0,), 12.0, 11.0),  # new limits replace current, never the caps
    ],
)
def test_the_deadline_is_composed_by_one_rule(timeout, caps, current, expected) -> None:
    """deadline = min(start + timeout, *caps): the one rule every caller goes through."""
    from wasm_sandbox._wasi._context import compose_deadline  # noqa: PLC0415 - internal rule

    assert compose_deadline(10.0, timeout, caps, current) == expected

"""The load balancer: jobs on worker threads behind a bounded queue; every job ends with its
value, its guest's error, or an explicit Overflow/Timeout. Real guests throughout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws

GUEST = b"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $stat (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "open")
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "div") (param i32 i32) (result i32)
    (i32.div_s (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l)))
  ;; sleep(ms): one relative clock subscription at 0, events at 64, count at 128
  (func $sleep (export "sleep") (param $ms i32)
    (i64.store (i32.const 16) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
  ;; gate(): wait, 1 ms at a time, until the file "open" exists in the directory mounted first
  ;; (fd 3): the test decides when the job ends, no timing involved
  (func (export "gate")
    (block $open
      (loop $closed
        (br_if $open (i32.eqz (call $stat (i32.const 3) (i32.const 0)
                                          (i32.const 256) (i32.const 4) (i32.const 512))))
        (call $sleep (i32.const 1))
        (br $closed)))))"""


@pytest.fixture
def sandbox() -> ws.WasmSandbox:
    return ws.WasmSandbox.builder().source(GUEST).build()


@pytest.fixture
def gated(tmp_path: Path) -> tuple[ws.WasmSandbox, Path]:
    """The guest with ``tmp_path`` mounted, and the file whose creation ends ``gate()`` jobs."""
    sandbox = ws.WasmSandbox.builder().source(GUEST).mount_directory(tmp_path, "/gate").build()
    return sandbox, tmp_path / "open"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (a state the test waits for, not a guessed delay)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)


def running_one(balancer: ws.LoadBalancer) -> Callable[[], bool]:
    """True once a worker has taken the only submitted job (it runs, the queue is empty)."""
    return lambda: (balancer.stats().running, balancer.stats().queued) == (1, 0)


def test_jobs_run_and_every_outcome_is_delivered(sandbox: ws.WasmSandbox) -> None:
    """200 jobs on 2 workers each deliver their value in order of submission; a trapping job
    and a missing function deliver their errors; the statistics count every job once and
    give ordered latency percentiles."""
    with ws.LoadBalancer(sandbox).max_concurrent_executions(2) as balancer:
        futures = [balancer.submit("add", i, i) for i in range(200)]
        assert [f.result() for f in futures] == [2 * i for i in range(200)]
        with pytest.raises(ws.IntegerDivisionByZero):
            balancer.execute("div", 1, 0)
        with pytest.raises(ws.FunctionNotFound):
            balancer.execute("missing")
        stats = balancer.stats()
    assert (stats.completed, stats.failed, stats.dropped, stats.queued) == (200, 2, 0, 0)
    p50, p90, p99 = stats.latency_p50, stats.latency_p90, stats.latency_p99
    assert p50 is not None and p90 is not None and p99 is not None
    assert 0 < p50 <= p90 <= p99


def test_parallel_workers_overlap(sandbox: ws.WasmSandbox) -> None:
    """Four workers run four 200 ms sleeps at once: the batch takes one sleep, not four."""
    with ws.LoadBalancer(sandbox).max_concurrent_executions(4) as balancer:
        start = time.monotonic()
        for future in [balancer.submit("sleep", 200) for _ in range(4)]:
            future.result()
        elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 0.6  # the guests did sleep, all at once (800 ms one by one)


@pytest.mark.parametrize(
    ("strategy", "refused"),
    [
        (ws.OverflowStrategy.REJECT, "raised"),
        (ws.OverflowStrategy.DROP_NEWEST, "newest"),
        (ws.OverflowStrategy.DROP_OLDEST, "oldest"),
    ],
)
def test_overflow_strategies(
    gated: tuple[ws.WasmSandbox, Path], strategy: ws.OverflowStrategy, refused: str
) -> None:
    """With the only worker held busy and the queue (2 jobs) full, a third job is refused
    by REJECT (Overflow raised at submit), DROP_NEWEST (the new job's future fails) or
    DROP_OLDEST (the oldest queued job's future fails); the others all run."""
    sandbox, gate = gated
    balancer = ws.LoadBalancer(sandbox).max_concurrent_executions(1).queue_size(2)
    with balancer.overflow_strategy(strategy):
        blocker = balancer.submit("gate")
        wait_until(running_one(balancer))  # the worker holds it until the gate opens
        first, second = balancer.submit("add", 1, 1), balancer.submit("add", 2, 2)
        if refused == "raised":
            with pytest.raises(ws.Overflow, match="queue is full"):
                balancer.submit("add", 3, 3)
            kept, expected = [first, second], [2, 4]
        else:
            third = balancer.submit("add", 3, 3)
            dropped = third if refused == "newest" else first
            with pytest.raises(ws.Overflow, match="queue is full"):
                dropped.result(timeout=0)  # refused at once, while the worker is still held
            kept = [f for f in (first, second, third) if f is not dropped]
            expected = [2, 4] if refused == "newest" else [4, 6]
        assert not any(f.done() for f in kept) and not blocker.done()
        gate.touch()
        assert blocker.result() is None
        assert [f.result() for f in kept] == expected
        stats = balancer.stats()
        assert (stats.dropped, stats.completed) == (1, 3)


def test_block_strategy_waits_for_room_and_times_out(gated: tuple[ws.WasmSandbox, Path]) -> None:
    """BLOCK: a submit to a full queue returns only once a worker makes room, however long
    that takes; a running job past timeout_duration is stopped with Timeout (its cause the
    guest's ExecutionTimeout), which makes room for a blocked submitter."""
    sandbox, gate = gated
    balancer = (
        ws.LoadBalancer(sandbox)
        .max_concurrent_executions(1)
        .queue_size(1)
        .overflow_strategy(ws.OverflowStrategy.BLOCK)
        .timeout_duration(timedelta(milliseconds=400))
    )
    with balancer:
        running = balancer.submit("gate")
        wait_until(running_one(balancer))
        queued = balancer.submit("add", 1, 1)
        submitted: list[concurrent.futures.Future[Any]] = []
        waiter = threading.Thread(target=lambda: submitted.append(balancer.submit("add", 2, 2)))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and not submitted  # the queue stays full while the gate is shut
        gate.touch()
        waiter.join(10)
        assert not waiter.is_alive()
        (waited,) = submitted
        assert [running.result(), queued.result(), waited.result()] == [None, 2, 4]
        before = time.monotonic()
        slow = balancer.submit("sleep", 2000)  # stopped at 400 ms
        wait_until(running_one(balancer))
        time.sleep(0.1)  # margin: `late`'s own 400 ms outlast `slow`'s by this much
        filler = balancer.submit("add", 5, 5)  # fills the queue
        late = balancer.submit("add", 6, 6)  # waits until `slow` is stopped
        # no room before `slow`'s deadline (submission + 400 ms), and soon after it
        assert 0.4 <= time.monotonic() - before < 0.4 * 1.1 + 0.2
        assert [filler.result(), late.result()] == [10, 12]
        with pytest.raises(ws.Timeout) as info:
            slow.result()
        assert isinstance(info.value.__cause__, ws.ExecutionTimeout)


def test_timeout_stops_a_running_guest(sandbox: ws.WasmSandbox) -> None:
    """timeout_duration stops a spinning guest within one tick of it, as Timeout, counted
    in timed_out."""
    balancer = ws.LoadBalancer(sandbox).timeout_duration(timedelta(milliseconds=300))
    with balancer:
        start = time.monotonic()
        with pytest.raises(ws.Timeout):
            balancer.execute("spin")
        assert 0.3 <= time.monotonic() - start < 0.3 * 1.1 + 0.1  # not early, not late
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
        assert 0.3 <= time.monotonic() - start < 0.3 * 1.1 + 0.2


def test_close_ends_queued_jobs_with_overflow(sandbox: ws.WasmSandbox) -> None:
    """close() lets the running job finish, ends every queued job with Overflow ("closed")
    and refuses later submissions."""
    balancer = ws.LoadBalancer(sandbox).max_concurrent_executions(1)
    running = balancer.submit("sleep", 200)
    wait_until(running_one(balancer))
    queued = [balancer.submit("add", i, 1) for i in range(3)]
    balancer.close()
    assert running.result() is None
    for future in queued:
        with pytest.raises(ws.Overflow, match="closed"):
            future.result()
    with pytest.raises(ws.Overflow, match="closed"):
        balancer.submit("add", 1, 1)
    assert balancer.stats().dropped == 3


def test_execute_async(sandbox: ws.WasmSandbox) -> None:
    """execute_async delivers each job's value to its awaiting coroutine."""

    async def main() -> list[int]:
        with ws.LoadBalancer(sandbox) as balancer:
            return list(
                await asyncio.gather(*(balancer.execute_async("add", i, 1) for i in range(20)))
            )

    assert asyncio.run(main()) == [i + 1 for i in range(20)]


def test_stats_read_right_after_a_result_count_the_job_finished(sandbox: ws.WasmSandbox) -> None:
    """A job whose value has reached its caller is counted completed, never still running:
    stats() read right after each ``await execute_async`` and each ``execute`` (30 of each),
    and from a done-callback, show running 0 and every job completed."""

    async def main(balancer: ws.LoadBalancer) -> list[tuple[int, int]]:
        seen = []
        for i in range(30):
            assert await balancer.execute_async("add", i, 1) == i + 1
            stats = balancer.stats()
            seen.append((stats.running, stats.completed))
        return seen

    with ws.LoadBalancer(sandbox).max_concurrent_executions(2) as balancer:
        assert asyncio.run(main(balancer)) == [(0, i + 1) for i in range(30)]
        for i in range(30):
            assert balancer.execute("add", i, 1) == i + 1
            stats = balancer.stats()
            assert (stats.running, stats.completed) == (0, 31 + i)
        # The earliest moment a caller can look: a done-callback runs (on the worker's
        # thread) as the result is set; the job sleeps so the callback is there first.
        seen_at_result: list[tuple[int, int]] = []
        job = balancer.submit("sleep", 50)
        job.add_done_callback(
            lambda _: seen_at_result.append((balancer.stats().running, balancer.stats().completed))
        )
        job.result()
        assert seen_at_result == [(0, 61)]


def test_configuration_is_checked(sandbox: ws.WasmSandbox) -> None:
    """Zero workers, a negative timeout and a strategy that is not an OverflowStrategy are
    refused; submitting to a balancer without a sandbox is a ConfigurationError."""
    with pytest.raises(ws.ConfigurationError):
        ws.LoadBalancer(sandbox).max_concurrent_executions(0)
    with pytest.raises(ws.ConfigurationError):
        ws.LoadBalancer(sandbox).timeout_duration(-1)
    with pytest.raises(TypeError):
        ws.LoadBalancer(sandbox).overflow_strategy("reject")  # type: ignore[arg-type]
    with pytest.raises(ws.ConfigurationError, match="no sandbox"):
        ws.LoadBalancer().submit("add", 1, 2)


def test_workers_do_not_leak(sandbox: ws.WasmSandbox) -> None:
    """Closing a balancer ends its worker threads."""
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

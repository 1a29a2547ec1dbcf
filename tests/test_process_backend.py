"""Process workers for the load balancer: crash isolation, same results and errors."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

import wasm_sandbox as ws

GUEST = b"""(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l))))"""


@pytest.fixture
def backend() -> Iterator[ws.ProcessBackend]:
    with ws.ProcessBackend(max_workers=2) as running:
        yield running


def test_results_and_errors_from_worker_processes(backend: ws.ProcessBackend) -> None:
    sandbox = ws.WasmSandbox.builder().source(GUEST).max_fuel(None).build()
    with ws.LoadBalancer(sandbox).max_concurrent_executions(2).backend(backend) as balancer:
        assert [f.result() for f in [balancer.submit("add", i, 1) for i in range(10)]] == list(
            range(1, 11)
        )
        with pytest.raises(ws.IntegerDivisionByZero):
            balancer.execute("div", 1, 0)


def test_a_dead_worker_ends_only_its_job(backend: ws.ProcessBackend) -> None:
    sandbox = ws.WasmSandbox.builder().source(GUEST).max_fuel(None).build()
    with ws.LoadBalancer(sandbox).max_concurrent_executions(1).backend(backend) as balancer:
        assert balancer.execute("add", 1, 1) == 2  # the pool is up
        doomed = balancer.submit("spin")
        time.sleep(0.5)
        for pid in list(backend._pool._processes):  # the test's stand-in for a native crash
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(ws.HostError, match=r"worker process .* died"):
            doomed.result(timeout=30)
        assert balancer.execute("add", 2, 2) == 4  # a fresh pool serves the next job


def test_unpicklable_configuration_is_a_clear_error(backend: ws.ProcessBackend) -> None:
    sandbox = (
        ws.WasmSandbox.builder()
        .source(GUEST)
        .max_fuel(None)
        .resource_callback(lambda usage: None)
        .build()
    )
    with (
        ws.LoadBalancer(sandbox).backend(backend) as balancer,
        pytest.raises(ws.ConfigurationError, match="cannot be sent to a worker process"),
    ):
        balancer.execute("add", 1, 1)


SCALED = b"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; use(pages): grow memory to `pages` pages (trap when refused), then return the size
  (func (export "use") (param $pages i32) (result i32)
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then unreachable))))
    (memory.size))
  ;; nap(ms): sleep through poll_oneoff
  (func (export "nap") (param $ms i32)
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"""
PAGE = 65536


def test_auto_scaler_works_through_worker_processes(backend: ws.ProcessBackend) -> None:
    """A sandbox with an AutoScaler (which holds a lock and a lambda: it cannot be pickled)
    runs on process workers: the scaler stays in this process, picks each job's limits and
    hears what each job used. A job over the memory cap is retried once at the raised cap,
    low usage scales the limit down, a timeout scales the timeout up, as locally."""
    events: list[ws.ScalingEvent] = []
    scaler = (
        ws.AutoScaler()
        .memory_policy(ws.ScalingPolicy(min_limit=2 * PAGE, max_limit=16 * PAGE, window=2))
        .timeout_policy(ws.ScalingPolicy(min_limit=0.2, max_limit=2, window=100))
        .on_scale(events.append)
    )
    sandbox = (
        ws.WasmSandbox.builder()
        .source(SCALED)
        .memory_limit(4 * PAGE)
        .timeout_duration(0.2)
        .max_fuel(None)
        .auto_scaler(scaler)
        .build()
    )
    with ws.LoadBalancer(sandbox).max_concurrent_executions(1).backend(backend) as balancer:
        assert balancer.execute("use", 6) == 6  # over the 4-page cap: retried at 8 pages
        assert scaler.memory_limit == 8 * PAGE
        assert [(e.resource, e.old, e.new) for e in events] == [("memory", 4 * PAGE, 8 * PAGE)]
        for _ in range(2):
            assert balancer.execute("use", 1) == 1  # 1 page of 8: twice under 30%
        assert scaler.memory_limit == 4 * PAGE
        with pytest.raises(ws.MemoryLimitExceeded) as too_big:
            balancer.execute("use", 40)  # over max_limit: raised to 16 pages, still too big
        assert too_big.value.report.memory_limit_bytes == 8 * PAGE  # the worker ran the retry
        assert scaler.memory_limit == 8 * PAGE
        with pytest.raises(ws.ExecutionTimeout):
            balancer.execute("nap", 1000)  # times out at the scaled 0.2 s: raised to 0.4 s
        assert scaler.timeout == timedelta(seconds=0.4)
        assert balancer.execute("nap", 300) is None  # fits now: the worker got 0.4 s
    assert [(e.resource, e.reason) for e in events] == [
        ("memory", "the limit was hit"),
        ("memory", "2 executions at or under 30%"),
        ("memory", "the limit was hit"),
        ("timeout", "the limit was hit"),
    ]


def test_balancer_timeout_is_not_the_scalers_on_workers(backend: ws.ProcessBackend) -> None:
    """A job stopped by the balancer's timeout_duration (shorter than the scaled timeout)
    ends with Timeout and does not raise the scaler's timeout."""
    scaler = ws.AutoScaler().timeout_policy(ws.ScalingPolicy(min_limit=1, max_limit=10))
    sandbox = (
        ws.WasmSandbox.builder().source(SCALED).timeout_duration(5).auto_scaler(scaler).build()
    )
    with (
        ws.LoadBalancer(sandbox).timeout_duration(0.5).backend(backend) as balancer,
        pytest.raises(ws.Timeout),
    ):
        balancer.execute("nap", 3000)
    assert scaler.timeout == timedelta(seconds=5)
    assert scaler.events == []

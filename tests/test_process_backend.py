"""Process workers for the load balancer: crash isolation, same results and errors."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

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

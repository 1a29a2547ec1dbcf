"""The Ray backend: the same jobs, limits, results and errors on a local Ray instance
started by this test module (2 CPUs) and shut down at its end."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import wasm_sandbox as ws

ray = pytest.importorskip("ray", reason="the Ray backend needs ray (in the test extras)")

GUEST = b"""(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "spin") (loop $l (br $l))))"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def balancer(cluster: None) -> Iterator[ws.LoadBalancer]:
    sandbox = ws.WasmSandbox.builder().source(GUEST).memory_limit(4 * 65536).max_fuel(None).build()
    with ws.LoadBalancer(sandbox).max_concurrent_executions(2).backend(ws.RayBackend()) as lb:
        yield lb


def test_results_on_ray(balancer: ws.LoadBalancer) -> None:
    """Twenty jobs run as Ray tasks deliver their values in order, all counted as completed."""
    futures = [balancer.submit("add", i, 1) for i in range(20)]
    assert [f.result() for f in futures] == [i + 1 for i in range(20)]
    assert balancer.stats().completed == 20


def test_errors_and_limits_on_ray_are_the_local_ones(balancer: ws.LoadBalancer) -> None:
    """On a Ray worker a trap is the same error with its trap code, the memory cap refuses the same
    grow, and a missing function is FunctionNotFound."""
    with pytest.raises(ws.IntegerDivisionByZero) as trap:
        balancer.execute("div", 1, 0)
    assert trap.value.trap_code == "integer_division_by_zero"
    assert balancer.execute("grow", 2) == 1
    assert balancer.execute("grow", 10) == -1  # the memory cap holds on the Ray worker
    with pytest.raises(ws.FunctionNotFound):
        balancer.execute("nope")


def test_timeout_on_ray(cluster: None) -> None:
    """The balancer's timeout_duration stops a spinning job on a Ray worker: Timeout, caused by the
    guest's ExecutionTimeout."""
    sandbox = ws.WasmSandbox.builder().source(GUEST).max_fuel(None).build()
    lb = ws.LoadBalancer(sandbox).backend(ws.RayBackend())
    with lb.timeout_duration(timedelta(milliseconds=500)):
        with pytest.raises(ws.Timeout) as info:
            lb.execute("spin")
        assert isinstance(info.value.__cause__, ws.ExecutionTimeout)


def test_local_traps_survive_ray_init(cluster: None) -> None:
    """ray.init() replaces the signal handlers wasmtime's traps need; a trap in this process
    afterwards must still be an error, not the end of the process."""
    sandbox = ws.WasmSandbox.builder().source(GUEST).build()
    with pytest.raises(ws.IntegerDivisionByZero):
        sandbox.call("div", 1, 0)


def test_auto_scaler_works_on_ray(cluster: None) -> None:
    """A sandbox with an AutoScaler runs on Ray: the scaler stays in the driver, a job over
    the memory cap is retried once at the raised cap the driver chose."""
    page = 65536
    events: list[ws.ScalingEvent] = []
    scaler = (
        ws.AutoScaler()
        .memory_policy(ws.ScalingPolicy(min_limit=page, max_limit=16 * page))
        .on_scale(events.append)
    )
    grower = GUEST.replace(
        b'(func (export "spin")',
        b'(func (export "use") (param i32) (result i32)'
        b" (if (i32.eq (memory.grow (local.get 0)) (i32.const -1)) (then unreachable))"
        b' (memory.size))\n  (func (export "spin")',
    )
    sandbox = ws.WasmSandbox.builder().source(grower).memory_limit(4 * page).auto_scaler(scaler)
    with ws.LoadBalancer(sandbox.build()).backend(ws.RayBackend()) as balancer:
        assert balancer.execute("use", 5) == 6  # 6 pages > 4: retried at 8 pages
    assert scaler.memory_limit == 8 * page
    assert [(e.old, e.new, e.reason) for e in events] == [(4 * page, 8 * page, "the limit was hit")]


def test_a_trap_survives_ray_init_between_engine_and_first_instance(tmp_path: Path) -> None:
    """A process that made its engine (wasmtime installs its trap handlers then), then ran
    ray.init() (which replaces them), then made its first instance: a trap is still an
    error, not SIGILL (the handlers are recorded with the engine, not at the first
    instance, where Ray's would have been taken for wasmtime's)."""
    code = f"""
import ray, wasm_sandbox as ws
box = ws.WasmSandbox.builder().source({GUEST!r}).cache_dir(None).build()
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
try:
    try:
        box.call("div", 1, 0)
    except ws.IntegerDivisionByZero:
        print("trapped as an error")
finally:
    ray.shutdown()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trapped as an error" in done.stdout

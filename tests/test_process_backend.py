"""Process workers for the load balancer: crash isolation, same results and errors.

Workers really die here: by SIGKILL, from a host-side callable running inside the worker (the
test's stand-in for a fault in native code), or from the test itself."""

from __future__ import annotations

import multiprocessing.resource_tracker
import os
import signal
import sys
import time
import types
from collections.abc import Iterator
from datetime import timedelta

import pytest

import wasm_sandbox as ws
from tests.netservers import open_fd_count
from tests.test_autoscale import GROWER, PAGE

GUEST = b"""(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l))))"""

# hold(x, ms): sleeps ms milliseconds (poll_oneoff on the monotonic clock), returns 2x.
# crash(): grows memory past 2 MiB, then spins: the worker's sampler sees it and kills it.
HOLD = b"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "hold") (param $x i32) (param $ms i32) (result i32)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24)
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.mul (local.get $x) (i32.const 2)))
  (func (export "crash") (drop (memory.grow (i32.const 32))) (loop $l (br $l))))"""


def kill_own_worker_when_memory_grows(usage: ws.ResourceUsage) -> None:
    """A resource callback (it runs in the worker process, on the guest's thread) that
    SIGKILLs its own process once the guest holds more than 1 MiB: only ``crash`` does."""
    if usage.memory.used > 2**20:
        os.kill(os.getpid(), signal.SIGKILL)


def child_pids() -> set[int]:
    """The live processes whose parent is this one (from /proc)."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                children.add(int(entry))
    return children


@pytest.fixture
def backend() -> Iterator[ws.ProcessBackend]:
    with ws.ProcessBackend(max_workers=2) as running:
        yield running


def test_results_and_errors_from_worker_processes(backend: ws.ProcessBackend) -> None:
    """Jobs run in worker processes return their values in order, and a trap there is the same error
    as a local one."""
    sandbox = ws.WasmSandbox.builder().source(GUEST).max_fuel(None).build()
    with ws.LoadBalancer(sandbox).max_concurrent_executions(2).backend(backend) as balancer:
        assert [f.result() for f in [balancer.submit("add", i, 1) for i in range(10)]] == list(
            range(1, 11)
        )
        with pytest.raises(ws.IntegerDivisionByZero):
            balancer.execute("div", 1, 0)


def test_a_dead_worker_ends_only_its_job(backend: ws.ProcessBackend) -> None:
    """A worker killed while it runs a job ends that job with HostError naming the signal; a fresh
    worker serves the next job, and the dead one is reaped."""
    sandbox = ws.WasmSandbox.builder().source(GUEST).max_fuel(None).build()
    with ws.LoadBalancer(sandbox).max_concurrent_executions(1).backend(backend) as balancer:
        assert balancer.execute("add", 1, 1) == 2  # the pool is up
        (pid,) = backend._pids()
        doomed = balancer.submit("spin")
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)  # the test's stand-in for a native crash
        with pytest.raises(ws.HostError, match=r"worker process .* died \(killed by SIGKILL\)"):
            doomed.result(timeout=30)
        assert balancer.execute("add", 2, 2) == 4  # a fresh worker serves the next job
        assert pid not in backend._pids() and pid not in child_pids()  # replaced and reaped


def test_a_worker_that_dies_mid_job_fails_only_that_job_while_others_run() -> None:
    """Four workers: three busy with 3 s jobs of known results, the fourth running a job
    that kills its own worker. Only that job fails (HostError); the three others return
    their own values; the pool serves the next jobs; close() leaves no process, no fd."""
    sandbox = (
        ws.WasmSandbox.builder()
        .source(HOLD)
        .max_fuel(None)
        .resource_callback(kill_own_worker_when_memory_grows)
        .monitoring_interval(0.01)
        .build()
    )
    # The spawn start method runs one resource tracker per parent process, for good (its
    # process and its pipe): start it before counting what the backend leaves behind.
    multiprocessing.resource_tracker.ensure_running()
    children, fds = child_pids(), open_fd_count()
    with (
        ws.ProcessBackend(max_workers=4) as backend,
        ws.LoadBalancer(sandbox).max_concurrent_executions(4).backend(backend) as balancer,
    ):
        warm = [balancer.submit("hold", x, 300) for x in range(4)]  # four workers up
        assert [f.result(timeout=120) for f in warm] == [0, 2, 4, 6]
        workers = set(backend._pids())
        assert len(workers) == 4
        busy = [balancer.submit("hold", x, 3000) for x in (10, 20, 30)]
        doomed = balancer.submit("crash")
        with pytest.raises(ws.HostError, match=r"worker process .* died"):
            doomed.result(timeout=60)
        assert not any(f.done() for f in busy)  # they were running when it died
        assert [f.result(timeout=60) for f in busy] == [20, 40, 60]
        after = [balancer.submit("hold", x, 10) for x in range(8)]
        assert [f.result(timeout=120) for f in after] == [2 * x for x in range(8)]
        assert balancer.stats().failed == 1
        assert len(workers - set(backend._pids())) == 1  # the dead one, replaced
        workers |= set(backend._pids())
    assert child_pids() == children and not workers & child_pids()
    assert open_fd_count() == fds


def test_unpicklable_configuration_is_a_clear_error(backend: ws.ProcessBackend) -> None:
    """A configuration holding a lambda (a resource_callback) cannot be sent to a worker process:
    the job fails with a ConfigurationError saying so."""
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


def test_a_configuration_a_worker_cannot_load_is_a_clear_error_and_the_worker_lives(
    backend: ws.ProcessBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callback from a module only this process has pickles here but cannot be loaded in
    the worker: the job fails with ConfigurationError, and the worker serves the next job."""
    module = types.ModuleType("wsbx_only_in_the_parent")
    exec("def callback(usage):\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    unloadable = (
        ws.WasmSandbox.builder()
        .source(GUEST)
        .max_fuel(None)
        .resource_callback(module.callback)
        .build()
    )
    with pytest.raises(ws.ConfigurationError, match="No module named 'wsbx_only_in_the_parent'"):
        backend.run(unloadable, "add", (1, 2), {}, None)
    (pid,) = backend._pids()
    sandbox = ws.WasmSandbox.builder().source(GUEST).max_fuel(None).build()
    assert backend.run(sandbox, "add", (1, 2), {}, None) == 3
    assert backend._pids() == [pid]


SCALED = GROWER  # use(pages) and nap(ms), as the local auto-scaler tests use them


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

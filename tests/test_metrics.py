"""Prometheus metrics (prometheus-client) of real executions, on a private registry."""

from __future__ import annotations

import logging
from datetime import timedelta

import prometheus_client
import pytest

import wasm_sandbox as ws

GUEST = b"""(module
  (memory (export "memory") 3)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l))))"""


def test_executions_are_counted_by_outcome() -> None:
    """Each execution is counted once under its outcome (ok, ExecutionTimeout), with its peak
    memory, fuel and duration; once closed, the metrics stop counting and leave the registry."""
    registry = prometheus_client.CollectorRegistry()
    metrics = ws.enable_prometheus_metrics(registry)
    try:
        sandbox = (
            ws.WasmSandbox.builder()
            .source(GUEST)
            .timeout_duration(timedelta(milliseconds=100))
            .build()
        )
        for _ in range(3):
            sandbox.call("add", 1, 2)
        with pytest.raises(ws.ExecutionTimeout):
            sandbox.call("spin")
        get = registry.get_sample_value
        assert get("wasm_sandbox_executions_total", {"outcome": "ok"}) == 3
        assert get("wasm_sandbox_executions_total", {"outcome": "ExecutionTimeout"}) == 1
        assert get("wasm_sandbox_peak_memory_bytes_count") == 4
        assert get("wasm_sandbox_peak_memory_bytes_sum") == 4 * 3 * 65536
        assert (get("wasm_sandbox_fuel_consumed_total") or 0) > 0  # STANDARD meters fuel
        assert b"wasm_sandbox_execution_seconds_bucket" in prometheus_client.generate_latest(
            registry
        )
    finally:
        metrics.close()
    sandbox.call("add", 1, 2)  # closed: no longer counted, and unregistered
    assert registry.get_sample_value("wasm_sandbox_executions_total", {"outcome": "ok"}) is None


def test_a_raising_observer_is_logged_once_and_dropped_from_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Metrics observe every execution of the process, so that is the scope of the rule: an
    observer that raises is called once, logged once with its traceback and dropped (it is
    not called for the next executions), while the guests' values are unchanged and another
    PrometheusMetrics goes on counting."""
    calls = 0

    class Broken(ws.PrometheusMetrics):
        def observe(self, report: ws.ResourceReport) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("metrics bug")

    broken_registry = prometheus_client.CollectorRegistry()
    registry = prometheus_client.CollectorRegistry()
    broken = Broken(broken_registry)
    healthy = ws.enable_prometheus_metrics(registry)
    try:
        sandbox = ws.WasmSandbox.builder().source(GUEST).build()
        with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
            assert [sandbox.call("add", n, 1) for n in range(3)] == [1, 2, 3]
        assert calls == 1
        [record] = [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
        assert record.levelno == logging.ERROR and "this process" in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError
        assert registry.get_sample_value("wasm_sandbox_executions_total", {"outcome": "ok"}) == 3
        assert b"wasm_sandbox_executions" in prometheus_client.generate_latest(broken_registry)
    finally:
        broken.close()
        healthy.close()
    # a dropped observer's close() still unregisters its metrics
    assert b"wasm_sandbox_executions" not in prometheus_client.generate_latest(broken_registry)

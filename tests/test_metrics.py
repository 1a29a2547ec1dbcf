"""Prometheus metrics (prometheus-client) of real executions, on a private registry."""

from __future__ import annotations

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

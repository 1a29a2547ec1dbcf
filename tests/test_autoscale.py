"""The auto-scaler moves a sandbox's memory limit and timeout within [min, max] across
executions of real guests: up on high usage (and a memory-cap failure retried once at the
raised cap), down after a window of low usage; every change is an event and a log line."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest

import wasm_sandbox as ws

PAGE = 65536
GROWER = b"""(module
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
    (i32.store (i32.const 8) (i32.const 0))
    (i64.store (i32.const 16) (i64.const 0))
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"""


def _sandbox(scaler: ws.AutoScaler, memory_pages: int = 4, timeout: float = 1.0) -> ws.WasmSandbox:
    return (
        ws.WasmSandbox.builder()
        .source(GROWER)
        .memory_limit(memory_pages * PAGE)
        .timeout_duration(timedelta(seconds=timeout))
        .auto_scaler(scaler)
        .build()
    )


def test_memory_scales_up_and_a_capped_execution_is_retried_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An execution stopped by the memory cap raises the cap (4 to 8 pages, one event, one log line)
    and is retried once at the new cap; beyond max_limit no retry helps and MemoryLimitExceeded
    reaches the caller."""
    events: list[ws.ScalingEvent] = []
    scaler = (
        ws.AutoScaler()
        .memory_policy(ws.ScalingPolicy(min_limit=2 * PAGE, max_limit=16 * PAGE, window=3))
        .on_scale(events.append)
    )
    sandbox = _sandbox(scaler)
    with caplog.at_level(logging.INFO, logger="wasm_sandbox.autoscale"):
        assert sandbox.call("use", 6) == 6  # 6 pages > the 4-page cap: retried at 8
    assert scaler.memory_limit == 8 * PAGE
    assert [(e.resource, e.old, e.new, e.reason) for e in events] == [
        ("memory", 4 * PAGE, 8 * PAGE, "the limit was hit")
    ]
    assert [r.getMessage() for r in caplog.records if r.name == "wasm_sandbox.autoscale"] == [
        "memory limit 256 KiB -> 512 KiB (the limit was hit)"
    ]
    with pytest.raises(ws.MemoryLimitExceeded):
        sandbox.call("use", 40)  # beyond max_limit (16 pages): no retry can help
    assert scaler.memory_limit == 16 * PAGE


def test_a_raising_on_scale_is_logged_once_and_dropped_from_its_scaler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_scale that raises at the first event is called once, logged once with its
    traceback, and dropped from that scaler (its scope: scaling is process-wide state): the
    execution that caused the event is retried and returns its value, the later events are
    still kept and logged, and on_scale(fn) sets a callback anew."""
    calls = 0

    def broken(event: ws.ScalingEvent) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("scale bug")

    scaler = (
        ws.AutoScaler()
        .memory_policy(ws.ScalingPolicy(min_limit=2 * PAGE, max_limit=16 * PAGE, window=3))
        .on_scale(broken)
    )
    sandbox = _sandbox(scaler)
    with caplog.at_level(logging.INFO, logger="wasm_sandbox"):
        assert sandbox.call("use", 6) == 6  # over the 4-page cap: an event, retried at 8
        assert sandbox.call("use", 8) == 8  # 8 of 8 pages: an event, up to 16
    assert calls == 1
    assert [(e.old, e.new) for e in scaler.events] == [(4 * PAGE, 8 * PAGE), (8 * PAGE, 16 * PAGE)]
    assert len([r for r in caplog.records if r.name == "wasm_sandbox.autoscale"]) == 2
    [record] = [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
    assert record.levelno == logging.ERROR
    assert "on_scale" in record.getMessage() and "this AutoScaler" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError

    seen: list[ws.ScalingEvent] = []
    scaler.on_scale(seen.append)
    for _ in range(3):
        assert sandbox.call("use", 1) == 1  # 1 page of 16, three times: down to 8
    assert seen == scaler.events[-1:] and seen[0].new == 8 * PAGE
    assert calls == 1


def test_memory_scales_down_after_a_window_of_low_usage() -> None:
    """After each window of executions using under 30% of the memory cap, the cap is halved:
    32 pages to 16, then 8, then 4."""
    scaler = ws.AutoScaler().memory_policy(
        ws.ScalingPolicy(min_limit=2 * PAGE, max_limit=64 * PAGE, window=3)
    )
    sandbox = _sandbox(scaler, memory_pages=32)
    for _ in range(3):
        sandbox.call("use", 1)  # 1 page of 32: under 30%
    assert scaler.memory_limit == 16 * PAGE
    assert scaler.events[-1].reason.startswith("3 executions")
    for _ in range(6):
        sandbox.call("use", 1)
    assert scaler.memory_limit == 4 * PAGE  # 16 -> 8 -> 4, never under min (2 pages)


def test_timeout_scales_with_observed_time() -> None:
    """An execution using 90% of its time doubles the timeout, one that times out doubles it again,
    and a window of quick executions halves it."""
    scaler = ws.AutoScaler().timeout_policy(
        ws.ScalingPolicy(min_limit=0.1, max_limit=timedelta(seconds=2), window=2)
    )
    sandbox = _sandbox(scaler, timeout=0.2)
    sandbox.call("nap", 180)  # 90% of 0.2 s: up to 0.4 s
    assert scaler.timeout == timedelta(seconds=0.4)
    assert re.fullmatch(
        r"timeout limit 200 ms -> 400 ms \(used 1[89][0-9] ms of 200 ms\)", str(scaler.events[-1])
    ), str(scaler.events[-1])
    with pytest.raises(ws.ExecutionTimeout):
        sandbox.call("nap", 1000)  # times out at 0.4 s, and raises the limit to 0.8 s
    assert scaler.timeout == timedelta(seconds=0.8)
    sandbox.call("nap", 500)  # fits now
    for _ in range(2):
        sandbox.call("nap", 1)
    assert scaler.timeout == timedelta(seconds=0.4)


def test_scaling_policy_and_builder_are_checked() -> None:
    """A policy whose bounds, thresholds or step cannot work is a ConfigurationError, and so is an
    AutoScaler on a kept instance."""
    with pytest.raises(ws.ConfigurationError):
        ws.ScalingPolicy(min_limit=10, max_limit=5)
    with pytest.raises(ws.ConfigurationError):
        ws.ScalingPolicy(min_limit=1, max_limit=5, scale_up_threshold=0.2, scale_down_threshold=0.5)
    with pytest.raises(ws.ConfigurationError):
        ws.ScalingPolicy(min_limit=1, max_limit=5, step=1)
    with pytest.raises(ws.ConfigurationError, match="kept instance"):
        ws.WasmSandbox.builder().source(GROWER).keep_instance(True).auto_scaler(
            ws.AutoScaler()
        ).build()


def test_memory_never_scales_below_the_need_of_a_module_hiding_its_memory() -> None:
    """A guest that does not export its memory is measured all the same: the scaler keeps a
    limit it fits under instead of lowering it until every call fails."""
    hidden = GROWER.replace(b'(memory (export "memory") 1)', b"(memory 1)")
    assert hidden != GROWER
    scaler = ws.AutoScaler().memory_policy(
        ws.ScalingPolicy(min_limit=PAGE, max_limit=64 * PAGE, window=2, retry=False)
    )
    sandbox = (
        ws.WasmSandbox.builder().source(hidden).memory_limit(32 * PAGE).auto_scaler(scaler).build()
    )
    for _ in range(12):
        assert sandbox.call("use", 12) == 12  # 12 pages of 32: 37.5%, above 30%
    assert scaler.memory_limit == 32 * PAGE and scaler.events == []
    report = sandbox.call_with_detailed_monitoring("use", 12).resource_report
    assert report.peak_memory_bytes == 12 * PAGE


def test_limits_before_the_first_execution_are_the_sandboxs() -> None:
    """memory_limit and timeout say what the next execution gets from the time the scaler is
    given to a sandbox: before any execution, the sandbox's configured limits (within the
    policy's bounds); before that, None."""
    scaler = (
        ws.AutoScaler()
        .memory_policy(ws.ScalingPolicy(min_limit=2 * PAGE, max_limit=64 * PAGE))
        .timeout_policy(ws.ScalingPolicy(min_limit=0.1, max_limit=10))
    )
    assert (scaler.memory_limit, scaler.timeout) == (None, None)
    sandbox = _sandbox(scaler, memory_pages=4, timeout=1.5)
    assert scaler.memory_limit == 4 * PAGE
    assert scaler.timeout == timedelta(seconds=1.5)
    report = sandbox.call_with_detailed_monitoring("use", 1).resource_report
    assert (report.memory_limit_bytes, report.timeout) == (4 * PAGE, timedelta(seconds=1.5))
    clamped = ws.AutoScaler().memory_policy(
        ws.ScalingPolicy(min_limit=8 * PAGE, max_limit=16 * PAGE)
    )
    _sandbox(clamped, memory_pages=4)
    assert clamped.memory_limit == 8 * PAGE  # raised to the policy's minimum
    first = clamped.limits_for(ws.ResourceLimits(memory_bytes=4 * PAGE), 0).memory_bytes
    assert first == clamped.memory_limit


def test_scaling_event_reads_as_sizes_and_durations() -> None:
    """A ScalingEvent prints its limits as sizes (memory) or durations (timeout)."""
    assert str(ws.ScalingEvent("memory", 2 * 2**20, 4 * 2**20, "the limit was hit")) == (
        "memory limit 2 MiB -> 4 MiB (the limit was hit)"
    )
    assert str(ws.ScalingEvent("timeout", 1.5, 0.75, "5 executions at or under 30%")) == (
        "timeout limit 1.5 s -> 750 ms (5 executions at or under 30%)"
    )

"""Live monitoring: samples taken on the guest's thread while it runs (a pure compute loop
included), alerts on thresholds, and callbacks that are slow or raise never touching the
guest. Every test drives a real guest."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.netservers import sink_server
from wasm_sandbox._observe._monitor import DISPATCHER

SPIN = b"""(module
  (memory (export "memory") 2)
  (func (export "spin") (param $ms i32)
    (loop $again
      (br $again))))"""

GROW = b"""(module
  (memory (export "memory") 1)
  (func (export "grow") (param $pages i32) (result i32)
    (memory.grow (local.get $pages)))
  (func (export "spin")
    (loop $again (br $again))))"""


def _sandbox(wat: bytes, **options: object) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(wat)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def test_samples_arrive_during_a_pure_compute_loop() -> None:
    """A guest spinning in pure wasm is sampled at the monitoring interval while it runs: samples
    arrive during the call, CPU time grows, memory and fuel are read, a final sample ends the series
    and the report counts them all."""
    samples: list[tuple[float, ws.ResourceUsage]] = []
    sandbox = _sandbox(
        SPIN,
        timeout_duration=timedelta(milliseconds=600),
        resource_callback=lambda u: samples.append((time.monotonic(), u)),
        monitoring_interval=timedelta(milliseconds=50),
    )
    start = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout) as info:
        sandbox.call("spin", 0)
    assert DISPATCHER.drain()
    running = [(t, u) for t, u in samples if not u.final]
    assert len(running) >= 8  # ~12 expected at 50 ms over 600 ms
    assert any(t - start < 0.3 for t, _ in running)  # delivered while the guest still ran
    cpu = [u.cpu_time for _, u in running]
    assert cpu == sorted(cpu) and cpu[-1] > timedelta(milliseconds=300)
    assert running[0][1].memory == ws.MemoryUsage(2 * 65536, 64 * 2**20)
    assert running[-1][1].fuel_consumed is not None  # STANDARD meters fuel
    assert samples[-1][1].final
    assert info.value.report is not None
    assert info.value.report.monitoring_samples == len(samples)


def test_a_slow_callback_never_stalls_the_guest() -> None:
    """A callback that takes 0.3 s per sample runs off the guest's thread: the guest ends at
    its timeout, and the samples reach the callback afterwards."""
    calls: list[float] = []

    def slow(usage: ws.ResourceUsage) -> None:
        calls.append(time.monotonic())
        time.sleep(0.3)

    sandbox = _sandbox(
        SPIN,
        timeout_duration=timedelta(milliseconds=300),
        resource_callback=slow,
        monitoring_interval=timedelta(milliseconds=50),
    )
    start = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout):
        sandbox.call("spin", 0)
    assert time.monotonic() - start < 0.3 * 1.1 + 0.1
    assert DISPATCHER.drain(10)
    assert len(calls) >= 4  # it was called, slowly, off the guest's thread


STAGES = b"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $nap (param $ms i32)
    (i32.store (i32.const 8) (i32.const 0))
    (i64.store (i32.const 16) (i64.const 0))
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
  ;; stages(first, second, ms): memory to `first` pages, nap, to `second` pages, nap; 42
  (func (export "stages") (param $first i32) (param $second i32) (param $ms i32) (result i32)
    (drop (memory.grow (i32.sub (local.get $first) (memory.size))))
    (call $nap (local.get $ms))
    (drop (memory.grow (i32.sub (local.get $second) (memory.size))))
    (call $nap (local.get $ms))
    (i32.const 42)))"""


def _callback_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]


def test_a_raising_resource_callback_is_logged_once_dropped_for_the_execution_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resource callback that raises at the first of the samples of a 300 ms execution is
    called once in it, logged once with its traceback and listed in the report's
    monitoring_callback_errors; the guest's value is unchanged; the next execution calls it
    again."""
    calls = 0

    def broken(usage: ws.ResourceUsage) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("sample bug")

    sandbox = _sandbox(
        STAGES, resource_callback=broken, monitoring_interval=timedelta(milliseconds=20)
    )
    with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        result = sandbox.call_with_detailed_monitoring("stages", 1, 1, 150)
        assert DISPATCHER.drain()
    assert result.value == 42
    report = result.resource_report
    assert report.monitoring_samples >= 5  # every one but the first went to no callback
    assert calls == 1
    assert report.monitoring_callback_errors == ("resource_callback: RuntimeError: sample bug",)
    [record] = _callback_records(caplog)
    assert record.levelno == logging.ERROR and "resource_callback" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError

    again = sandbox.call_with_detailed_monitoring("stages", 1, 1, 150)
    assert DISPATCHER.drain()
    assert again.value == 42 and calls == 2
    assert again.resource_report.monitoring_callback_errors == report.monitoring_callback_errors


def test_a_raising_alert_callback_is_logged_once_dropped_for_the_execution_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An alert callback that raises at the first of two alerts (memory WARNING, then
    CRITICAL) is called once, logged once and listed in the report, which still lists both
    alerts; the guest's value is unchanged; the next execution calls it again."""
    calls = 0

    def broken(alert: ws.Alert) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("alert bug")

    monitor = ws.ResourceMonitor().memory_threshold(20).alert_callback(broken)
    sandbox = _sandbox(
        STAGES,
        memory_limit=16 * 65536,
        resource_monitor=monitor,
        monitoring_interval=timedelta(milliseconds=20),
    )
    with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        result = sandbox.call_with_detailed_monitoring("stages", 4, 10, 150)  # 25%, 62.5%
        assert DISPATCHER.drain()
    assert result.value == 42
    report = result.resource_report
    assert [a.level for a in report.alerts] == [ws.AlertLevel.WARNING, ws.AlertLevel.CRITICAL]
    assert calls == 1
    assert report.monitoring_callback_errors == ("alert_callback: RuntimeError: alert bug",)
    [record] = _callback_records(caplog)
    assert "alert_callback" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError

    assert sandbox.call("stages", 4, 10, 150) == 42
    assert DISPATCHER.drain()
    assert calls == 2


def test_system_exit_from_a_monitoring_callback_is_its_error_and_the_thread_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On the monitoring thread nobody could receive a SystemExit: it is logged once, the
    callback dropped and the error reported like any other, and the thread goes on
    delivering to the next execution's callbacks."""
    calls = 0

    def exiting(usage: ws.ResourceUsage) -> None:
        nonlocal calls
        calls += 1
        raise SystemExit(3)

    sandbox = _sandbox(
        STAGES, resource_callback=exiting, monitoring_interval=timedelta(milliseconds=20)
    )
    with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        result = sandbox.call_with_detailed_monitoring("stages", 1, 1, 100)
        assert DISPATCHER.drain()
    assert result.value == 42 and calls == 1
    assert result.resource_report.monitoring_callback_errors == (
        "resource_callback: SystemExit: 3",
    )
    assert len(_callback_records(caplog)) == 1
    seen: list[ws.ResourceUsage] = []
    other = _sandbox(STAGES, resource_callback=seen.append)
    assert other.call("stages", 1, 1, 0) == 42
    assert DISPATCHER.drain()
    assert seen and seen[-1].final


def test_memory_and_cpu_alerts() -> None:
    """Crossing the memory threshold raises one WARNING alert with the exact value and message; a
    spinning guest raises a CPU alert; the report keeps the alerts."""
    alerts: list[ws.Alert] = []
    monitor = ws.ResourceMonitor().memory_threshold(50).cpu_threshold(20)
    monitor.alert_callback(alerts.append)
    sandbox = _sandbox(
        GROW,
        memory_limit=16 * 65536,
        resource_monitor=monitor,
        monitoring_interval=timedelta(milliseconds=20),
        timeout_duration=timedelta(milliseconds=300),
    )
    assert sandbox.call("grow", 9) == 1  # 10 of 16 pages: 62.5%
    assert DISPATCHER.drain()
    assert [(a.metric, a.level) for a in alerts] == [("memory", ws.AlertLevel.WARNING)]
    assert alerts[0].value == pytest.approx(62.5) and alerts[0].threshold == 50
    assert alerts[0].message == "memory at 62.5% (threshold 50%)"
    alerts.clear()
    with pytest.raises(ws.ExecutionTimeout) as info:
        sandbox.call("spin")
    assert DISPATCHER.drain()
    # a spinning guest is on the CPU nearly all the time (less on a busy machine): at least
    # the WARNING at 20%, CRITICAL at 30%
    assert "cpu" in {a.metric for a in alerts}
    assert info.value.report is not None and info.value.report.alerts


def test_io_and_network_thresholds(c_guest: Callable[[str], Path], tmp_path: Path) -> None:
    """Network and file-operation rates raise their alerts, whose messages give the rates in
    readable units (not ``2.09715e+06``)."""
    alerts: list[ws.Alert] = []
    monitor = ws.ResourceMonitor().network_threshold(2 * 2**20).alert_callback(alerts.append)
    with sink_server() as server:
        sandbox = (
            ws.WasmSandbox.builder()
            .source(c_guest("net_client"))
            .allow_network(server.endpoint)
            .resource_monitor(monitor)
            .monitoring_interval(timedelta(milliseconds=10))
            .build()
        )
        result = sandbox.run(args=["upload", server.host, str(server.port), str(64 * 2**20)])
        assert result.exit_code == 0, result.stdout
    assert DISPATCHER.drain()
    network = [a for a in alerts if a.metric == "network"]
    assert network, alerts
    assert re.fullmatch(
        r"network at [0-9.]+ [KMG]iB/s \(threshold 2 MiB/s\)", network[0].message
    ), network[0].message
    io_alerts: list[ws.Alert] = []
    io_monitor = ws.ResourceMonitor().io_threshold(100).alert_callback(io_alerts.append)
    files = (
        ws.WasmSandbox.builder()
        .source(c_guest("fs_churn"))
        .memory_fs("/tmp")
        .resource_monitor(io_monitor)
        .monitoring_interval(timedelta(milliseconds=10))
        .build()
    )
    assert files.run(args=["/tmp", "3000"]).stdout == b"3000\n"
    assert DISPATCHER.drain()
    io = [a for a in io_alerts if a.metric == "io"]
    assert io, io_alerts
    assert re.fullmatch(
        r"io at [0-9,]+ file operations/s \(threshold 100 file operations/s\)", io[0].message
    ), io[0].message


def test_alert_on_high_usage_logs_and_monitoring_without_callback_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without callbacks, alert_on_high_usage sends its memory alert (90% of the cap in use) to
    the wasm_sandbox.alerts log, and resource monitoring logs its samples to
    wasm_sandbox.resources."""
    sandbox = _sandbox(
        GROW,
        memory_limit=10 * 65536,
        alert_on_high_usage=True,
        enable_resource_monitoring=True,
        monitoring_interval=timedelta(milliseconds=20),
    )
    with caplog.at_level(logging.DEBUG, logger="wasm_sandbox"):
        sandbox.call("grow", 8)  # 9 of 10 pages: 90%
        assert DISPATCHER.drain()
    names = {r.name for r in caplog.records}
    assert "wasm_sandbox.alerts" in names and "wasm_sandbox.resources" in names


def test_monitoring_options_are_checked() -> None:
    """A threshold out of range, a non-numeric threshold, a monitoring interval too short and a
    callback that is not callable are refused."""
    with pytest.raises(ws.ConfigurationError):
        ws.ResourceMonitor().memory_threshold(150)
    with pytest.raises(ws.ConfigurationError):
        ws.ResourceMonitor().io_threshold(0)
    with pytest.raises(TypeError):
        ws.ResourceMonitor().cpu_threshold("high")  # type: ignore[arg-type]
    with pytest.raises(ws.ConfigurationError, match="monitoring_interval"):
        _sandbox(SPIN, monitoring_interval=timedelta(microseconds=10))
    with pytest.raises(TypeError):
        _sandbox(SPIN, resource_callback="not callable")


def test_no_thread_per_execution() -> None:
    """Fifty monitored executions start no thread of their own (one dispatcher serves them all)."""
    sandbox = _sandbox(GROW, resource_callback=lambda u: None)
    sandbox.call("grow", 0)
    before = threading.active_count()
    for _ in range(50):
        sandbox.call("grow", 0)
    assert threading.active_count() <= before


# --- a guest cannot blind monitoring by not exporting its memory ------------------------------

HIDDEN = b"""(module
  (memory 1)
  (func (export "grow") (param $pages i32) (result i32)
    (memory.grow (local.get $pages)))
  (func (export "hog") (param $pages i32)
    (drop (memory.grow (local.get $pages)))
    (loop $again (br $again))))"""


def test_a_module_hiding_its_memory_is_measured_in_the_report() -> None:
    """peak_memory_bytes counts a memory the module does not export (or exports renamed)."""
    renamed = HIDDEN.replace(b"(memory 1)", b'(memory (export "mem") 1)')
    for wat in (HIDDEN, renamed):
        sandbox = _sandbox(wat, memory_limit=64 * 65536)
        result = sandbox.call_with_detailed_monitoring("grow", 9)
        assert result.value == 1
        assert result.resource_report.peak_memory_bytes == 10 * 65536


def test_a_module_hiding_its_memory_is_measured_in_live_samples() -> None:
    """Live samples measure a memory the module does not export: every running sample shows the 8
    pages in use of the 16 allowed."""
    samples: list[ws.ResourceUsage] = []
    sandbox = _sandbox(
        HIDDEN,
        memory_limit=16 * 65536,
        timeout_duration=timedelta(milliseconds=300),
        resource_callback=samples.append,
        monitoring_interval=timedelta(milliseconds=20),
    )
    with pytest.raises(ws.ExecutionTimeout):
        sandbox.call("hog", 7)  # 8 of 16 pages, then spins
    assert DISPATCHER.drain()
    running = [u for u in samples if not u.final]
    assert len(running) >= 3
    assert all(u.memory == ws.MemoryUsage(8 * 65536, 16 * 65536) for u in running)
    assert samples[-1].final and samples[-1].memory.used == 8 * 65536


def test_a_module_hiding_its_memory_raises_the_memory_alert_at_75_percent() -> None:
    """A module that does not export its memory still raises the memory alert when it uses 81.25% of
    its cap, once, and the report holds that alert."""
    alerts: list[ws.Alert] = []
    monitor = ws.ResourceMonitor().memory_threshold(75).alert_callback(alerts.append)
    sandbox = _sandbox(
        HIDDEN,
        memory_limit=16 * 65536,
        resource_monitor=monitor,
        monitoring_interval=timedelta(milliseconds=20),
        timeout_duration=timedelta(milliseconds=200),
    )
    with pytest.raises(ws.ExecutionTimeout) as info:
        sandbox.call("hog", 12)  # 13 of 16 pages: 81.25%
    assert DISPATCHER.drain()
    assert [(a.metric, a.level) for a in alerts] == [("memory", ws.AlertLevel.WARNING)]
    assert alerts[0].value == pytest.approx(81.25)
    assert info.value.report is not None and info.value.report.alerts == tuple(alerts)


def test_a_module_without_memory_honestly_reports_zero() -> None:
    """A module without memory reports 0 bytes, in the report and in every sample."""
    samples: list[ws.ResourceUsage] = []
    sandbox = _sandbox(
        b'(module (func (export "add") (param i32 i32) (result i32)'
        b" (i32.add (local.get 0) (local.get 1))))",
        resource_callback=samples.append,
    )
    result = sandbox.call_with_detailed_monitoring("add", 2, 3)
    assert result.value == 5 and result.resource_report.peak_memory_bytes == 0
    assert DISPATCHER.drain()
    assert samples and all(u.memory.used == 0 for u in samples)


def test_a_module_importing_its_memory_is_refused_with_a_clear_error() -> None:
    """The sandbox supplies no memory: an imported one could be neither capped nor measured."""
    with pytest.raises(ws.InvalidModule, match=r"imports its linear memory \(env\.memory\)"):
        _sandbox(b'(module (import "env" "memory" (memory 1)) (func (export "f")))')

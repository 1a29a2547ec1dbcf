"""Live resource monitoring and alerts.

While a guest runs, wasmtime calls our epoch callback every 5 ms on the guest's own thread
(``_runtime/_bind.py``); there, at most once per monitoring interval, a ``Sampler`` reads the
store (memory size, fuel) and the execution's counters — never from another thread. Samples
and alerts are handed to one dispatcher thread per process through a bounded queue, so a user
callback that is slow or raises never stalls or breaks the guest: when the queue is full, the
oldest undelivered item is dropped (and counted). A callback that raises is logged once and
dropped for the rest of its execution, and its error is kept for the report (``_callbacks``:
the samples and alerts of that execution still queued are not given to it).
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .._units import format_size, size_value
from ._callbacks import SafeCallback

__all__ = ["Alert", "AlertLevel", "MemoryUsage", "ResourceMonitor", "ResourceUsage", "Sampler"]

log = logging.getLogger("wasm_sandbox")
alert_log = logging.getLogger("wasm_sandbox.alerts")

DEFAULT_INTERVAL = timedelta(milliseconds=100)
_QUEUE_CAP = 1024
_CRITICAL_FACTOR = 1.5  # CRITICAL at 1.5x a threshold (percentages: at 100% at most)


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """Linear memory now, and its cap (None: unlimited)."""

    used: int
    limit: int | None

    @property
    def percent(self) -> float | None:
        """``used`` as a percentage of ``limit`` (None without a limit)."""
        return None if not self.limit else 100.0 * self.used / self.limit


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """One sample of a running execution."""

    elapsed: timedelta
    """Wall-clock time since the execution started."""
    memory: MemoryUsage
    fuel_consumed: int | None
    """Fuel used so far (None when fuel is not metered)."""
    cpu_time: timedelta
    """CPU time of the guest's thread since the execution started."""
    file_operations: int
    bytes_read: int
    bytes_written: int
    network_bytes_sent: int
    network_bytes_received: int
    active_connections: int
    final: bool = False
    """True for the last sample, taken when the execution ended."""


class AlertLevel(enum.Enum):
    """How far over its threshold a metric is."""

    WARNING = "warning"
    """At or over the threshold."""
    CRITICAL = "critical"
    """At or over 1.5 times the threshold (100% for percentages)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """A metric crossed a threshold of a ``ResourceMonitor``."""

    level: AlertLevel
    message: str
    metric: str
    """``"memory"`` (%), ``"cpu"`` (%), ``"io"`` (file operations per second) or
    ``"network"`` (bytes per second)."""
    value: float
    threshold: float


class ResourceMonitor:
    """Thresholds and where their alerts go. Each metric alerts when it first reaches a level
    during an execution (WARNING, then CRITICAL), not at every sample."""

    def __init__(self) -> None:
        self.thresholds: dict[str, float] = {}
        self.callback: Callable[[Alert], object] | None = None

    def _set(self, metric: str, value: float, high: float | None = None) -> ResourceMonitor:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"the {metric} threshold must be a number, got {type(value).__name__}")
        if not value > 0 or (high is not None and value > high):
            from .._errors import ConfigurationError  # noqa: PLC0415 - avoids an import cycle

            bound = f" and <= {high}" if high is not None else ""
            raise ConfigurationError(f"the {metric} threshold must be > 0{bound}, got {value}")
        self.thresholds[metric] = float(value)
        return self

    def memory_threshold(self, percent: float) -> ResourceMonitor:
        """Alert when linear memory reaches ``percent`` of the memory limit."""
        return self._set("memory", percent, 100)

    def cpu_threshold(self, percent: float) -> ResourceMonitor:
        """Alert when the guest's thread is on a CPU ``percent`` of the time (per interval)."""
        return self._set("cpu", percent, 100)

    def io_threshold(self, iops: float) -> ResourceMonitor:
        """Alert at ``iops`` file operations per second."""
        return self._set("io", iops)

    def network_threshold(self, bytes_per_s: float | str) -> ResourceMonitor:
        """Alert at ``bytes_per_s`` network bytes (both ways) per second: a number, or a size
        string (``"1MiB"``: that many bytes per second)."""
        if isinstance(bytes_per_s, str):
            bytes_per_s = size_value("bytes_per_s", bytes_per_s)
        return self._set("network", bytes_per_s)

    def alert_callback(self, callback: Callable[[Alert], object]) -> ResourceMonitor:
        """Receive each ``Alert`` (on the monitoring thread; default: the
        ``wasm_sandbox.alerts`` logger at WARNING). One that raises is logged once, dropped
        for the execution and listed in the report's ``monitoring_callback_errors``."""
        if not callable(callback):
            raise TypeError(f"alert_callback must be callable, got {type(callback).__name__}")
        self.callback = callback
        return self

    def deliver(self, alert: Alert) -> None:
        """Hand ``alert`` to the callback, or the alerts logger."""
        if self.callback is not None:
            self.callback(alert)
        else:
            alert_log.warning(alert.message, extra={"alert": alert})


def high_usage_monitor() -> ResourceMonitor:
    """The monitor of ``alert_on_high_usage(True)``: memory 80%, CPU 90%, to the log."""
    return ResourceMonitor().memory_threshold(80).cpu_threshold(90)


class _Dispatcher:
    """One thread per process that runs the user callbacks, fed by a bounded queue."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[SafeCallback[[Any]], Any]] = collections.deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._busy = False

    def submit(self, callback: SafeCallback[[Any]], item: Any) -> None:
        with self._ready:
            if len(self._items) >= _QUEUE_CAP:
                self._items.popleft()
            self._items.append((callback, item))
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="wasm-sandbox-monitor", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._items:
                    self._ready.wait()
                callback, item = self._items.popleft()
                self._busy = True
            try:
                callback.detached(item)  # never raises: a callback that does is dropped
            finally:
                with self._ready:
                    self._busy = False

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted item has been handed over (tests, shutdown)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._ready:
                if not self._items and not self._busy:
                    return True
            time.sleep(0.005)
        return False


DISPATCHER = _Dispatcher()


@dataclass(slots=True)
class Sampler:
    """Samples one execution from its epoch callback and at its end; raises nothing.

    Its callbacks are this execution's own (``SafeCallback``): one that raises is dropped
    for the rest of it, and ``callback_errors`` lists what they raised, each error after the
    callback's name (``resource_callback: RuntimeError: ...``)."""

    interval: float
    read: Callable[[bool], ResourceUsage]
    callback: Callable[[ResourceUsage], object] | None
    monitor: ResourceMonitor | None
    alerts: list[Alert] = field(default_factory=list)
    samples: int = 0
    callback_errors: list[str] = field(default_factory=list)
    _last: float = field(default_factory=time.monotonic)
    _previous: ResourceUsage | None = None
    _levels: dict[str, AlertLevel] = field(default_factory=dict)
    _on_sample: SafeCallback[[ResourceUsage]] | None = field(default=None, init=False)
    _on_alert: SafeCallback[[Alert]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        errors = self.callback_errors
        if self.callback is not None:
            self._on_sample = SafeCallback(
                self.callback, "resource_callback", "this execution",
                errors=errors, tag="resource_callback: ",
            )  # fmt: skip
        if self.monitor is not None:
            alert = self.monitor.callback
            self._on_alert = SafeCallback(
                self.monitor.deliver if alert is None else alert, "alert_callback",
                "this execution", errors=errors, tag="alert_callback: ",
            )  # fmt: skip

    def tick(self) -> None:
        """On an epoch tick: a sample if the interval has passed."""
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self._take(final=False)

    def finish(self) -> None:
        """The final sample, when the execution has ended."""
        self._take(final=True)

    def _take(self, final: bool) -> None:
        try:
            usage = self.read(final)
        except Exception as exc:  # reading a counter must never stop the guest
            log.warning("resource sampling failed: %r", exc)
            return
        self.samples += 1
        if self._on_sample is not None:
            DISPATCHER.submit(self._on_sample, usage)
        if self._on_alert is not None:
            for alert in self._check(usage):
                self.alerts.append(alert)
                DISPATCHER.submit(self._on_alert, alert)
        self._previous = usage

    def _check(self, usage: ResourceUsage) -> list[Alert]:
        assert self.monitor is not None
        values: dict[str, float | None] = {"memory": usage.memory.percent}
        previous = self._previous
        if previous is not None and not usage.final:
            span = (usage.elapsed - previous.elapsed).total_seconds()
            if span > 0:
                cpu = (usage.cpu_time - previous.cpu_time).total_seconds()
                values["cpu"] = min(100.0, 100.0 * cpu / span)
                values["io"] = (usage.file_operations - previous.file_operations) / span
                moved = (
                    usage.network_bytes_sent + usage.network_bytes_received
                    - previous.network_bytes_sent - previous.network_bytes_received
                )  # fmt: skip
                values["network"] = moved / span
        alerts = []
        for metric, threshold in self.monitor.thresholds.items():
            value = values.get(metric)
            if value is None:
                continue
            critical = threshold * _CRITICAL_FACTOR
            if metric in ("memory", "cpu"):
                critical = min(100.0, critical)
            level = (
                AlertLevel.CRITICAL if value >= critical
                else AlertLevel.WARNING if value >= threshold
                else None
            )  # fmt: skip
            seen = self._levels.get(metric)
            if level is None or seen is AlertLevel.CRITICAL or seen is level:
                continue
            self._levels[metric] = level
            message = f"{metric} at {_show(metric, value)} (threshold {_show(metric, threshold)})"
            alerts.append(Alert(level, message, metric, value, threshold))
        return alerts


def _show(metric: str, value: float) -> str:
    """A metric's value for people: ``85.2%``, ``1,200 file operations/s``, ``2 MiB/s``."""
    if metric in ("memory", "cpu"):
        return f"{value:.1f}".rstrip("0").rstrip(".") + "%"
    if metric == "network":
        return f"{format_size(value)}/s"
    figure = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{figure} file operations/s"

"""Prometheus metrics of every execution in this process (optional: ``prometheus-client``,
``pip install 'wasm-sandbox[metrics]'``).

``enable_prometheus_metrics()`` registers the metrics (on the default registry, or the one
given) and from then on every finished execution, of every sandbox, is counted; serve them
with ``prometheus_client.start_http_server(port)`` or ``generate_latest(registry)``.

An observer that raises is logged once and dropped from the process (``_callbacks``): that
``PrometheusMetrics`` stops counting, the executions go on; ``close()`` still unregisters it.
"""

from __future__ import annotations

import threading
from typing import Any

from ._callbacks import SafeCallback
from ._report import ResourceReport

__all__ = ["OBSERVERS", "PrometheusMetrics", "enable_prometheus_metrics", "notify_report"]

OBSERVERS: list[SafeCallback[[ResourceReport]]] = []  # want every execution's report
_LOCK = threading.Lock()
_MEMORY_BUCKETS = tuple(float(2**n) for n in range(16, 33, 2))  # 64 KiB .. 4 GiB
_TIME_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0)


def notify_report(report: ResourceReport) -> None:
    """Give a finished execution's report to the observers; one that raises is dropped."""
    for observer in list(OBSERVERS):
        if not observer(report):
            _drop(observer)


def _drop(observer: SafeCallback[[ResourceReport]]) -> None:
    with _LOCK:
        if observer in OBSERVERS:
            OBSERVERS.remove(observer)


class PrometheusMetrics:
    """The metrics: executions by outcome, fuel, peak memory, durations, file and network
    bytes, security events. Made by ``enable_prometheus_metrics``; ``close()`` stops counting
    and unregisters them."""

    def __init__(self, registry: Any = None, namespace: str = "wasm_sandbox") -> None:
        try:
            import prometheus_client as prom  # noqa: PLC0415 - an optional dependency
        except ImportError:
            raise ImportError(
                "Prometheus metrics need prometheus-client: pip install 'wasm-sandbox[metrics]'"
            ) from None
        self._registry = registry if registry is not None else prom.REGISTRY
        kw: dict[str, Any] = {"namespace": namespace, "registry": self._registry}
        self.executions = prom.Counter(
            "executions", "Finished executions, by outcome", ["outcome"], **kw
        )
        self.fuel = prom.Counter("fuel_consumed", "Fuel consumed by metered executions", **kw)
        self.memory = prom.Histogram(
            "peak_memory_bytes", "Peak linear memory per execution", buckets=_MEMORY_BUCKETS, **kw
        )
        self.duration = prom.Histogram(
            "execution_seconds", "Wall-clock time per execution", buckets=_TIME_BUCKETS, **kw
        )
        self.file_bytes = prom.Counter(
            "file_bytes", "Bytes read from and written to files", ["direction"], **kw
        )
        self.network_bytes = prom.Counter(
            "network_bytes", "Bytes sent and received over connections", ["direction"], **kw
        )
        self.security = prom.Counter("security_events", "Refused accesses", **kw)
        self._collectors = [
            self.executions, self.fuel, self.memory, self.duration,
            self.file_bytes, self.network_bytes, self.security,
        ]  # fmt: skip
        self._observer = SafeCallback(self.observe, "metrics observer", "this process")
        with _LOCK:
            OBSERVERS.append(self._observer)

    def observe(self, report: ResourceReport) -> None:
        """Count one finished execution."""
        self.executions.labels(report.outcome).inc()
        if report.fuel_consumed:
            self.fuel.inc(report.fuel_consumed)
        self.memory.observe(report.peak_memory_bytes)
        self.duration.observe(report.execution_time.total_seconds())
        self.file_bytes.labels("read").inc(report.bytes_read)
        self.file_bytes.labels("written").inc(report.bytes_written)
        self.network_bytes.labels("sent").inc(report.network_bytes_sent)
        self.network_bytes.labels("received").inc(report.network_bytes_received)
        if report.security_events:
            self.security.inc(len(report.security_events))

    def close(self) -> None:
        """Stop counting; unregister the metrics."""
        _drop(self._observer)
        for collector in self._collectors:
            try:
                self._registry.unregister(collector)
            except KeyError:
                continue


def enable_prometheus_metrics(
    registry: Any = None, namespace: str = "wasm_sandbox"
) -> PrometheusMetrics:
    """Count every execution of this process as Prometheus metrics (see the module notes)."""
    return PrometheusMetrics(registry, namespace)

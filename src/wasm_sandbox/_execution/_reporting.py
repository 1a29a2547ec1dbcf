"""The report builder: a finished execution's ``ResourceReport`` from its counters (one
``CounterSnapshot``), what was measured at its end, the limits it ran under and how it
ended."""

from __future__ import annotations

from datetime import timedelta

from .._config._limits import ResourceLimits
from .._observe._monitor import Sampler
from .._observe._report import ResourceReport
from .._wasi._state import CounterSnapshot
from ._ending import Measurement

__all__ = ["build_report"]


def build_report(
    counted: CounterSnapshot,
    measured: Measurement,
    limits: ResourceLimits,
    *,
    outcome: str,
    profile: str | None,
    sampler: Sampler | None,
    io_callback_errors: tuple[str, ...],
) -> ResourceReport:
    """The report of a finished execution: its counters, what was measured at its end, the
    limits it ran under, how it ended, and its live monitoring's findings."""
    return ResourceReport(
        execution_time=timedelta(seconds=measured.elapsed),
        peak_memory_bytes=measured.peak_memory,
        fuel_consumed=measured.fuel_consumed,
        file_operations=counted.file_operations,
        network_requests=counted.network_requests,
        bytes_transferred=counted.network_bytes_sent + counted.network_bytes_received,
        network_bytes_sent=counted.network_bytes_sent,
        network_bytes_received=counted.network_bytes_received,
        network_refusals=counted.network_refusals,
        network_limits_hit=counted.network_limits_hit,
        network_callback_errors=counted.network_callback_errors,
        alerts=tuple(sampler.alerts) if sampler is not None else (),
        monitoring_samples=sampler.samples if sampler is not None else 0,
        monitoring_callback_errors=tuple(sampler.callback_errors) if sampler is not None else (),
        syscalls=counted.syscalls,
        stdout_bytes=counted.stdout_bytes,
        stderr_bytes=counted.stderr_bytes,
        memory_limit_bytes=limits.memory_bytes,
        fuel_limit=limits.max_fuel,
        timeout=limits.execution_timeout,
        memory_limit_hit=measured.denied is not None,
        outcome=outcome,
        profile=profile,
        bytes_read=counted.bytes_read,
        bytes_written=counted.bytes_written,
        io_limits_hit=counted.io_limits_hit,
        security_events=counted.security_events,
        io_callback_errors=io_callback_errors,
        io_errors=counted.io_errors,
    )

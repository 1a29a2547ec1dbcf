"""The report builder: a finished execution's ``ResourceReport`` from its counters (one
``CounterSnapshot``, whose fields are copied by name), what was measured at its end, the
limits it ran under and how it ended."""

from __future__ import annotations

import dataclasses
import operator
from datetime import timedelta

from .._config._limits import ResourceLimits
from .._observe._monitor import Sampler
from .._observe._report import ResourceReport
from .._wasi._state import CounterSnapshot
from ._ending import Measurement

__all__ = ["build_report"]

# The counters the report carries under the same name: a counter added to CounterSnapshot
# with a ResourceReport field of its name is reported with no change here.
_REPORTED = {f.name for f in dataclasses.fields(ResourceReport)}
_COUNTED = tuple(name for name in CounterSnapshot._fields if name in _REPORTED)
_pick = operator.itemgetter(*(CounterSnapshot._fields.index(name) for name in _COUNTED))


def build_report(
    counted: CounterSnapshot,
    measured: Measurement,
    limits: ResourceLimits,
    *,
    outcome: str,
    profile: str | None,
    sampler: Sampler | None,
    io_callback_errors: tuple[str, ...],
    output_callback_errors: tuple[str, ...] = (),
) -> ResourceReport:
    """The report of a finished execution: its counters, what was measured at its end, the
    limits it ran under, how it ended, and its live monitoring's findings."""
    counts = dict(zip(_COUNTED, _pick(counted), strict=True))
    return ResourceReport(
        **counts,
        execution_time=timedelta(seconds=measured.elapsed),
        peak_memory_bytes=measured.peak_memory,
        fuel_consumed=measured.fuel_consumed,
        bytes_transferred=counted.network_bytes_sent + counted.network_bytes_received,
        alerts=tuple(sampler.alerts) if sampler is not None else (),
        monitoring_samples=sampler.samples if sampler is not None else 0,
        monitoring_callback_errors=tuple(sampler.callback_errors) if sampler is not None else (),
        memory_limit_bytes=limits.memory_bytes,
        fuel_limit=limits.max_fuel,
        timeout=limits.execution_timeout,
        memory_limit_hit=measured.denied is not None,
        outcome=outcome,
        profile=profile,
        io_callback_errors=io_callback_errors,
        output_callback_errors=output_callback_errors,
    )

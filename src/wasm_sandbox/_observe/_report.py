"""What an execution produced and used: ``ResourceReport``, ``ExecutionResult`` and the
results of ``call_with_profiling`` / ``call_with_detailed_monitoring``.

All are frozen snapshots; every figure in them is measured during the execution.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from .._units import format_duration, format_size
from ._monitor import Alert

__all__ = [
    "ExecutionResult",
    "MonitoredResult",
    "MonitoredResultLater",
    "ProfiledResult",
    "ResourceReport",
    "SecurityEvent",
]


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """A guest's attempt that the sandbox refused: ``kind`` (``path_escape``, ``read_only``,
    ``network``), the guest ``path`` (for an escape, the directory the path was resolved
    from; for a network refusal, the ``host:port``) and a human-readable ``detail``."""

    kind: str
    path: str
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceReport:
    """What one execution used, measured while it ran."""

    execution_time: timedelta
    """Wall-clock time from the start of the execution (instantiation included) to its end."""
    peak_memory_bytes: int
    """Largest size the guest's linear memory reached (wasm memory never shrinks)."""
    fuel_consumed: int | None
    """Fuel the execution burned (wasmtime charges one unit per wasm operator executed);
    None when the sandbox does not meter fuel (no ``max_fuel`` and metering not forced)."""
    file_operations: int
    """File-system calls the guest made (``path_*`` and ``fd_*`` on files and directories)."""
    network_requests: int
    """Connections the guest asked the host to open (refused ones included)."""
    bytes_transferred: int
    """Network bytes sent plus received."""
    syscalls: int
    """WASI calls the guest made, of every kind."""
    stdout_bytes: int
    """Bytes the guest wrote to stdout (including any beyond the capture cap)."""
    stderr_bytes: int
    """Bytes the guest wrote to stderr (including any beyond the capture cap)."""
    memory_limit_bytes: int | None
    """The memory cap in force, or None."""
    fuel_limit: int | None
    """The fuel budget in force, or None."""
    timeout: timedelta | None
    """The wall-clock limit in force, or None."""
    memory_limit_hit: bool
    """True if a ``memory.grow`` was refused by a limit, even if the guest recovered."""
    outcome: str
    """``ok``, ``exit``, or the name of the error that ended it (``FuelExhausted`` ...)."""
    profile: str | None = None
    """The resource profile the limits came from (``standard`` ...), None if set by hand."""
    bytes_read: int = 0
    """Bytes the guest read from files."""
    bytes_written: int = 0
    """Bytes the guest wrote to files."""
    io_limits_hit: dict[str, tuple[int, int]] = field(default_factory=dict)
    """File-system limits that refused an operation: field name -> (attempted, limit), first
    refusal of each."""
    security_events: tuple[SecurityEvent, ...] = ()
    """Accesses the sandbox refused: path escapes, writes to read-only mounts, connections
    the network policy or a network limit refused (the first 1,000 of an execution)."""
    io_errors: tuple[str, ...] = ()
    """Buffered writes that failed when flushed at the end of the call (io_batch_size /
    buffer_size): the guest had already been told they succeeded."""
    io_callback_errors: tuple[str, ...] = ()
    """What a raising ``io_callback`` raised (``Type: message``; it is dropped after the first
    error: see *Callbacks that raise* in the README)."""
    network_bytes_sent: int = 0
    """Bytes the guest sent over its connections."""
    network_bytes_received: int = 0
    """Bytes the guest received over its connections."""
    network_refusals: int = 0
    """Connection attempts refused by the policy or a limit."""
    network_limits_hit: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Network limits the guest reached: field -> (attempted, cap)."""
    network_callback_errors: tuple[str, ...] = ()
    """What a raising ``network_callback`` raised (``Type: message``; it is dropped after the
    first error)."""
    output_callback_errors: tuple[str, ...] = ()
    """What a raising ``on_stdout`` or ``on_stderr`` raised, each after the callback's name
    (``on_stdout: RuntimeError: ...``; it is dropped for the rest of the execution)."""
    host_calls: int = 0
    """Host-function calls the guest made (refused ones included)."""
    host_call_time: timedelta = timedelta(0)
    """Wall-clock time the guest spent waiting for its host-function calls."""
    alerts: tuple[Alert, ...] = ()
    """The alerts a ``ResourceMonitor`` raised during the execution."""
    monitoring_samples: int = 0
    """``ResourceUsage`` samples taken (live monitoring only)."""
    monitoring_callback_errors: tuple[str, ...] = ()
    """What a raising ``resource_callback`` or ``alert_callback`` raised, each after the
    callback's name (``resource_callback: RuntimeError: ...``; it is dropped for the rest of
    the execution). These run on the monitoring thread: an error raised after the report was
    made (on the final sample, say) is logged but not listed here."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (durations in seconds)."""
        data = asdict(self)
        for key in ("execution_time", "timeout", "host_call_time"):
            value = data[key]
            data[key] = value.total_seconds() if value is not None else None
        return data

    def to_json(self) -> str:
        """The report as a JSON object."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def format_table(self) -> str:
        """The report as an aligned, human-readable table."""

        def limit(value: object, unit: str = "") -> str:
            return "unlimited" if value is None else f"{value}{unit}"

        timeout = None if self.timeout is None else f"{self.timeout.total_seconds():g}"
        fuel = "not metered" if self.fuel_consumed is None else str(self.fuel_consumed)
        rows = [
            ("outcome", self.outcome),
            ("profile", self.profile or "custom limits"),
            ("execution time", f"{self.execution_time.total_seconds() * 1000:.3f} ms"),
            (
                "peak memory",
                f"{self.peak_memory_bytes} bytes (limit {limit(self.memory_limit_bytes)})",
            ),
            ("fuel consumed", f"{fuel} (limit {limit(self.fuel_limit)})"),
            ("timeout", limit(timeout, " s")),
            ("memory limit hit", "yes" if self.memory_limit_hit else "no"),
            ("wasi calls", str(self.syscalls)),
            ("stdout / stderr", f"{self.stdout_bytes} / {self.stderr_bytes} bytes"),
            ("file operations", str(self.file_operations)),
            ("file bytes read/written", f"{self.bytes_read} / {self.bytes_written}"),
            ("I/O limits hit", ", ".join(self.io_limits_hit) or "none"),
            ("security events", str(len(self.security_events))),
            ("network requests", str(self.network_requests)),
            ("bytes transferred", str(self.bytes_transferred)),
            (
                "host calls",
                f"{self.host_calls} ({self.host_call_time.total_seconds() * 1000:.3f} ms)",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        lines = ["=== Resource Usage Report ==="]
        lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
        return "\n".join(lines)


def summary_line(report: ResourceReport) -> str:
    """The report's main figures on one line, for log messages: ``ok in 1.2 ms, fuel 1234
    (limit 10000000), peak memory 64 KiB (limit 64 MiB), files 0 B read / 0 B written,
    network 0 B sent / 0 B received``."""
    if report.fuel_consumed is None:
        fuel = "fuel not metered"
    else:
        limit = "unlimited" if report.fuel_limit is None else str(report.fuel_limit)
        fuel = f"fuel {report.fuel_consumed} (limit {limit})"
    memory_limit = report.memory_limit_bytes
    cap = "unlimited" if memory_limit is None else format_size(memory_limit)
    return (
        f"{report.outcome} in {format_duration(report.execution_time)}, {fuel}, "
        f"peak memory {format_size(report.peak_memory_bytes)} (limit {cap}), "
        f"files {format_size(report.bytes_read)} read / {format_size(report.bytes_written)} "
        f"written, network {format_size(report.network_bytes_sent)} sent / "
        f"{format_size(report.network_bytes_received)} received"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionResult:
    """The end of ``run()``: the guest's exit code, its captured output and its report."""

    exit_code: int
    """0 when ``_start`` returned; otherwise the code given to ``proc_exit``."""
    stdout: bytes
    """Captured standard output, at most ``max_output_bytes``."""
    stderr: bytes
    """Captured standard error, at most ``max_output_bytes``."""
    stdout_truncated: bool
    """True when the guest wrote more to stdout than was kept."""
    stderr_truncated: bool
    """True when the guest wrote more to stderr than was kept."""
    resource_report: ResourceReport
    """What the run used."""

    @property
    def ok(self) -> bool:
        """True when the guest exited with code 0."""
        return self.exit_code == 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ProfiledResult:
    """The result of ``call_with_profiling``: the value and what computing it cost."""

    value: Any
    """What the function returned."""
    execution_time: timedelta
    """Wall-clock time of the call."""
    fuel_consumed: int
    """Fuel the call burned."""
    instruction_count: int
    """WebAssembly operators executed, as counted by wasmtime's fuel metering: one per
    operator, except structural ones (``nop``, ``drop``, ``block``, ``loop``, ``end``...) which
    cost nothing. It equals ``fuel_consumed``; it is not a count of machine instructions."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MonitoredResult:
    """The result of ``call_with_detailed_monitoring``: the value and its full report."""

    value: Any
    """What the function returned."""
    resource_report: ResourceReport
    """What the call used."""
    stdout: bytes = b""
    """What the guest wrote to stdout during the call (at most ``max_output_bytes``)."""
    stderr: bytes = b""
    """What the guest wrote to stderr during the call (at most ``max_output_bytes``)."""


class MonitoredResultLater(MonitoredResult):
    """A ``MonitoredResult`` whose report is built on first access (a session statement's:
    most callers never read it, and building it is a good part of a statement's host work).
    Printed, compared and pickled as the plain one. Not public API: ``Session.exec``
    returns it as a ``MonitoredResult``."""

    __slots__ = ("_report_of",)

    def __init__(
        self,
        value: Any = None,
        resource_report: ResourceReport | None = None,
        stdout: bytes = b"",
        stderr: bytes = b"",
        *,
        report_of: Callable[[], ResourceReport] | None = None,
    ) -> None:
        # A frozen dataclass's fields are set once, through object.__setattr__; the report's
        # slot stays empty until it is read (then __getattr__ fills it).
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "stdout", stdout)
        object.__setattr__(self, "stderr", stderr)
        object.__setattr__(self, "_report_of", report_of)
        if resource_report is not None or report_of is None:
            object.__setattr__(self, "resource_report", resource_report)

    def __getattr__(self, name: str) -> Any:
        report_of = self._report_of if name == "resource_report" else None
        if report_of is None:
            raise AttributeError(name)
        report = report_of()
        object.__setattr__(self, "resource_report", report)
        object.__setattr__(self, "_report_of", None)  # what it held (the execution) is freed
        return report

    def plain(self) -> MonitoredResult:
        """The same result as a plain ``MonitoredResult`` (its report built)."""
        return MonitoredResult(
            value=self.value,
            resource_report=self.resource_report,
            stdout=self.stdout,
            stderr=self.stderr,
        )

    def __repr__(self) -> str:
        return repr(self.plain())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MonitoredResultLater):
            other = other.plain()
        return self.plain() == other

    __hash__ = MonitoredResult.__hash__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_plain_result, (self.value, self.resource_report, self.stdout, self.stderr))


def _plain_result(
    value: Any, resource_report: ResourceReport, stdout: bytes, stderr: bytes
) -> MonitoredResult:
    """A pickled ``MonitoredResultLater`` comes back as a plain ``MonitoredResult``."""
    return MonitoredResult(
        value=value, resource_report=resource_report, stdout=stdout, stderr=stderr
    )

"""The parts of one execution's WASI state, each with one owner.

``WasiContext`` composes them; who writes what:

- ``IoLimits``: frozen, built once from ``ResourceLimits`` when the execution starts
  (``IoLimits.of``); read by the file syscalls.
- ``Counters``: what the guest did (calls, bytes, limits hit, refusals, external effects);
  written by the syscalls, read only through ``snapshot()``, which feeds both the
  ``ResourceReport`` and every live ``ResourceUsage`` sample.
- ``StopState``: why and how the guest stops (the first reason wins), set from syscalls, the
  epoch callback, a cancelling thread or the SIGINT handler; read by ``_ending``.
- ``Streams``: stdin, stdout, stderr (and their streaming to callbacks).
- ``Door``: the handler a script runtime's ``host.call`` frames go to (set per turn).

Adding a counter touches three files: this one (the field and ``snapshot``), the syscall that
counts it, and ``_report`` (the report field); a limit: ``_limits`` (the field), this one
(``IoLimits.of``) and the syscall that enforces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from .._config._limits import ResourceLimits

if TYPE_CHECKING:
    from .._observe._output import OutputStreams
    from .._observe._report import SecurityEvent
    from ._context import OutputBuffer, Stdin
    from ._guard import NetworkGuard

__all__ = ["CounterSnapshot", "Counters", "Door", "IoLimits", "StopState", "Streams"]

DEFAULT_BUFFER = 64 * 1024  # write buffering: host write per this many bytes, by default


@dataclass(frozen=True, slots=True)
class IoLimits:
    """The file-system limits of one execution (None: unlimited)."""

    open_files: int | None = None  # max_open_files
    directory_entries: int | None = None  # max_directory_entries
    file_size: int | None = None  # max_file_size
    total_write: int | None = None  # max_total_file_size
    file_operations: int | None = None  # max_file_operations
    strict: bool = False  # the first limit hit stops the guest (IoLimitExceeded)
    buffer_size: int | None = None  # write buffering: host write per this many bytes ...
    batch_size: int | None = None  # ... or per this many guest writes

    @staticmethod
    def of(limits: ResourceLimits, strict: bool) -> IoLimits:
        """The I/O limits ``limits`` set (``strict``: strict I/O mode)."""
        buffered = limits.buffer_size is not None or limits.io_batch_size is not None
        return IoLimits(
            open_files=limits.max_open_files,
            directory_entries=limits.max_directory_entries,
            file_size=limits.max_file_size,
            total_write=limits.max_total_file_size,
            file_operations=limits.max_file_operations,
            strict=strict,
            buffer_size=(limits.buffer_size or DEFAULT_BUFFER) if buffered else None,
            batch_size=limits.io_batch_size,
        )


class CounterSnapshot(NamedTuple):
    """The counters of one execution at one moment (network and output figures included;
    a tuple: one is made for every report and every monitoring sample)."""

    syscalls: int
    stdout_bytes: int
    stderr_bytes: int
    file_operations: int
    bytes_read: int
    bytes_written: int
    io_limits_hit: dict[str, tuple[int, int]]
    io_errors: tuple[str, ...]
    security_events: tuple[SecurityEvent, ...]
    network_requests: int
    network_bytes_sent: int
    network_bytes_received: int
    network_refusals: int
    active_connections: int
    network_limits_hit: dict[str, tuple[int, int]]
    network_callback_errors: tuple[str, ...]
    host_calls: int
    host_call_time: timedelta


class Counters:
    """What the guest did, counted by the syscalls. The network's own counters live in the
    ``NetworkGuard`` (it is shared with the socket code, under a lock) and the output's in the
    streams; ``snapshot`` reads all three. (A plain class: one is made per execution.)"""

    __slots__ = (
        "bytes_read",
        "bytes_written",
        "effects",
        "file_calls",
        "host_call_seconds",
        "host_calls",
        "io_errors",
        "io_limits_hit",
        "network_limits_hit",
        "security_events",
        "syscalls",
    )

    def __init__(self) -> None:
        self.syscalls = 0
        self.file_calls = 0  # path_* and fd_* calls on files and directories (attempted)
        self.bytes_read = 0  # from files
        self.bytes_written = 0  # to files
        self.io_limits_hit: dict[str, tuple[int, int]] = {}  # name: (tried, cap)
        self.network_limits_hit: dict[str, tuple[int, int]] = {}
        self.security_events: list[SecurityEvent] = []
        self.io_errors: list[str] = []  # buffered writes that failed late
        self.effects: list[str] = []  # what it did outside the sandbox
        self.host_calls = 0  # host-function calls (``_hostcalls``), refused ones included
        self.host_call_seconds = 0.0  # time the guest waited for them

    def snapshot(self, net: NetworkGuard, streams: Streams) -> CounterSnapshot:
        """The counters now, with the network guard's and the output written."""
        return CounterSnapshot(
            syscalls=self.syscalls,
            stdout_bytes=streams.stdout.total,
            stderr_bytes=streams.stderr.total,
            file_operations=self.file_calls,
            bytes_read=self.bytes_read,
            bytes_written=self.bytes_written,
            io_limits_hit=dict(self.io_limits_hit),
            io_errors=tuple(self.io_errors),
            security_events=tuple(self.security_events),
            network_requests=net.requests,
            network_bytes_sent=net.sent,
            network_bytes_received=net.received,
            network_refusals=net.refusals,
            active_connections=net.active,
            network_limits_hit=dict(self.network_limits_hit),
            network_callback_errors=tuple(net.callback_errors),
            host_calls=self.host_calls,
            host_call_time=timedelta(seconds=self.host_call_seconds),
        )


@dataclass(slots=True, eq=False)
class StopState:
    """Why the host stopped the guest (the first reason wins) and what goes with it."""

    reason: str | None = None  # a ``StopReason``
    exception: BaseException | None = None  # a host error, or the interrupt to re-raise
    exit_code: int | None = None  # proc_exit's
    io_hit: tuple[str, int, int] | None = None  # strict I/O: the limit that stopped it
    network_hit: tuple[str, int, int] | None = None  # strict network: the limit
    security_violation: str | None = None  # the endpoint a strict policy refused
    security_detail: str | None = None  # which rule refused it, and how to permit it
    host_calls_hit: tuple[int, int] | None = None  # max_host_calls: (attempted, cap)
    cancelled: bool = False  # set from another thread to stop the guest
    interrupted: bool = False  # set by the SIGINT handler while the guest runs


@dataclass(slots=True, eq=False)
class Streams:
    """The guest's standard streams (``output``: their delivery to ``on_stdout`` and
    ``on_stderr``, when the sandbox streams)."""

    stdin: Stdin
    stdout: OutputBuffer
    stderr: OutputBuffer
    output: OutputStreams | None = None


@dataclass(frozen=True, slots=True)
class Door:
    """Where a script runtime's ``host.call`` frames go: ``answer`` handles a frame and
    returns the reply; ``deliver`` places a non-empty reply in guest memory."""

    answer: Callable[[bytes], bytes]
    deliver: Callable[[bytes, int, int], bool]

"""Per-execution WASI state: arguments, environment, standard streams, deadline, stop reason.

One ``WasiContext`` lives for one execution; the syscalls in ``_preview1`` read and update
it, and ``_execution._ending`` turns its stop state into the error or result the user sees.
"""

from __future__ import annotations

import io
import os
import select
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from .._config._hostfns import HostFunction
from .._config._limits import ResourceLimits
from .._observe._iomonitor import IoObserver
from .._observe._monitor import Sampler
from .._observe._report import SecurityEvent
from ._errno import Errno, WasiError, errno_from_oserror
from ._fs import HOST_DESCRIPTORS, FdEntry, FdTable, Resolved, count_entries
from ._guard import NetworkGuard
from ._state import Counters, Door, IoLimits, StopState, Streams

__all__ = ["OutputBuffer", "Stdin", "StopReason", "WasiContext"]

MAX_SECURITY_EVENTS = 1000  # kept per execution; later refusals still refuse, unrecorded
MAX_EFFECTS = 8  # distinct external effects kept per execution (one is enough to decide)
WAIT_SLICE = 0.02  # blocking host waits wake at least this often to honour deadline and cancel


def compose_deadline(
    start: float, timeout: float | None, caps: tuple[float, ...], current: float | None = None
) -> float | None:
    """The one rule for an execution's deadline: the earliest of ``start + timeout`` (its
    limits'), every cap a caller added, and ``current`` when the limits are kept as they are;
    None when there is none."""
    candidates = [*caps]
    if timeout is not None:
        candidates.append(start + timeout)
    elif current is not None:
        candidates.append(current)
    return min(candidates) if candidates else None


class StopReason:
    """Why the host stopped a guest from inside a host call or the epoch callback."""

    EXIT = "exit"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    IO_LIMIT = "io_limit"  # strict mode: an I/O limit was reached
    NETWORK_LIMIT = "network_limit"  # strict network mode: a network limit was reached
    SECURITY = "security"  # strict network mode: the policy refused a connection
    INTERRUPTED = "interrupted"  # KeyboardInterrupt (or a callback's SystemExit) while it ran
    EXTERNAL_EFFECT = "external_effect"  # a session replay tried to act outside the sandbox
    HOST_CALL_LIMIT = "host_call_limit"  # more host-function calls than max_host_calls
    HOST_ERROR = "host_error"


class GuestStop(Exception):
    """Raised inside a syscall to unwind the guest; the reason is already recorded."""


class OutputBuffer:
    """Captured guest output, kept up to ``cap`` bytes; the rest is counted, then dropped
    (never copied: a write past the cap costs the host nothing). The kept bytes are handed
    out without a copy (``data``), so a result holds them once, not twice. With a ``sink``
    (``on_stdout``/``on_stderr``), what each write keeps is also handed to it, as one chunk."""

    __slots__ = ("_kept", "cap", "kept", "sink", "total")

    def __init__(self, cap: int, sink: Callable[[bytes], None] | None = None) -> None:
        self.cap = cap
        self._kept = io.BytesIO()
        self.kept = 0  # bytes kept
        self.total = 0  # bytes written
        self.sink = sink

    @property
    def data(self) -> bytes:
        """The bytes kept (shared with the buffer, not copied: BytesIO.getvalue)."""
        return self._kept.getvalue()

    def write(self, chunk: bytes) -> None:
        """Keep what fits under the cap; count everything."""
        self.total += len(chunk)
        room = self.cap - self.kept
        if room > 0:
            part = chunk if len(chunk) <= room else memoryview(chunk)[:room]
            self.kept += self._kept.write(part)
            if self.sink is not None and part:
                self.sink(bytes(part))

    def write_iovecs(self, view: memoryview, pairs: list[tuple[int, int]], most: int) -> int:
        """Count a write of the buffers ``pairs`` names in ``view`` (at most ``most`` bytes
        of them) and keep what fits under the cap; returns the bytes counted. What is past
        the cap is never copied."""
        size, room, write = 0, min(self.cap - self.kept, most), self._kept.write
        start = self.kept
        for ptr, length in pairs:
            size += length
            if room > 0 and length:
                taken = length if length <= room else room
                write(view[ptr : ptr + taken])
                room -= taken
                self.kept += taken
        size = min(size, most)
        self.total += size
        if self.sink is not None and self.kept > start:
            self.sink(self._kept.getbuffer()[start : self.kept].tobytes())
        return size

    @property
    def truncated(self) -> bool:
        """True when the guest wrote more than the cap."""
        return self.total > self.kept


def poll_fds(readers: list[int], writers: list[int], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until one of the host descriptors is ready; True if one
    is. ``poll``, not ``select``: a busy host may hand out descriptors past 1023."""
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    for fd in writers:
        poller.register(fd, select.POLLOUT)
    return bool(poller.poll(max(0.0, timeout) * 1000.0))


class Stdin:
    """The guest's standard input: fixed bytes, or a host stream read with a deadline."""

    __slots__ = ("_data", "_fd", "_pos")

    def __init__(self, source: bytes | BinaryIO | None) -> None:
        self._data = b""
        self._pos = 0
        self._fd: int | None = None
        if isinstance(source, bytes):
            self._data = source
        elif source is not None:
            self._fd = source.fileno()

    @property
    def fileno(self) -> int | None:
        """The host file descriptor of a stream source, None for fixed bytes."""
        return self._fd

    def ready(self) -> bool:
        """True when a read would not block."""
        if self._fd is None:
            return True
        return poll_fds([self._fd], [], 0)

    def source(self) -> bytes:
        """The fixed bytes this stdin was made from (for a rerun; not for a stream)."""
        return self._data

    def available(self) -> int:
        """Bytes known to be readable without blocking (0 for a stream)."""
        return len(self._data) - self._pos if self._fd is None else 0

    def read_into(self, buffers: list[memoryview], ctx: WasiContext) -> int:
        """Fill ``buffers`` (views of guest memory) with what is there, straight from the
        source (no host copy); on a stream, waits in slices until something is, honouring
        the deadline. Returns the bytes placed (0 at the end)."""
        if self._fd is None:
            data, placed = memoryview(self._data), 0
            for buffer in buffers:
                chunk = data[self._pos : self._pos + len(buffer)]
                buffer[: len(chunk)] = chunk
                self._pos += len(chunk)
                placed += len(chunk)
                if len(chunk) < len(buffer):
                    break
            return placed
        fd, done = self._fd, [0]  # done[0]: what the read that succeeded placed

        def ready(seconds: float) -> bool:
            if not poll_fds([fd], [], seconds):
                return False
            try:
                done[0] = os.readv(fd, buffers)
            except BlockingIOError:
                return False
            except OSError as exc:
                raise WasiError(errno_from_oserror(exc)) from None
            return True

        ctx.wait_until(ready, None, GuestStop)
        return done[0]


@dataclass(slots=True, eq=False)
class WasiContext:
    """Everything the WASI layer knows about one execution, as parts with one owner each
    (see ``_state``): limits fixed when it starts, counters, stop state, streams, the door,
    the network guard, and the descriptors bound with the instance."""

    args: list[bytes]
    env: list[bytes]
    streams: Streams
    limits: ResourceLimits  # this execution's limits (the sandbox's, or an auto-scaler's)
    io_limits: IoLimits
    net: NetworkGuard  # network policy, limits and counters
    counters: Counters = field(default_factory=Counters)
    stop_state: StopState = field(default_factory=StopState)
    io: IoObserver | None = None  # file-operation monitoring, when enabled
    sampler: Sampler | None = None  # live monitoring of this execution
    door: Door | None = None  # a script turn's host.call handler
    deadline: float | None = None  # time.monotonic() value; None: no wall-clock limit
    # Deadlines a caller added (a balancer's, a session's budget, a replay bound): the
    # effective ``deadline`` is composed from them and the limits by ``compose_deadline``.
    deadline_caps: tuple[float, ...] = ()
    start: float = field(default_factory=time.monotonic)
    effects_forbidden: bool = False  # a session replay: the first external effect stops it
    host_functions: Mapping[str, HostFunction] = field(default_factory=dict)  # by name
    place: Callable[[bytes], int] | None = None  # bytes into the guest's ``alloc``: address
    host_pending: bytes = b""  # the rest of a host answer JavaScript has not read yet
    fds: FdTable = field(init=False)  # the instance's descriptors, set by ``bind_fds``

    @property
    def memory_limit(self) -> int | None:
        """The guest's memory cap (bounds what the host fetches for it)."""
        return self.limits.memory_bytes

    @property
    def has_fds(self) -> bool:
        """True once an instance's descriptors are bound (not when instantiation failed)."""
        try:
            self.fds  # noqa: B018 - a slot that was never set raises AttributeError
        except AttributeError:
            return False
        return True

    def bind_fds(self, fds: FdTable) -> None:
        """Give this execution the descriptors of the instance it runs on."""
        self.fds = fds

    def run_under(self, limits: ResourceLimits) -> None:
        """Run under ``limits`` instead (an auto-scaler's); the deadline follows its timeout,
        and the caps a caller added stay."""
        self.limits = limits
        self._compose()

    def begin(self) -> None:
        """The execution starts now (it waited for a worker thread, made ready earlier): its
        own time limit and its measured time count from here; the caps a caller added (a
        session's budget, a balancer's deadline) stay where they were."""
        self.start = time.monotonic()
        self._compose()

    def _compose(self) -> None:
        timeout = self.limits.execution_timeout
        seconds = None if timeout is None else timeout.total_seconds()
        self.deadline = compose_deadline(self.start, seconds, self.deadline_caps)

    def stop(self, reason: str, exc: BaseException | None = None) -> GuestStop:
        """Record why the guest stops (the first reason wins) and return the unwind signal."""
        state = self.stop_state
        if state.reason is None:
            state.reason = reason
            state.exception = exc
        return GuestStop(reason)

    def external_effect(self, what: str) -> None:
        """The guest is about to act on the world outside the sandbox (``what``: a network
        connection, a change to a writable host directory). Recorded; when effects are
        forbidden (a session replay), the guest is stopped before it happens."""
        effects = self.counters.effects
        if self.effects_forbidden:
            if self.stop_state.reason is None:
                effects.append(what)
            raise self.stop(StopReason.EXTERNAL_EFFECT)
        if what not in effects and len(effects) < MAX_EFFECTS:
            effects.append(what)

    def cap_deadline(self, at: float) -> None:
        """End this execution at ``at`` (a ``time.monotonic()`` value) at the latest, on top
        of its own time limit; later changes of the limits (an auto-scaler's) keep it."""
        self.deadline_caps = (*self.deadline_caps, at)
        self.deadline = compose_deadline(self.start, None, self.deadline_caps, self.deadline)

    def check_stop(self) -> None:
        """Raise ``GuestStop`` when the deadline has passed or the execution was cancelled."""
        if self.stop_state.cancelled:
            if self.stop_state.interrupted:
                raise self.stop(StopReason.INTERRUPTED, KeyboardInterrupt())
            raise self.stop(StopReason.CANCELLED)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise self.stop(StopReason.TIMEOUT)

    def wait_slice(self, longest: float = WAIT_SLICE) -> float:
        """How long the next blocking wait may last: at most ``longest``, not past the deadline."""
        if self.sampler is not None:  # live monitoring goes on while the guest waits
            self.sampler.tick()
        self.check_stop()
        if self.deadline is None:
            return longest
        return max(0.0, min(longest, self.deadline - time.monotonic()))

    def wait_until(
        self,
        ready: Callable[[float], bool],
        end: float | None,
        on_timeout: Callable[[], BaseException],
    ) -> None:
        """The host's one blocking wait: call ``ready(seconds)`` (which may block that long)
        in slices until it is true, honouring this execution's deadline and cancellation
        between slices, and ``end`` (a ``time.monotonic()`` value), past which the exception
        ``on_timeout()`` returns is raised."""
        while True:
            slice_ = self.wait_slice()
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    raise on_timeout()
                slice_ = min(slice_, left)
            if ready(slice_):
                return
            self.check_stop()

    def cancel(self) -> None:
        """Ask the guest to stop: it ends with ExecutionCancelled within one tick or wait slice."""
        self.stop_state.cancelled = True

    def interrupt(self) -> None:
        """Ctrl-C arrived: stop the guest, then KeyboardInterrupt is raised to the caller."""
        self.stop_state.interrupted = True
        self.stop_state.cancelled = True

    def require_fd(self, fd: int) -> FdEntry:
        """The entry of ``fd`` if it is open, else EBADF."""
        return self.fds.get(fd)

    def limit_hit(self, name: str, attempted: int, cap: int, errno: Errno) -> WasiError:
        """Record that the I/O limit ``name`` refused an operation; returns the errno to give
        the guest, or, in strict mode, stops the guest (IoLimitExceeded)."""
        self.counters.io_limits_hit.setdefault(name, (attempted, cap))
        if self.io_limits.strict:
            self.stop_state.io_hit = (name, attempted, cap)
            raise self.stop(StopReason.IO_LIMIT)
        return WasiError(errno)

    def check_open_room(self) -> None:
        """EMFILE at the guest's max_open_files; ENFILE when the guests of this process
        together reach the headroom kept below RLIMIT_NOFILE (see ``HostDescriptors``)."""
        limit = self.io_limits.open_files
        under_limit, under_host = self.fds.room_for_one_more(limit)
        if not under_limit and limit is not None:
            raise self.limit_hit("max_open_files", self.fds.open_count + 1, limit, Errno.EMFILE)
        if not under_host:
            cap = HOST_DESCRIPTORS.cap()
            raise self.limit_hit("host_open_files", HOST_DESCRIPTORS.in_use + 1, cap, Errno.ENFILE)

    def check_directory_room(self, target: Resolved) -> None:
        """ENOSPC when creating ``target`` would exceed max_directory_entries."""
        cap = self.io_limits.directory_entries
        if cap is None:
            return
        count = count_entries(target.dir_fd)
        if count >= cap:
            raise self.limit_hit("max_directory_entries", count + 1, cap, Errno.ENOSPC)

    def refuse(self, kind: str, path: str, detail: str, errno: Errno) -> WasiError:
        """Record a refused access as a security event; returns the errno to raise."""
        events = self.counters.security_events
        if len(events) < MAX_SECURITY_EVENTS:
            events.append(SecurityEvent(kind=kind, path=path, detail=detail))
        return WasiError(errno)

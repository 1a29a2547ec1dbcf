"""Streamed output: one execution's stdout and stderr, handed to ``on_stdout`` /
``on_stderr`` as the guest writes it, on a thread of the execution's own (never the guest's),
in the order written, through a bounded queue.

The WASI layer puts each write's kept bytes (those under ``max_output_bytes``) here from the
guest's thread. When ``QUEUE_BYTES`` are waiting for a slow callback the guest waits (in the
host call, against its own deadline and cancellation) until the callback catches up, so a
slow callback costs the guest time, never the host memory. ``finish`` returns once every
chunk has been handed over: the execution's result comes after its last chunk.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from ._callbacks import SafeCallback

__all__ = ["PIECE", "QUEUE_BYTES", "OutputStreams"]

QUEUE_BYTES = 1 << 20  # bytes waiting for the callbacks at most; past it the guest waits
PIECE = 64 << 10  # a larger write is handed over in pieces of this size
# After a delivery the thread waits this long for more before it sleeps: waking it for each
# line of a chatty guest cost ~18 us a line (the two threads trading the GIL); the end of the
# execution cuts the wait short.
LINGER = 0.002
STDOUT, STDERR = 0, 1

Wait = Callable[[Callable[[float], bool]], None]


class OutputStreams:
    """The delivery of one execution's output to its callbacks (see the module notes)."""

    __slots__ = (
        "_callbacks", "_finished", "_idle", "_items", "_queued", "_ready", "_stopped", "_thread",
        "errors", "on_interrupt", "wait",
    )  # fmt: skip

    def __init__(
        self,
        on_stdout: Callable[[bytes], object] | None,
        on_stderr: Callable[[bytes], object] | None,
    ) -> None:
        self.errors: list[str] = []  # what a callback raised (the report's)
        self._callbacks = tuple(
            None if fn is None
            else SafeCallback(fn, name, "this execution", errors=self.errors, tag=f"{name}: ")
            for fn, name in ((on_stdout, "on_stdout"), (on_stderr, "on_stderr"))
        )  # fmt: skip
        self._items: collections.deque[tuple[int, bytes]] = collections.deque()
        self._queued = 0  # bytes queued or being delivered
        self._ready = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopped = False  # a callback asked to stop (KeyboardInterrupt, SystemExit)
        self._idle = False  # the delivery thread waits for a chunk (then a put wakes it)
        self._finished = False  # a delivery thread ran and finished
        # Set by the execution: how the guest waits for room (its deadline and cancellation
        # apply), and what stops it when a callback raises KeyboardInterrupt or SystemExit.
        self.wait: Wait | None = None
        self.on_interrupt: Callable[[BaseException], None] | None = None

    @property
    def delivered(self) -> bool:
        """True once anything was queued for the callbacks (an auto-scaler's retry would
        deliver it twice)."""
        return self._thread is not None or self._finished

    def wants(self, stream: int) -> bool:
        """True when ``stream`` (``STDOUT``, ``STDERR``) has a callback."""
        return self._callbacks[stream] is not None

    def put(self, stream: int, data: bytes) -> None:
        """Queue what the guest wrote (on its thread); waits while the queue is full, and
        raises what the guest's wait raises (its deadline passed: ``GuestStop``) once the
        data is queued all the same: it is delivered before the execution returns."""
        if len(data) <= PIECE:
            self._put(stream, data)
            return
        for start in range(0, len(data), PIECE):
            self._put(stream, data[start : start + PIECE])

    def _put(self, stream: int, piece: bytes) -> None:
        ready = self._ready
        with ready:  # the usual case, one lock: room, and a delivery thread running
            queued = self._queued
            if self._thread is not None and (not queued or queued + len(piece) <= QUEUE_BYTES):
                if not self._stopped:
                    self._items.append((stream, piece))
                    self._queued = queued + len(piece)
                    if self._idle:
                        ready.notify_all()
                return
        try:
            with ready:
                full = self._queued > 0 and self._queued + len(piece) > QUEUE_BYTES
            if full and self.wait is not None:
                self.wait(self._room_for(len(piece)))
        finally:
            with ready:
                if not self._stopped:
                    self._items.append((stream, piece))
                    self._queued += len(piece)
                    if self._thread is None:
                        self._thread = threading.Thread(
                            target=self._run, name="wasm-sandbox-output", daemon=True
                        )
                        self._thread.start()
                    elif self._idle:
                        ready.notify_all()

    def _room_for(self, size: int) -> Callable[[float], bool]:
        def ready(seconds: float) -> bool:
            with self._ready:
                return self._ready.wait_for(
                    lambda: self._queued == 0 or self._queued + size <= QUEUE_BYTES, seconds
                )

        return ready

    def _run(self) -> None:
        ready = self._ready
        while True:
            with ready:
                while not self._items and self._thread is not None:
                    self._idle = True
                    ready.wait()
                    self._idle = False
                if not self._items:
                    return  # finished, and everything delivered
                stream, piece = self._take()
            callback = self._callbacks[stream]
            try:
                if callback is not None:
                    callback(piece)  # an Exception: logged, dropped, recorded (SafeCallback)
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: stop the guest
                self._stop(exc)
            with ready:
                self._queued -= len(piece)
                ready.notify_all()  # a guest waiting for room
                if not self._items and self._thread is not None:
                    ready.wait(LINGER)  # let more gather: one wake-up per LINGER, not per line

    def _take(self) -> tuple[int, bytes]:
        """The next chunk, joined with those of the same stream queued after it (up to
        ``PIECE`` bytes): a callback that falls behind gets fewer, larger chunks, in order."""
        items = self._items
        stream, piece = items.popleft()
        if not items or items[0][0] != stream or len(piece) + len(items[0][1]) > PIECE:
            return stream, piece
        parts, size = [piece], len(piece)
        while items and items[0][0] == stream and size + len(items[0][1]) <= PIECE:
            part = items.popleft()[1]
            parts.append(part)
            size += len(part)
        return stream, b"".join(parts)

    def _stop(self, exc: BaseException) -> None:
        with self._ready:
            if self._stopped:
                return
            self._stopped = True
            for _, piece in self._items:
                self._queued -= len(piece)
            self._items.clear()
        if self.on_interrupt is not None:
            self.on_interrupt(exc)

    def finish(self) -> None:
        """Wait until every queued chunk has been handed over (on the caller's thread, after
        the guest ended); the callbacks are not called again."""
        with self._ready:
            thread, self._thread = self._thread, None
            self._finished = self._finished or thread is not None
            self._ready.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.wait = self.on_interrupt = None  # they hold the execution's context

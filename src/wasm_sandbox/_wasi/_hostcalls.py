"""Host functions called by guests: one request, run on a host worker thread under the
execution's deadline and limits (or, ``inline``, on the guest's own thread), answered with a
JSON envelope.

A request is ``{"host": name, "args": [...], "kwargs": {...}}`` (``{"host_list": 1}`` asks
for the names); the answer ``{"ok": value}`` or ``{"error": {"type", "message"}}``, bytes as
``{"$bytes": "<base64>"}`` both ways. Two ways in: compiled guests import
``wasm_sandbox_host.call`` (below); the script runtimes, whose imports are fixed (QuickJS's
are preview1's only), read ``HOST_FD`` (``host_channel``: one ``fd_read`` per call, with no
re-entry into the guest to allocate the answer, cheaper than the Python runtime's door).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .._config._hostfns import HostFunction, check_arguments
from .._observe._iomonitor import HostCall
from ._abi import GuestMemory
from ._context import GuestStop, StopReason, WasiContext
from ._errno import Errno, WasiError
from ._registry import syscall

__all__ = ["HOST_FD", "host_channel", "host_request"]

HOST_FD = 0x7FFF_FF00  # the descriptor the script drivers read to call the host (never open)
# A larger request is refused unread (the guest sees a ValueError): parsing JSON can take
# ~20x its size in host memory (a list of small numbers), which the guest does not pay for.
MAX_REQUEST = 4 << 20
MAX_WORKERS = 256  # threads running host functions at once, in the process
_HEADER = 4  # the channel's u32 length before a request and before an answer


class _CallTimedOut(Exception):
    """The call ran past ``host_call_timeout`` (its thread goes on, unobserved)."""


def _from_json(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and isinstance(obj.get("$bytes"), str):
        return base64.b64decode(obj["$bytes"])
    return obj


def _to_json(value: object) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


_ENCODER = json.JSONEncoder(default=_to_json, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(object_hook=_from_json)
_PLAIN = json.JSONDecoder()


def _encode(frame: dict[str, Any]) -> bytes:
    """ASCII JSON (what the JavaScript driver expects)."""
    return _ENCODER.encode(frame).encode()


def _decode(frame: bytes) -> Any:
    """The request: one JSON value and nothing after it (``ValueError`` otherwise)."""
    text = frame.decode()
    decoder = _DECODER if '"$bytes"' in text else _PLAIN
    value, end = decoder.raw_decode(text)
    if end != len(text):
        raise ValueError("extra data after the request")
    return value


def _error(kind: str, message: str) -> bytes:
    return _encode({"error": {"type": kind, "message": message}})


class _Job:
    """One call of a host function on a worker thread; ``done`` is released when it ends."""

    __slots__ = ("args", "done", "error", "fn", "kwargs", "value")

    def __init__(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def run(self) -> None:
        """Call the function; ``done`` is left to the worker (see ``_Worker._loop``)."""
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit too: the guest's to see
            self.error = exc


class _Worker:
    """A thread that runs one job at a time, handed over with a lock (cheaper than a queue)."""

    __slots__ = ("go", "job")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.go = threading.Lock()
        self.go.acquire()
        threading.Thread(target=self._loop, name="wasm-sandbox-host-call", daemon=True).start()

    def _loop(self) -> None:
        # Idle again before the waiting guest is woken, and ``go`` waited on right after:
        # the guest's thread then finds the GIL free (a wake-up into a busy GIL doubles
        # the cost of a call).
        while True:
            self.go.acquire()
            job, self.job = self.job, None
            if job is None:
                continue
            job.run()
            _IDLE.append(self)
            job.done.release()


_IDLE: list[_Worker] = []
_POOL_LOCK = threading.Lock()
_started = [0]  # workers made in this process


def _forget_workers() -> None:
    """In a forked child the workers' threads are gone."""
    _IDLE.clear()
    _started[0] = 0


os.register_at_fork(after_in_child=_forget_workers)


def _hand_over(job: _Job) -> bool:
    """Start ``job`` on an idle worker (or a new one); False when ``MAX_WORKERS`` are busy."""
    try:
        worker = _IDLE.pop()  # atomic under the GIL, as the workers' append
    except IndexError:
        with _POOL_LOCK:
            if _started[0] - len(_IDLE) >= MAX_WORKERS:
                return False
            _started[0] += 1
        worker = _Worker()
    worker.job = job
    worker.go.release()
    return True


def _run(ctx: WasiContext, fn: HostFunction, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``fn``'s value; raises what it raised, ``_CallTimedOut``, or ``GuestStop`` when the
    execution's deadline passes (or it is cancelled) while it runs."""
    job = _Job(fn.fn, args, kwargs)
    if not _hand_over(job):
        raise RuntimeError(f"{MAX_WORKERS} host function calls are still running")
    timeout = ctx.limits.host_call_timeout
    end = None if timeout is None else time.monotonic() + timeout.total_seconds()
    if not job.done.acquire(timeout=0.0005):  # most calls: back before the first slice
        ctx.wait_until(lambda seconds: job.done.acquire(timeout=seconds), end, _CallTimedOut)
    if job.error is not None:
        raise job.error
    return job.value


def host_request(ctx: WasiContext, frame: bytes) -> bytes:
    """Answer one request (see the module docstring); never raises but ``GuestStop``."""
    table = ctx.host_functions
    if not table:  # nothing to call: the request is not even parsed
        return _error("NameError", "this sandbox has no host functions")
    try:
        request = _decode(frame) if len(frame) <= MAX_REQUEST else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        request = None
    if not isinstance(request, dict):
        return _error("ValueError", "malformed host function request (or over 4 MiB)")
    if "host_list" in request:
        return _encode({"ok": sorted(table)})
    name, args, kwargs = request.get("host"), request.get("args", []), request.get("kwargs", {})
    function = table.get(name) if isinstance(name, str) else None
    if function is None:
        known = ", ".join(sorted(table)) or "none"
        return _error("NameError", f"no host function {name!r} (available: {known})")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return _error("TypeError", f"{name}(): malformed arguments")
    counters = ctx.counters
    counters.host_calls += 1
    cap = ctx.limits.max_host_calls
    if cap is not None and counters.host_calls > cap:
        ctx.stop_state.host_calls_hit = (counters.host_calls, cap)
        raise ctx.stop(StopReason.HOST_CALL_LIMIT)
    ctx.external_effect(f"a call of host function {name}")
    return _call(ctx, function, args, kwargs)


def _call(ctx: WasiContext, fn: HostFunction, args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """Validate, run and answer one call; its time and event are recorded however it ends."""
    start = time.monotonic()
    failed: str | None = "stopped"
    try:
        reply = _answer(ctx, fn, args, kwargs)
        failed = None if reply.startswith(b'{"ok"') else _failure_text(reply)
        return reply
    finally:
        seconds = time.monotonic() - start
        ctx.counters.host_call_seconds += seconds
        if ctx.io is not None:
            ctx.io.emit(HostCall(path=fn.name, seconds=seconds, error=failed))


def _answer(ctx: WasiContext, fn: HostFunction, args: list[Any], kwargs: dict[str, Any]) -> bytes:
    try:
        if fn.schema is not None:
            check_arguments(fn.schema, fn.bind(args, kwargs))
        if fn.inline:
            value = fn.fn(*args, **kwargs)
            ctx.check_stop()  # it may have outlived the deadline (or been cancelled)
        else:
            value = _run(ctx, fn, args, kwargs)
    except GuestStop:
        raise
    except _CallTimedOut:
        seconds = ctx.limits.host_call_timeout.total_seconds()  # type: ignore[union-attr]
        return _error("TimeoutError", f"host function {fn.name} timed out after {seconds:g} s")
    except Exception as exc:
        return _error(type(exc).__name__, str(exc))
    except BaseException as exc:  # KeyboardInterrupt, SystemExit raised by fn on its thread
        return _error(type(exc).__name__, str(exc) or type(exc).__name__)
    try:
        return _encode({"ok": value})
    except (TypeError, ValueError, RecursionError) as exc:
        return _error(
            "TypeError", f"host function {fn.name} returned a value that is not JSON: {exc}"
        )


def _failure_text(reply: bytes) -> str:
    error = json.loads(reply).get("error", {})
    return f"{error.get('type')}: {error.get('message')}"


@syscall("ii", "I", module="wasm_sandbox_host", name="call")
def wasm_sandbox_host_call(ctx: WasiContext, mem: GuestMemory, ptr: int, length: int) -> int:
    """A compiled guest's request (JSON at ``ptr``); the answer is placed with the guest's
    ``alloc``: ``(answer_ptr << 32) | answer_len``, 0 when it could not be (no ``alloc``
    export, or it failed)."""
    if length > MAX_REQUEST:
        return 0
    try:
        frame = mem.read(ptr, length)
    except WasiError:
        return 0
    reply = host_request(ctx, frame)
    place = ctx.place
    at = place(reply) if place is not None else 0
    return (at << 32) | len(reply) if at else 0


def host_channel(ctx: WasiContext, mem: GuestMemory, iovs: int, iovs_len: int, nread: int) -> int:
    """``fd_read(HOST_FD)``: the first buffer holds ``u32 length`` and a request; it receives
    ``u32 length`` and as much of the answer as fits. A request of length 0 takes the rest
    of an answer that did not fit (what is left of it, with its length, as before)."""
    pairs = mem.iovecs(iovs, iovs_len)
    if not pairs or pairs[0][1] < _HEADER:
        return Errno.EINVAL
    ptr, room = pairs[0]
    size = mem.u32(ptr)
    if size > room - _HEADER:
        return Errno.EINVAL
    if size:
        ctx.host_pending = host_request(ctx, mem.read(ptr + _HEADER, size))
    answer = ctx.host_pending
    part = answer[: room - _HEADER]
    ctx.host_pending = answer[len(part) :]
    mem.set_u32(ptr, len(answer))
    mem.write(ptr + _HEADER, part)
    mem.set_u32(nread, _HEADER + len(part))
    return 0

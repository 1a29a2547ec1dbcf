"""Keeping wasmtime's trap handlers in place.

wasmtime turns a guest's trap (an out-of-bounds access, ``unreachable``, a division by zero)
into an error through its handlers for SIGSEGV, SIGBUS, SIGILL and SIGFPE. A library that
later installs its own handlers for those signals without chaining (Ray's driver does, in
``ray.init()``) makes the next trap kill the whole process. We remember wasmtime's handlers
once they are installed and put them back when they have been replaced.

Ctrl-C: while a guest runs on the main thread under Python's default SIGINT handling, the
signal is routed to the running execution (``route_sigint``), which stops within a tick;
a ``KeyboardInterrupt`` raised inside a wasmtime callback could not unwind the guest.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import signal
import sys
import threading
from typing import Any, Protocol

__all__ = ["ensure_trap_handlers", "remember_trap_handlers", "restore_sigint", "route_sigint"]

log = logging.getLogger("wasm_sandbox")

_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
_SIGACTION_SIZE = 256  # larger than struct sigaction on every Linux ABI
_libc = ctypes.CDLL(None, use_errno=True)
_sigaction = _libc.sigaction
_sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_sigaction.restype = ctypes.c_int
_HANDLER_BYTES = ctypes.sizeof(ctypes.c_void_p)  # struct sigaction starts with the handler
_saved: dict[int, bytes] | None = None
_refreshed = False
_warned = False


def _get(signum: int) -> bytes:
    buffer = ctypes.create_string_buffer(_SIGACTION_SIZE)
    _sigaction(signum, None, buffer)
    return buffer.raw


def remember_trap_handlers() -> None:
    """Record the handlers now in place: called when the first engine is made (wasmtime
    installs its handlers then), and again at the first instance, where wasmtime may adjust
    their flags; a second record replaces the first only for a signal whose handler is still
    the one recorded (a library that replaced it in between, e.g. ``ray.init``, is not taken
    for wasmtime)."""
    global _saved, _refreshed  # noqa: PLW0603 - one record per process
    now = {int(s): _get(int(s)) for s in _SIGNALS}
    if _saved is None:
        _saved = now
        return
    if _refreshed:
        return
    _refreshed = True
    for signum, raw in now.items():
        if raw[:_HANDLER_BYTES] == _saved[signum][:_HANDLER_BYTES]:
            _saved[signum] = raw


def ensure_trap_handlers() -> bool:
    """Put wasmtime's handlers back where something replaced them; True if it had to."""
    global _warned  # noqa: PLW0603
    if _saved is None:
        return False
    restored = False
    for signum, raw in _saved.items():
        if _get(signum) != raw:
            buffer = ctypes.create_string_buffer(raw, _SIGACTION_SIZE)
            _sigaction(signum, buffer, None)
            restored = True
    if restored and not _warned:
        _warned = True
        log.warning(
            "another library replaced the signal handlers wasmtime needs for guest traps "
            "(SIGSEGV/SIGBUS/SIGILL/SIGFPE); wasm-sandbox put them back"
        )
    return restored


def check_after_foreign_init() -> None:
    """Cheap guard for the hot path: only when a library known to replace handlers is
    loaded (Ray) are the handlers compared."""
    if "ray" in sys.modules:
        ensure_trap_handlers()


class Interruptible(Protocol):
    """What SIGINT is routed to: the running execution."""

    def interrupt(self) -> None:
        """Ctrl-C arrived: stop the guest."""


def route_sigint(target: Interruptible) -> Any:
    """On the main thread with Python's default Ctrl-C handling, route SIGINT to ``target``
    until ``restore_sigint``; returns the handler to restore, or None (nothing routed)."""
    if threading.current_thread() is not _MAIN_THREAD:
        return None
    previous = _signal.getsignal(_SIGINT)
    if previous is not _DEFAULT_INT_HANDLER:
        return None
    global _sigint_target  # noqa: PLW0603 - one running execution per main thread
    _sigint_target = target
    _signal.signal(_SIGINT, _route)
    return previous


def restore_sigint(previous: Any) -> None:
    """Put back the handler ``route_sigint`` returned and forget its target (a finished
    execution, and its descriptors, are not kept alive)."""
    global _sigint_target  # noqa: PLW0603 - one running execution per main thread
    _signal.signal(_SIGINT, previous)
    _sigint_target = None


def _route(signum: int, frame: object) -> None:
    target = _sigint_target
    if target is not None:
        target.interrupt()


# The C module behind ``signal``: its functions skip signal.signal's enum conversions.
_signal: Any = importlib.import_module("_signal")
_MAIN_THREAD = threading.main_thread()
_SIGINT = int(signal.SIGINT)
_DEFAULT_INT_HANDLER = signal.default_int_handler
_sigint_target: Interruptible | None = None

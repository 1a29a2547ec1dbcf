"""Keeping wasmtime's trap handlers in place.

wasmtime turns a guest's trap (an out-of-bounds access, ``unreachable``, a division by zero)
into an error through its handlers for SIGSEGV, SIGBUS, SIGILL and SIGFPE. A library that
later installs its own handlers for those signals without chaining (Ray's driver does, in
``ray.init()``) makes the next trap kill the whole process. We remember wasmtime's handlers
once they are installed and put them back when they have been replaced.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import sys

__all__ = ["ensure_trap_handlers", "remember_trap_handlers"]

log = logging.getLogger("wasm_sandbox")

_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
_SIGACTION_SIZE = 256  # larger than struct sigaction on every Linux ABI
_libc = ctypes.CDLL(None, use_errno=True)
_sigaction = _libc.sigaction
_sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_sigaction.restype = ctypes.c_int
_saved: dict[int, bytes] | None = None
_warned = False


def _get(signum: int) -> bytes:
    buffer = ctypes.create_string_buffer(_SIGACTION_SIZE)
    _sigaction(signum, None, buffer)
    return buffer.raw


def remember_trap_handlers() -> None:
    """Record the handlers now in place (call once wasmtime has installed its own)."""
    global _saved  # noqa: PLW0603 - one record per process
    if _saved is None:
        _saved = {int(s): _get(int(s)) for s in _SIGNALS}


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

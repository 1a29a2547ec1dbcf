"""Bounds-checked access to a guest's linear memory.

Every read and write the WASI layer makes into guest memory goes through ``GuestMemory``;
a pointer or length outside the memory raises ``WasiError(EFAULT)``, never a host crash
(a fresh one each time: a shared instance would keep the frames of its last raise, with
their execution's context and a view of freed memory, alive through its traceback).
The memory is seen through one ``memoryview`` per host call (linear memory can move when
it grows, so a view never outlives the call that made it).

The buffers of an iovec array are handed out as views of guest memory, never gathered into
one host copy: iovecs may all point at the same bytes, so what they add up to is not bounded
by the guest's memory (1,024 iovecs over one 64 MiB memory name 64 GiB). Whoever consumes
them takes only what it will use (``views(pairs, limit)``) and counts the rest.
"""

from __future__ import annotations

import ctypes
import struct

from ._errno import Errno, WasiError

__all__ = ["MAX_RW", "STREAM_CHUNK", "GuestMemory", "total"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_MAX_IOVECS = 1024
MAX_RW = 0x7FFFF000  # Linux's largest single read or write; a larger request is cut short
STREAM_CHUNK = 1 << 20  # the most one read of a host stream (a stdin pipe or file) moves

_memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
_memory_view.restype = ctypes.py_object
_memory_view.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_PYBUF_WRITE = 0x200


class GuestMemory:
    """A view of linear memory valid for the duration of one host call."""

    __slots__ = ("size", "view")

    def __init__(self, base: int, size: int) -> None:
        self.size = size
        self.view: memoryview = _memory_view(base, size, _PYBUF_WRITE) if size else memoryview(b"")

    def check(self, ptr: int, length: int) -> int:
        """``ptr`` if ``length`` bytes there are inside memory, else EFAULT."""
        if ptr < 0 or length < 0 or ptr + length > self.size:
            raise WasiError(Errno.EFAULT)
        return ptr

    def read(self, ptr: int, length: int) -> bytes:
        """A copy of the ``length`` bytes at ``ptr``."""
        self.check(ptr, length)
        return bytes(self.view[ptr : ptr + length])

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` to ``ptr``."""
        length = len(data)
        self.check(ptr, length)
        self.view[ptr : ptr + length] = data

    def u32(self, ptr: int) -> int:
        """The little-endian u32 at ``ptr``."""
        self.check(ptr, 4)
        value: int = _U32.unpack_from(self.view, ptr)[0]
        return value

    def set_u32(self, ptr: int, value: int) -> None:
        """Store ``value`` as a little-endian u32 at ``ptr``."""
        self.check(ptr, 4)
        _U32.pack_into(self.view, ptr, value & 0xFFFFFFFF)

    def set_u64(self, ptr: int, value: int) -> None:
        """Store ``value`` as a little-endian u64 at ``ptr``."""
        self.check(ptr, 8)
        _U64.pack_into(self.view, ptr, value & 0xFFFFFFFFFFFFFFFF)

    def iovecs(self, ptr: int, count: int) -> list[tuple[int, int]]:
        """The ``count`` (buffer pointer, length) pairs of an iovec array at ``ptr``, each
        checked to lie inside memory."""
        view, size = self.view, self.size
        if count == 1:  # write()/read() of one buffer: most calls
            if ptr < 0 or ptr + 8 > size:
                raise WasiError(Errno.EFAULT)
            buf, length = _IOVEC.unpack_from(view, ptr)
            if buf + length > size:
                raise WasiError(Errno.EFAULT)
            return [(buf, length)]
        if count > _MAX_IOVECS:
            raise WasiError(Errno.EINVAL)
        self.check(ptr, count * 8)
        pairs = [_IOVEC.unpack_from(view, ptr + 8 * i) for i in range(count)]
        for buf, length in pairs:
            if buf + length > size:
                raise WasiError(Errno.EFAULT)
        return pairs

    def views(self, pairs: list[tuple[int, int]], limit: int) -> list[memoryview]:
        """Views of the buffers ``pairs`` names (from ``iovecs``), in order, cut so that they
        hold at most ``limit`` bytes together; empty ones left out. No byte is copied."""
        view = self.view
        if len(pairs) == 1:
            ptr, length = pairs[0]
            taken = length if length <= limit else limit
            return [view[ptr : ptr + taken]] if taken > 0 else []
        out = []
        for ptr, length in pairs:
            if limit <= 0:
                break
            if length:
                taken = min(length, limit)
                out.append(view[ptr : ptr + taken])
                limit -= taken
        return out

    def buffers(self, ptr: int, count: int, limit: int = MAX_RW) -> list[memoryview]:
        """Views of the buffers of an iovec array, at most ``limit`` bytes in all (to read
        into with ``os.readv``, or to write from with ``os.writev``)."""
        return self.views(self.iovecs(ptr, count), limit)


def total(pairs: list[tuple[int, int]]) -> int:
    """What the buffers of an iovec array add up to, as one read or write may move it
    (``MAX_RW`` at most, as on Linux: the rest of a larger request is a short count)."""
    size = pairs[0][1] if len(pairs) == 1 else sum(length for _, length in pairs)
    return size if size < MAX_RW else MAX_RW

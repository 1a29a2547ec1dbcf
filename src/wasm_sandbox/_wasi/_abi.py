"""Bounds-checked access to a guest's linear memory.

Every read and write the WASI layer makes into guest memory goes through ``GuestMemory``;
a pointer or length outside the memory raises ``WasiError(EFAULT)``, never a host crash
(a fresh one each time: a shared instance would keep the frames of its last raise, with
their execution's context and a view of freed memory, alive through its traceback).
The memory is seen through one ``memoryview`` per host call (linear memory can move when
it grows, so a view never outlives the call that made it).
"""

from __future__ import annotations

import ctypes
import struct

from ._errno import Errno, WasiError

__all__ = ["GuestMemory"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_MAX_IOVECS = 1024

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
        if count > _MAX_IOVECS:
            raise WasiError(Errno.EINVAL)
        self.check(ptr, count * 8)
        view, size = self.view, self.size
        pairs = [_IOVEC.unpack_from(view, ptr + 8 * i) for i in range(count)]
        for buf, length in pairs:
            if buf + length > size:
                raise WasiError(Errno.EFAULT)
        return pairs

    def gather(self, ptr: int, count: int) -> bytes:
        """The bytes of every buffer of an iovec array at ``ptr``, concatenated (one copy)."""
        view = self.view
        return b"".join([view[p : p + n] for p, n in self.iovecs(ptr, count)])

    def buffers(self, ptr: int, count: int) -> list[memoryview]:
        """Writable views of the buffers of an iovec array (for ``os.readv``)."""
        view = self.view
        return [view[p : p + n] for p, n in self.iovecs(ptr, count) if n]

    def scatter(self, ptr: int, count: int, data: bytes) -> int:
        """Spread ``data`` over the buffers of an iovec array; returns the bytes placed."""
        placed, view, total = 0, self.view, len(data)
        for buf, length in self.iovecs(ptr, count):
            chunk = min(length, total - placed)
            view[buf : buf + chunk] = data[placed : placed + chunk]
            placed += chunk
            if placed >= total:
                break
        return placed

    def capacity(self, ptr: int, count: int) -> int:
        """The total length of the buffers of an iovec array (checked against memory)."""
        return sum(length for _, length in self.iovecs(ptr, count))

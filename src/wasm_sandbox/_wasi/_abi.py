"""Bounds-checked access to a guest's linear memory.

Every read and write the WASI layer makes into guest memory goes through ``GuestMemory``;
a pointer or length outside the memory raises ``WasiError(EFAULT)``, never a host crash.
"""

from __future__ import annotations

import ctypes
import struct

from ._errno import Errno, WasiError

__all__ = ["GuestMemory"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_FAULT = WasiError(Errno.EFAULT)


class GuestMemory:
    """A view of linear memory valid for the duration of one host call.

    The base address can move when memory grows, so a new view is made per call.
    """

    __slots__ = ("base", "size")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size

    def check(self, ptr: int, length: int) -> int:
        """The host address of ``length`` bytes at ``ptr``; EFAULT if any is outside memory."""
        if ptr < 0 or length < 0 or ptr + length > self.size:
            raise _FAULT
        return self.base + ptr

    def read(self, ptr: int, length: int) -> bytes:
        """``length`` bytes at ``ptr``."""
        address = self.check(ptr, length)
        return ctypes.string_at(address, length) if length else b""

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` to ``ptr``."""
        length = len(data)
        address = self.check(ptr, length)
        if length:
            ctypes.memmove(address, data if isinstance(data, bytes) else bytes(data), length)

    def u32(self, ptr: int) -> int:
        """The little-endian u32 at ``ptr``."""
        value: int = _U32.unpack(self.read(ptr, 4))[0]
        return value

    def set_u32(self, ptr: int, value: int) -> None:
        """Store ``value`` as a little-endian u32 at ``ptr``."""
        self.write(ptr, _U32.pack(value & 0xFFFFFFFF))

    def set_u64(self, ptr: int, value: int) -> None:
        """Store ``value`` as a little-endian u64 at ``ptr``."""
        self.write(ptr, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))

    def iovecs(self, ptr: int, count: int) -> list[tuple[int, int]]:
        """The ``count`` (buffer pointer, length) pairs of an iovec array at ``ptr``."""
        if count > 1024:
            raise WasiError(Errno.EINVAL)
        raw = self.read(ptr, count * 8)
        return [_IOVEC.unpack_from(raw, i * 8) for i in range(count)]

    def gather(self, ptr: int, count: int) -> bytes:
        """The bytes of every buffer of an iovec array at ``ptr``, concatenated."""
        vectors = self.iovecs(ptr, count)
        if len(vectors) == 1:
            return self.read(*vectors[0])
        return b"".join(self.read(p, n) for p, n in vectors)

    def scatter(self, ptr: int, count: int, data: bytes) -> int:
        """Spread ``data`` over the buffers of an iovec array; returns the bytes placed."""
        placed = 0
        for buf, length in self.iovecs(ptr, count):
            chunk = data[placed : placed + length]
            self.write(buf, chunk)
            placed += len(chunk)
            if placed >= len(data):
                break
        return placed

    def capacity(self, ptr: int, count: int) -> int:
        """The total length of the buffers of an iovec array (checked against memory)."""
        total = 0
        for buf, length in self.iovecs(ptr, count):
            self.check(buf, length)
            total += length
        return total

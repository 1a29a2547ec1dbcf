"""A large snapshot's memory as a sealed in-memory file that new instances map copy-on-write.

Restoring a snapshot by copying its changed pages costs time in proportion to its size: about
20 ms for the 35 MB an interpreter holds after ``import numpy, pandas``. Instead, the whole
memory the snapshot describes (the module's image with the snapshot's pages written over it)
is written once into a ``memfd``, sealed against any change, and each new instance maps it
over its linear memory with ``MAP_PRIVATE | MAP_FIXED``: one system call, after which the
kernel shares the file's pages until the guest writes one (then that page is copied for this
instance alone). No instance sees another's writes; the file never changes.

An instance made so can also be *reset* to the image after an execution, and used again
instead of a new one (``MemoryImage.reset``): the pages the guest wrote are exactly those
no longer backed by the file (``/proc/self/pagemap`` says which), and copying the image's
bytes back over them makes the memory equal the image again, while the pages stay mapped,
so the next execution does not fault on them again (a fault costs microseconds: a call that
touches thousands of pages pays milliseconds for them).

The mapping replaces the accessible part of the memory wasmtime reserved for the instance
(its default, on-demand allocator: the reservation is unmapped whole when the store is
dropped, growing only makes pages past it accessible, and the memory never moves). Small
snapshots are still copied (``_snapshot.write_runs``): below ``MAP_THRESHOLD``, copying is
cheaper than the page faults that mapping trades it for. Linux only; elsewhere, or when a
memfd cannot be made, snapshots are copied.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import threading
import weakref
from collections.abc import Callable

from .._errors import SnapshotError
from ._snapshot import PAGE, WRITTEN, InstanceState, pagemap_fd

__all__ = ["MAP_THRESHOLD", "MemoryImage", "image_of"]

MAP_THRESHOLD = 8 << 20  # changed bytes from which a snapshot is mapped rather than copied
_CHUNK = PAGE
_PROT_READ_WRITE = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_PRIVATE_FIXED = mmap.MAP_PRIVATE | 0x10  # MAP_FIXED (Linux)
_SEALS = (
    getattr(fcntl, "F_SEAL_SEAL", 0)
    | getattr(fcntl, "F_SEAL_SHRINK", 0)
    | getattr(fcntl, "F_SEAL_GROW", 0)
    | getattr(fcntl, "F_SEAL_WRITE", 0)
)
_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
)  # fmt: skip
_MAP_FAILED = ctypes.c_void_p(-1).value
_munmap_c = _libc.munmap
_munmap_c.restype = ctypes.c_int
_munmap_c.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_memcmp = _libc.memcmp
_memcmp.restype = ctypes.c_int
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_ZEROS = ctypes.create_string_buffer(_CHUNK)
_SUPPORTED = hasattr(os, "memfd_create") and _SEALS != 0
_lock = threading.Lock()
_HOST_PAGE = mmap.PAGESIZE
_MAP_SHARED = mmap.MAP_SHARED
_RESET_SHARE = 4  # reset only while at most 1/4 of the pages are written: beyond, a new one


class MemoryImage:
    """A sealed memfd holding a whole linear memory of ``size`` bytes."""

    __slots__ = ("__weakref__", "_view", "fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._view = 0  # where this process maps the image read-only (0: not yet)
        weakref.finalize(self, os.close, fd)

    def reset(self, address: int, size: int) -> bool:
        """Make the memory at ``address``, over which this image was mapped (``map_over``),
        equal the image again: copy the image's bytes over every page written since. False
        (nothing changed; the instance must be dropped) when the memory grew, or so much of
        it was written that a new instance is cheaper, or this system cannot tell."""
        view, pagemap = self._read_view(), pagemap_fd()
        pages = size // _HOST_PAGE
        if size != self.size or not view or pagemap is None or address % _HOST_PAGE:
            return False
        try:
            entries = os.pread(pagemap, pages * 8, address // _HOST_PAGE * 8)
        except OSError:
            return False
        if len(entries) != pages * 8:
            return False
        written = entries[7::8].translate(WRITTEN)
        if written.count(1) * _RESET_SHARE > pages:
            return False
        at = written.find(1)
        while at >= 0:
            end = written.find(0, at)
            end = pages if end < 0 else end
            offset = at * _HOST_PAGE
            ctypes.memmove(address + offset, view + offset, (end - at) * _HOST_PAGE)
            at = written.find(1, end)
        return True

    def _read_view(self) -> int:
        """The address of a read-only shared mapping of the image in this process (0 when
        it cannot be made)."""
        with _lock:
            if not self._view:
                mapped = _mmap(None, self.size, mmap.PROT_READ, _MAP_SHARED, self.fd, 0)
                if mapped is not None and mapped != _MAP_FAILED:
                    self._view = mapped
                    weakref.finalize(self, _munmap, mapped, self.size)
            return self._view

    def map_over(self, address: int, size: int) -> None:
        """Map the image copy-on-write over the memory at ``address`` (``size`` bytes, at
        least the image's); ``SnapshotError`` when the kernel refuses (the instance must then
        be dropped: its memory may be partly unmapped)."""
        if size < self.size or address % mmap.PAGESIZE:
            raise SnapshotError("the instance's memory cannot hold the snapshot's image")
        flags = _MAP_PRIVATE_FIXED
        mapped = _mmap(address, self.size, _PROT_READ_WRITE, flags, self.fd, 0)
        if mapped != address:
            errno = ctypes.get_errno()
            raise SnapshotError(f"mapping the snapshot's memory failed: {os.strerror(errno)}")


def _munmap(address: int, size: int) -> None:
    _munmap_c(address, size)


def image_of(state: InstanceState, template: Callable[[], tuple[int, int]]) -> MemoryImage | None:
    """The image of ``state`` (made once, kept with it), whose unchanged pages are those of
    the module's image, at the (address, size) ``template()`` gives; None when the state is
    small enough to copy, or no image can be made here."""
    if not _SUPPORTED or state.changed_bytes < MAP_THRESHOLD:
        return None
    with _lock:
        if not state.image:  # made once; False when it cannot be (then the state is copied)
            state.image.append(_make(state, *template()) or False)
        image = state.image[0]
    return image if isinstance(image, MemoryImage) else None


def _make(state: InstanceState, base: int, base_size: int) -> MemoryImage | None:
    size = state.pages * PAGE
    try:
        fd = os.memfd_create("wasm-sandbox-snapshot", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError:
        return None
    try:
        os.ftruncate(fd, size)
        for at in range(0, min(base_size, size), _CHUNK):  # the image's non-zero chunks
            length = min(_CHUNK, base_size - at, size - at)
            if _memcmp(base + at, _ZEROS, length):
                _write(fd, ctypes.string_at(base + at, length), at)
        for offset, contents in state.runs:
            _write(fd, contents, offset)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except OSError:
        os.close(fd)
        return None
    return MemoryImage(fd, size)


def _write(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written

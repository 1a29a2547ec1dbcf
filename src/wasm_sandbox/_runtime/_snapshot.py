"""Snapshots of a guest instance between two calls into it: its linear memory (only the pages
that differ from the module's own image) and its mutable globals.

``GuestInstance.capture`` takes one, ``GuestInstance.restore`` writes one into a new instance
of the same compiled module, which then continues exactly where the captured one stood. The
module's image is read from a *template*: an instance of the module that never runs, whose
memory wasmtime maps copy-on-write from the compiled artifact, so keeping it costs almost no
memory. Comparing 40 MiB against it takes a few milliseconds; writing the ~2 MiB a booted
interpreter changed, a fraction of one.

Tables are not captured: a snapshot is refused for a module that could change them
(``table.set``, ``table.grow`` and friends are outside what our script runtimes do; see
``snapshot_refusal``). The host-side state of an instance (its descriptors and in-memory
directories) belongs to the WASI layer (``_wasi._fs``); the layers above carry both.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from .._wasi._hoststate import HostState

__all__ = ["PAGE", "InstanceState", "Snapshot", "changed_runs", "write_runs"]

PAGE = 65536  # a WebAssembly page
_BLOCK = 4096  # the unit of comparison: a host page
_CHUNK = PAGE  # compared as one block first: most of a memory is unchanged
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.restype = ctypes.c_int
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_zero = ctypes.create_string_buffer(_BLOCK)
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14; elsewhere madvise fails (EINVAL) and faults do it
_populate = getattr(ctypes.CDLL(None, use_errno=True), "madvise", None)
if _populate is not None:
    _populate.restype = ctypes.c_int
    _populate.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_ZERO_ADDRESS = ctypes.addressof(_zero)


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What an instance holds beyond its module's image, at a call boundary."""

    digest: str
    """The SHA-256 of the module it was captured from (it restores only into that one)."""
    pages: int
    """The memory's size, in 64 KiB pages."""
    runs: tuple[tuple[int, bytes], ...]
    """(byte offset, contents) of each run of consecutive 4 KiB blocks that differ from the
    image (or, past the image's size, from zeros), in ascending order."""
    globals: tuple[tuple[int, str, bytes], ...]
    """(global index, value type, the value's 16 bytes) of each mutable global."""

    @property
    def changed_bytes(self) -> int:
        """How many bytes of memory the state carries."""
        return sum(len(data) for _, data in self.runs)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A guest instance's whole state between calls: the guest's (``memory``) and the host
    side's (``host``), and whether a script runtime's driver is loaded in it."""

    memory: InstanceState
    host: HostState
    script_ready: bool

    @property
    def size(self) -> int:
        """Bytes of state it carries (memory pages and in-memory files)."""
        return self.memory.changed_bytes + self.host.stored_bytes


def changed_runs(data: int, size: int, base: int, base_size: int) -> tuple[tuple[int, bytes], ...]:
    """The runs of 4 KiB blocks of the memory at ``data`` (``size`` bytes) that differ from
    the memory at ``base`` (``base_size`` bytes; zeros past it). Blocks the size of the
    host's pages: a restore writes (and so copies on write) only what changed."""
    runs: list[tuple[int, bytes]] = []
    start = -1  # first byte of the open run
    common = min(size, base_size)
    at = 0
    while at < size:
        aligned = start < 0 and at % _CHUNK == 0 and at + _CHUNK <= common
        if aligned and not _memcmp(data + at, base + at, _CHUNK):
            at += _CHUNK
            continue
        other = base + at if at + _BLOCK <= common else _ZERO_ADDRESS
        if _memcmp(data + at, other, _BLOCK):
            if start < 0:
                start = at
        elif start >= 0:
            runs.append((start, ctypes.string_at(data + start, at - start)))
            start = -1
        at += _BLOCK
    if start >= 0:
        runs.append((start, ctypes.string_at(data + start, size - start)))
    return tuple(runs)


def write_runs(data: int, size: int, runs: tuple[tuple[int, bytes], ...]) -> None:
    """Copy each run into the memory at ``data`` (``size`` bytes, already large enough)."""
    for offset, contents in runs:
        if offset < 0 or offset + len(contents) > size:
            raise ValueError(f"a snapshot's run at {offset} does not fit a memory of {size} bytes")
        if _populate is not None and offset % _BLOCK == 0:
            # One system call makes the run's pages private, instead of one fault per page.
            _populate(data + offset, len(contents), _MADV_POPULATE_WRITE)
        ctypes.memmove(data + offset, contents, len(contents))

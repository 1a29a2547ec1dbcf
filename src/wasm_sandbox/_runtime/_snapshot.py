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
import hashlib
import json
import mmap
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from .._wasi._hoststate import HostState, MountState

__all__ = [
    "PAGE",
    "InstanceState",
    "Snapshot",
    "changed_runs",
    "dump_snapshot",
    "load_snapshot",
    "write_runs",
]

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
    """Runs of 4 KiB blocks of the memory at ``data`` (``size`` bytes) that hold every byte
    that differs from the memory at ``base`` (``base_size`` bytes; zeros past it). Blocks
    the size of the host's pages: a restore writes (and so copies on write) only those.

    Where the kernel says which blocks may have been written (``written_spans``), each such
    span that differs at all is one run (a few of its blocks may equal the image: comparing
    block by block costs more than writing them back); elsewhere every block is compared."""
    spans = written_spans(data, size)
    if spans is None:
        return _changed_blocks(data, size, base, base_size)
    common = min(size, base_size)
    runs: list[tuple[int, bytes]] = []
    for first, end in spans:
        over_image = min(end, common) - first
        if (over_image > 0 and _memcmp(data + first, base + first, over_image)) or _nonzero(
            data, max(first, common), end
        ):
            runs.append((first, ctypes.string_at(data + first, end - first)))
    return tuple(runs)


def _nonzero(data: int, start: int, end: int) -> bool:
    """Whether the memory at ``data`` holds a byte other than zero in [start, end)."""
    for at in range(start, end, _BLOCK):
        if _memcmp(data + at, _ZERO_ADDRESS, min(_BLOCK, end - at)):
            return True
    return False


def _changed_blocks(
    data: int, size: int, base: int, base_size: int
) -> tuple[tuple[int, bytes], ...]:
    """``changed_runs`` comparing every block (64 KiB at a time where they are equal)."""
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


# --- which blocks may have been written ----------------------------------------------------
# A linear memory starts as a private (copy-on-write) mapping of the module's image, zeros past
# it: a 4 KiB block never written still holds what was mapped. /proc/self/pagemap tells which
# blocks were (present and no longer the file's page, or swapped out), so a capture compares
# those instead of the whole memory (~0.5 ms for a session's few written megabytes, against
# ~3.5 ms for 40 MiB). Trusted only once a check on a mapping made for it passes.

_ENTRY = 8  # bytes per page in /proc/self/pagemap; the last holds the flags (63 present,
_PRESENT, _SWAPPED, _FILE = 0x80, 0x40, 0x20  # 62 swapped, 61 file-backed or shared)
_MAY_BE_WRITTEN = bytes(
    int(bool(flags & _SWAPPED or (flags & _PRESENT and not flags & _FILE))) for flags in range(256)
)
_SPANS = re.compile(b"\x01+")
_pagemap: dict[int, int | None] = {}  # pid -> its open, checked pagemap (None: not usable)
_pagemap_lock = threading.Lock()


def written_spans(data: int, size: int) -> list[tuple[int, int]] | None:
    """(start, end) byte ranges of the memory at ``data`` that may have been written since it
    was mapped; None when the kernel cannot say (then every block counts as written)."""
    fd = _pagemap_fd()
    if fd is None or data % _BLOCK or size % _BLOCK or mmap.PAGESIZE != _BLOCK:
        return None
    count = size // _BLOCK
    try:
        entries = os.pread(fd, count * _ENTRY, data // _BLOCK * _ENTRY)
    except OSError:
        return None
    if len(entries) != count * _ENTRY:
        return None
    flags = entries[_ENTRY - 1 :: _ENTRY].translate(_MAY_BE_WRITTEN)
    return [(a * _BLOCK, b * _BLOCK) for a, b in (m.span() for m in _SPANS.finditer(flags))]


def _pagemap_fd() -> int | None:
    """This process's pagemap, opened and checked once (again in a forked child)."""
    pid = os.getpid()
    found = _pagemap.get(pid, -1)
    if found != -1:
        return found
    with _pagemap_lock:
        try:
            fd: int | None = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None and not _pagemap_tells_writes(fd):
            os.close(fd)
            fd = None
        _pagemap.clear()  # a forked child's copy of its parent's entry is the parent's
        _pagemap[pid] = fd
        return fd


def _pagemap_tells_writes(fd: int) -> bool:
    """Whether ``fd`` reads a private file mapping's pages as they were used: one only read
    and one untouched as not written, one written as written."""
    try:
        backing = os.memfd_create("wasm-sandbox-pagemap", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return False
    try:
        os.pwrite(backing, b"\x01" * 3 * _BLOCK, 0)
        view = mmap.mmap(backing, 3 * _BLOCK, flags=mmap.MAP_PRIVATE)
        try:
            anchor = ctypes.c_char.from_buffer(view)
            address = ctypes.addressof(anchor)
            del anchor
            _ = view[0]  # read
            view[_BLOCK] = 2  # written; the third block is never touched
            entries = os.pread(fd, 3 * _ENTRY, address // _BLOCK * _ENTRY)
        finally:
            view.close()
    except (OSError, ValueError, BufferError):
        return False
    finally:
        os.close(backing)
    return len(entries) == 3 * _ENTRY and entries[_ENTRY - 1 :: _ENTRY].translate(
        _MAY_BE_WRITTEN
    ) == bytes((0, 1, 0))


def write_runs(data: int, size: int, runs: tuple[tuple[int, bytes], ...]) -> None:
    """Copy each run into the memory at ``data`` (``size`` bytes, already large enough)."""
    for offset, contents in runs:
        if offset < 0 or offset + len(contents) > size:
            raise ValueError(f"a snapshot's run at {offset} does not fit a memory of {size} bytes")
        if _populate is not None and offset % _BLOCK == 0:
            # One system call makes the run's pages private, instead of one fault per page.
            _populate(data + offset, len(contents), _MADV_POPULATE_WRITE)
        ctypes.memmove(data + offset, contents, len(contents))


# --- on disk -------------------------------------------------------------------------------
# A snapshot file: MAGIC, a 4-byte length and a JSON header (what the state holds and where
# each piece of data is), the data pieces one after the other, and the SHA-256 of everything
# before it. A file is untrusted input: every offset, size and kind is checked on load, and
# restoring it into an instance writes only inside that instance's memory and directories.

MAGIC = b"WSBXSNAP\x01"
_FORMAT = 1
_MAX_PAGES = 65536  # a 32-bit memory
_MAX_HEADER = 64 << 20
_GLOBAL_KINDS = ("i32", "i64", "f32", "f64", "v128")
_ITEM_KINDS = ("d", "f", "l")


def dump_snapshot(snapshot: Snapshot, meta: dict[str, object]) -> bytes:
    """``snapshot`` and the caller's ``meta`` (JSON values) as the bytes of a file."""
    memory = snapshot.memory
    pieces: list[bytes] = [data for _, data in memory.runs]
    mounts: list[object] = []
    for mount in snapshot.host.mounts:
        if mount is None:
            mounts.append(None)
            continue
        items = []
        for rel, kind, data in mount.items:
            items.append([rel, kind, len(data)])
            pieces.append(data)
        mounts.append({"items": items, "used": mount.used, "entries": mount.entries})
    header = {
        "format": _FORMAT,
        "digest": memory.digest,
        "pages": memory.pages,
        "runs": [[offset, len(data)] for offset, data in memory.runs],
        "globals": [[index, kind, raw.hex()] for index, kind, raw in memory.globals],
        "mounts": mounts,
        "script_ready": snapshot.script_ready,
        "meta": meta,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join([MAGIC, len(head).to_bytes(4, "little"), head, *pieces])
    return body + hashlib.sha256(body).digest()


def load_snapshot(data: bytes) -> tuple[Snapshot, dict[str, object]]:
    """The snapshot and meta in the bytes of a file ``dump_snapshot`` wrote; ``ValueError``
    naming what is wrong for anything else (truncated, altered, malformed)."""
    if len(data) < len(MAGIC) + 4 + 32 or not data.startswith(MAGIC):
        raise ValueError("not a wasm-sandbox snapshot file")
    body, checksum = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != checksum:
        raise ValueError("the file is truncated or was altered (its checksum does not match)")
    at = len(MAGIC)
    size = int.from_bytes(body[at : at + 4], "little")
    at += 4
    if size > _MAX_HEADER or at + size > len(body):
        raise ValueError("the file's header is malformed")
    try:
        header = json.loads(body[at : at + size])
        snapshot = _from_header(header, memoryview(body)[at + size :])
        meta = header["meta"]
        if not isinstance(meta, dict):
            raise TypeError("meta")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"the file's header is malformed ({exc})") from None
    return snapshot, meta


def _from_header(header: dict[str, object], data: memoryview) -> Snapshot:
    if header["format"] != _FORMAT:
        raise ValueError(f"snapshot format {header['format']!r} is not this version's")
    pages = _int(header["pages"], _MAX_PAGES)
    at = 0

    def take(length: int) -> bytes:
        nonlocal at
        if length > len(data) - at:
            raise ValueError("the data is shorter than the header says")
        piece = bytes(data[at : at + length])
        at += length
        return piece

    runs: list[tuple[int, bytes]] = []
    end = 0
    for raw_offset, raw_length in _list(header["runs"]):
        offset, length = _int(raw_offset, pages * PAGE), _int(raw_length, pages * PAGE)
        if offset < end or offset + length > pages * PAGE or length == 0:
            raise ValueError("memory runs overlap or fall outside the memory")
        runs.append((offset, take(length)))
        end = offset + length
    values = []
    for index, kind, raw in _list(header["globals"]):
        if kind not in _GLOBAL_KINDS or len(bytes.fromhex(raw)) != 16:
            raise ValueError("a global is malformed")
        values.append((_int(index, 1 << 32), str(kind), bytes.fromhex(raw)))
    mounts: list[MountState | None] = []
    for mount in _list(header["mounts"]):
        if mount is None:
            mounts.append(None)
            continue
        items = []
        for rel, kind, length in _list(mount["items"]):
            if not isinstance(rel, str) or kind not in _ITEM_KINDS:
                raise ValueError("an in-memory file entry is malformed")
            items.append((rel, str(kind), take(_int(length, 1 << 40))))
        mounts.append(
            MountState(tuple(items), _int(mount["used"], 1 << 40), _int(mount["entries"], 1 << 32))
        )
    if at != len(data):
        raise ValueError("the data is longer than the header says")
    digest = header["digest"]
    if not isinstance(digest, str):
        raise TypeError("digest")
    memory = InstanceState(digest, pages, tuple(runs), tuple(values))
    return Snapshot(memory, HostState(tuple(mounts)), bool(header["script_ready"]))


def _int(value: object, bound: int) -> int:
    if type(value) is not int or not 0 <= value <= bound:
        raise ValueError(f"{value!r} is not a count within {bound}")
    return value


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value

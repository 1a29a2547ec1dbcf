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

import bisect
import ctypes
import hashlib
import json
import mmap
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .._wasi._hoststate import HostState, MountState

__all__ = [
    "PAGE",
    "WRITTEN",
    "InstanceState",
    "Resetter",
    "Snapshot",
    "changed_runs",
    "dump_snapshot",
    "load_snapshot",
    "pagemap_fd",
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
    image: list[Any] = field(default_factory=list, compare=False, repr=False)
    """The ``_image.MemoryImage`` new instances map, made at the first restore (False when
    none can be made); empty until then, and for states small enough to copy."""

    @property
    def changed_bytes(self) -> int:
        """How many bytes of memory the state carries."""
        return sum(len(data) for _, data in self.runs)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Snapshot:
    """A guest instance's whole state between calls: the guest's (``memory``) and the host
    side's (``host``), and whether a script runtime's driver is loaded in it."""

    memory: InstanceState
    host: HostState
    script_ready: bool
    env: tuple[bytes, ...] = ()
    """The environment of the execution it was taken in (``KEY=value``): an execution with
    another one renews the guest's (``GuestInstance.reseed``)."""

    @property
    def size(self) -> int:
        """Bytes of state it carries (memory pages and in-memory files)."""
        return self.memory.changed_bytes + self.host.stored_bytes


def changed_runs(
    data: int, size: int, base: int, base_size: int, mapped_from_image: bool = True
) -> tuple[tuple[int, bytes], ...]:
    """Runs of 4 KiB blocks of the memory at ``data`` (``size`` bytes) that hold every byte
    that differs from the memory at ``base`` (``base_size`` bytes; zeros past it). Blocks
    the size of the host's pages: a restore writes (and so copies on write) only those.

    Where the kernel says which blocks may have been written (``written_blocks``), each such
    span that differs at all is one run (a few of its blocks may equal the image: comparing
    block by block costs more than writing them back), and the others are not read (they
    hold the image; reading them would cost a fault each); elsewhere every block is
    compared, as when the memory was not mapped from the module's image
    (``mapped_from_image`` False: a snapshot's image, ``_image``, was mapped over it, and a
    block never written holds that image's content, not the module's)."""
    common = min(size, base_size)
    runs: list[tuple[int, bytes]] = []
    spans = written_blocks(data, size) if mapped_from_image else None
    if spans is None:
        _compare(data, base, common, 0, size, runs)
        return tuple(runs)
    for first, end in spans:
        start, stop = first * _BLOCK, end * _BLOCK
        over_image = min(stop, common) - start
        differs = over_image > 0 and _memcmp(data + start, base + start, over_image)
        if differs or _nonzero(data, max(start, common), stop):
            runs.append((start, ctypes.string_at(data + start, stop - start)))
    return tuple(runs)


def _nonzero(data: int, start: int, end: int) -> bool:
    """Whether the memory at ``data`` holds a byte other than zero in [start, end)."""
    for at in range(start, end, _BLOCK):
        if _memcmp(data + at, _ZERO_ADDRESS, min(_BLOCK, end - at)):
            return True
    return False


def _compare(
    data: int, base: int, common: int, at: int, stop: int, runs: list[tuple[int, bytes]]
) -> None:
    """Append to ``runs`` the changed runs of blocks within [at, stop)."""
    start = -1  # first byte of the open run
    while at < stop:
        aligned = start < 0 and at % _CHUNK == 0 and at + _CHUNK <= min(common, stop)
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
        runs.append((start, ctypes.string_at(data + start, stop - start)))


def write_runs(data: int, size: int, runs: tuple[tuple[int, bytes], ...]) -> None:
    """Copy each run into the memory at ``data`` (``size`` bytes, already large enough)."""
    for offset, contents in runs:
        if offset < 0 or offset + len(contents) > size:
            raise ValueError(f"a snapshot's run at {offset} does not fit a memory of {size} bytes")
        if _populate is not None and offset % _BLOCK == 0:
            # One system call makes the run's pages private, instead of one fault per page.
            _populate(data + offset, len(contents), _MADV_POPULATE_WRITE)
        ctypes.memmove(data + offset, contents, len(contents))


# --- putting a used instance back ----------------------------------------------------------
# Writing a snapshot into a *new* instance costs a page fault per 4 KiB block it changes
# (copy-on-write of the module's image): most of a fresh execution's time. A used instance
# whose pages are already private can be put back instead, by rewriting only the blocks the
# kernel says were written since the memory was mapped (/proc/self/pagemap: a block still
# mapped from the image, or never touched, holds the image's content), with the snapshot's
# content or the image's. Conservative by construction: a block is skipped only when the
# kernel shows it was never written.

_PAGEMAP_ENTRY = 8
_pagemap_lock = threading.Lock()
_pagemap: list[int] = []  # [pid, fd]: reopened in a forked child (/proc/self is the opener)
#: The top byte of a pagemap entry: bit 63 present, 62 swapped, 61 a file (or shared) page.
#: A page was written when it is swapped, or present and no longer the file's (copied on
#: write); one never touched, or only read, holds what was mapped.
WRITTEN = bytes(int(bool(b & 0x40 or (b & 0x80 and not b & 0x20))) for b in range(256))
_RUNS = re.compile(b"\x01+")


def pagemap_fd() -> int | None:
    """This process's ``/proc/self/pagemap``, open and checked to tell written pages (None
    where there is none, or it cannot be trusted)."""
    with _pagemap_lock:
        pid = os.getpid()
        if _pagemap and _pagemap[0] == pid:
            return _pagemap[1] if _pagemap[1] >= 0 else None
        if _pagemap and _pagemap[1] >= 0:  # the parent's, inherited by this forked child
            os.close(_pagemap[1])
        try:
            fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0 and not _tells_writes(fd):  # never trusted unchecked: resets depend on it
            os.close(fd)
            fd = -1
        _pagemap[:] = [pid, fd]
        return None if fd < 0 else fd


def _tells_writes(pagemap: int) -> bool:
    """Whether ``pagemap`` tells the pages written in a private mapping of a file from those
    read or untouched (a kernel that hides its flags, or an emulation of /proc, would make a
    reset miss written pages): checked once, on three pages of a mapping made for it."""
    try:
        fd = os.memfd_create("wasm-sandbox-pagemap-check", os.MFD_CLOEXEC)
    except (OSError, AttributeError):
        return False
    try:
        size = 3 * mmap.PAGESIZE
        os.pwrite(fd, b"\x01" * size, 0)
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE)
        try:
            cell = ctypes.c_char.from_buffer(mapping)
            address = ctypes.addressof(cell)
            del cell
            _ = mapping[0]  # page 0 read, page 1 written, page 2 untouched
            mapping[mmap.PAGESIZE] = 2
            entries = os.pread(pagemap, 3 * 8, address // mmap.PAGESIZE * 8)
        finally:
            mapping.close()
    except (OSError, ValueError, BufferError):
        return False
    finally:
        os.close(fd)
    return (
        len(entries) == 24
        and entries[7] & 0x80 != 0
        and entries[7::8].translate(WRITTEN) == b"\x00\x01\x00"
    )


def written_blocks(data: int, size: int) -> list[tuple[int, int]] | None:
    """(first, end) block ranges of the memory at ``data`` that may have been written since
    it was mapped; None when the kernel cannot say."""
    fd = pagemap_fd()
    if fd is None or data % _BLOCK or size % _BLOCK:
        return None
    count = size // _BLOCK
    try:
        raw = os.pread(fd, count * _PAGEMAP_ENTRY, data // _BLOCK * _PAGEMAP_ENTRY)
    except OSError:
        return None
    if len(raw) != count * _PAGEMAP_ENTRY:
        return None
    flags = raw[_PAGEMAP_ENTRY - 1 :: _PAGEMAP_ENTRY].translate(WRITTEN)
    return [match.span() for match in _RUNS.finditer(flags)]


class Resetter:
    """Puts the memory of a used instance back to one snapshot's (``reset``)."""

    def __init__(self, state: InstanceState) -> None:
        self.state = state
        self._blob = bytearray()  # the runs' contents, one after the other: made at first use
        # (first block, end block, address of its content) of each run, in order
        self._runs: list[tuple[int, int, int]] = []
        self._starts: list[int] = []
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        """Gather the runs' contents where their addresses stay put (once; a mapped
        snapshot's instances are reset from its image and never need it)."""
        with self._lock:
            if self._starts or not self.state.runs:
                return
            blob = bytearray(b"".join(data for _, data in self.state.runs))
            base = ctypes.addressof((ctypes.c_char * len(blob)).from_buffer(blob))
            runs, at = [], 0
            for offset, data in self.state.runs:
                runs.append((offset // _BLOCK, (offset + len(data)) // _BLOCK, base + at))
                at += len(data)
            self._blob, self._runs = blob, runs
            self._starts = [first for first, _, _ in runs]

    def reset(self, data: int, size: int, base: int, base_size: int) -> bool:
        """Rewrite every possibly written block of the memory at ``data`` with the snapshot's
        content (or the image's at ``base``, zeros past it); False (nothing done) when the
        memory is not the snapshot's size or the kernel cannot tell what was written."""
        if size != self.state.pages * PAGE:
            return False
        self._prepare()
        spans = written_blocks(data, size)
        if spans is None:
            return False
        image_blocks = base_size // _BLOCK
        for first, end in spans:
            block = first
            while block < end:
                stop, source = self._source(block, end, image_blocks, base)
                length = (stop - block) * _BLOCK
                if source is None:
                    ctypes.memset(data + block * _BLOCK, 0, length)
                else:
                    ctypes.memmove(data + block * _BLOCK, source, length)
                block = stop
        return True

    def _source(self, block: int, end: int, image_blocks: int, base: int) -> tuple[int, int | None]:
        """(end of the stretch from ``block`` with one source, that source's address for
        ``block``: the snapshot's, the image's, or None for zeros)."""
        index = bisect.bisect_right(self._starts, block) - 1
        if index >= 0:
            first, stop, address = self._runs[index]
            if block < stop:
                return min(end, stop), address + (block - first) * _BLOCK
        following = self._starts[index + 1] if index + 1 < len(self._starts) else end
        stop = min(end, following)
        if block < image_blocks:
            return min(stop, image_blocks), base + block * _BLOCK
        return stop, None


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
        "env": [item.decode("utf-8", "surrogateescape") for item in snapshot.env],
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
    except (KeyError, TypeError, ValueError, IndexError, RecursionError) as exc:
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
    env = tuple(str(item).encode("utf-8", "surrogateescape") for item in _list(header["env"]))
    return Snapshot(memory, HostState(tuple(mounts)), bool(header["script_ready"]), env)


def _int(value: object, bound: int) -> int:
    if type(value) is not int or not 0 <= value <= bound:
        raise ValueError(f"{value!r} is not a count within {bound}")
    return value


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value

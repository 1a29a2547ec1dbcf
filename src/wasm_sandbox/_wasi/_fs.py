"""The guest's file descriptors and mounts, and confined path resolution.

Paths are resolved one component at a time from the mount's root directory descriptor,
never as a host path string: each step opens the next directory with ``O_NOFOLLOW`` relative
to the previous one, symbolic links are expanded by us within the mount, and ``..`` pops a
directory we hold. So ``..``, absolute paths, symlinks (also ones created on the host, also
swapped in while we resolve) and sibling directories sharing a prefix cannot leave a mount.
"""

from __future__ import annotations

import heapq
import os
import resource
import shutil
import stat
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._config._mounts import MEMORY_ROOT, Mount
from .._errors import MountChanged
from ._errno import Errno, WasiError, errno_from_oserror

if TYPE_CHECKING:
    import ssl

__all__ = [
    "ALL_RIGHTS",
    "HOST_DESCRIPTORS",
    "FdEntry",
    "FdTable",
    "MountRuntime",
    "Resolved",
    "count_entries",
    "resolve",
]

MAX_SYMLINKS = 40
ALL_RIGHTS = (1 << 30) - 1  # every preview1 right
MAX_PATH_BYTES = 4096
_O_PATH = getattr(os, "O_PATH", 0)
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


ENTRY_COST = 256
"""Bytes an in-memory mount charges for each entry it holds (file, directory or link),
besides its name, a link's target and a file's contents: what the kernel keeps for it."""


class MountRuntime:
    """A mount while an instance uses it: the root directory descriptor and, for an
    in-memory mount, its private tmpfs directory and its accounting (bytes and entries)."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self.guest_path = mount.guest_path
        self.read_only = mount.read_only
        self.cap = mount.max_bytes
        self.used = 0
        self.max_entries = mount.max_entries
        self.entries = 0
        self._scratch: str | None = None
        if mount.host_path is not None:
            self.root_fd = _open_mount_root(mount)
        else:
            host = self._scratch = make_scratch_dir()
            # Removed on close(); and at the latest when this object is collected or the
            # interpreter exits (a kept instance may never be closed explicitly).
            self._cleanup = weakref.finalize(self, shutil.rmtree, host, True)
            self.root_fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    @property
    def scratch(self) -> str | None:
        """The host directory of an in-memory mount (None for a host directory)."""
        return self._scratch

    def guest_name(self, rel: tuple[str, ...]) -> str:
        """The guest path of ``rel`` (components below the mount root)."""
        base = self.guest_path.rstrip("/")
        return base + "/" + "/".join(rel) if rel else self.guest_path

    def charge_entry(self, name: str, extra: int = 0, *, counted: bool = True) -> None:
        """Account for one more entry called ``name`` (plus ``extra`` bytes, a link's
        target) on an in-memory mount: ENOSPC past its byte or entry cap. ``counted=False``
        for a name that replaces another (a rename): bytes only."""
        if self.cap is None:
            return
        cost = ENTRY_COST + len(name.encode()) + extra
        full = counted and self.max_entries is not None and self.entries >= self.max_entries
        if full or self.used + cost > self.cap:
            raise WasiError(Errno.ENOSPC)
        self.used += cost
        self.entries += counted

    def refund_entry(self, name: str, extra: int = 0, *, counted: bool = True) -> None:
        """Give back what ``charge_entry`` took for an entry that is gone."""
        if self.cap is None:
            return
        self.used = max(0, self.used - ENTRY_COST - len(name.encode()) - extra)
        self.entries = max(0, self.entries - counted)

    def close(self) -> None:
        """Close the root descriptor and delete an in-memory directory."""
        os.close(self.root_fd)
        if self._scratch is not None:
            self._cleanup()


def _open_mount_root(mount: Mount) -> int:
    """The mount's host directory, opened without following a symbolic link and checked to
    be the very directory validated when the mount was made (device and inode)."""
    host = str(mount.host_path)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MountChanged(mount.guest_path, host, "no longer exists") from None
    except OSError as exc:
        detail = "is now a symbolic link" if os.path.islink(host) else "cannot be opened"
        raise MountChanged(mount.guest_path, host, f"{detail} ({exc.strerror})") from None
    st = os.fstat(fd)
    if mount.identity is not None and (st.st_dev, st.st_ino) != mount.identity:
        os.close(fd)
        raise MountChanged(
            mount.guest_path, host, "is not the directory checked when the mount was made"
        )
    return fd


# --- in-memory directories: named after their owner so a dead owner's are swept -----------

_SCRATCH_PREFIX = "wasm-sandbox-"


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return None
    fields = stat_line.rsplit(b")", 1)[-1].split()
    return fields[19].decode("ascii", "replace") if len(fields) > 19 else None


_owners: dict[int, str] = {}  # pid -> "pid-start": read from /proc once per process


def _owner() -> str:
    pid = os.getpid()
    owner = _owners.get(pid)
    if owner is None:
        owner = _owners[pid] = f"{pid}-{_start_time(pid) or 0}"
    return owner


_swept_for: set[str] = set()  # the owners (pid-start) that have swept already


def make_scratch_dir() -> str:
    """A private directory under MEMORY_ROOT named ``wasm-sandbox-<pid>-<start>-<random>``
    (a pid and its start time name one process, even after the pid is reused); the first
    one a process makes also sweeps those of processes that died without removing theirs
    (killed by SIGKILL, say)."""
    owner = _owner()
    if owner not in _swept_for:  # also true again in a forked child
        _swept_for.add(owner)
        sweep_stale_scratch_dirs()
    return tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{owner}-", dir=MEMORY_ROOT)


def sweep_stale_scratch_dirs(root: str = MEMORY_ROOT) -> list[str]:
    """Remove the in-memory directories of owners that are gone; returns their paths."""
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    uid = os.getuid()
    for name in names:
        parts = (
            name[len(_SCRATCH_PREFIX) :].split("-", 2) if name.startswith(_SCRATCH_PREFIX) else []
        )
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        path = os.path.join(root, name)
        try:
            if os.lstat(path).st_uid != uid:
                continue
        except OSError:
            continue
        if _start_time(int(parts[0])) != parts[1]:  # the owner died (or its pid was reused)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclass(slots=True, eq=False)
class FdEntry:
    """One open guest file descriptor."""

    kind: str  # "stdin" | "stdout" | "stderr" | "file" | "dir" | "socket"
    mount: MountRuntime | None = None
    fd: int | None = None  # host descriptor for files, directories and connections
    rel: tuple[str, ...] = ()
    readable: bool = False
    writable: bool = False
    append: bool = False
    preopen: bool = False
    listing: list[tuple[str, int, int]] | None = None  # readdir snapshot: (name, ino, type)
    sync_flags: int = 0  # the DSYNC/SYNC/RSYNC fdflags it was opened with: never buffered
    orphan: bool = False  # its file was unlinked while open (in-memory byte accounting)
    pending: bytearray | None = None  # buffered sequential writes not yet on the host
    pending_writes: int = 0
    timeout: float | None = None  # a connection's own read/write timeout (0: non-blocking)
    tls: ssl.SSLSocket | None = None  # a connection the host speaks TLS on (owns ``fd``)
    # What fd_fdstat_set_rights has left of the rights (masks over the kind's own rights).
    rights_base: int = ALL_RIGHTS
    rights_inheriting: int = ALL_RIGHTS

    @property
    def guest_path(self) -> str:
        """The path the guest knows this descriptor by."""
        return self.mount.guest_name(self.rel) if self.mount is not None else f"<{self.kind}>"


def _close_host(entry: FdEntry) -> None:
    """Close the host side of a descriptor (a TLS connection through its SSL socket)."""
    if entry.tls is not None:
        entry.tls.close()
        entry.tls = None
    elif entry.fd is not None:
        os.close(entry.fd)
    entry.fd = None


class HostDescriptors:
    """The host descriptors guests hold, across every instance of this process, kept below
    ``RLIMIT_NOFILE`` with headroom for the host's own (a quarter of the soft limit, at
    least 64): a guest opening file after file meets ENFILE while the host can still open
    sockets and files of its own, whatever ``max_open_files`` says."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_use = 0

    @staticmethod
    def cap() -> int:
        """How many descriptors all guests together may hold now."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft <= 0:
            soft = 1 << 20
        return max(0, soft - max(64, soft // 4))

    def take(self) -> bool:
        """Count one more guest-held descriptor; False when none may be taken."""
        with self._lock:
            if self.in_use >= self.cap():
                return False
            self.in_use += 1
            return True

    def give_back(self, count: int = 1) -> None:
        with self._lock:
            self.in_use = max(0, self.in_use - count)


HOST_DESCRIPTORS = HostDescriptors()


class FdTable:
    """The descriptors of one instance: stdio, one preopened directory per mount, and
    whatever the guest opens. Lives as long as the instance (across calls if it is kept).

    New descriptors take the lowest number freed so far, else the next never used (O(log n)
    either way); ``open_count`` and ``socket_count`` are kept as the table changes."""

    def __init__(self, mounts: tuple[Mount, ...]) -> None:
        self.entries: dict[int, FdEntry] = {
            0: FdEntry("stdin", readable=True),
            1: FdEntry("stdout", writable=True),
            2: FdEntry("stderr", writable=True),
        }
        self.mounts: list[MountRuntime] = []
        self.dirty: set[FdEntry] = set()  # entries with buffered writes
        self.open_count = 0  # descriptors the guest opened itself (host-backed)
        self.socket_count = 0
        self._free: list[int] = []  # a heap of freed numbers
        self._next = 3
        try:
            for mount in mounts:
                runtime = MountRuntime(mount)
                self.mounts.append(runtime)
                self.entries[self._next] = FdEntry(
                    "dir", runtime, None, (), True, not mount.read_only, preopen=True
                )
                self._next += 1
        except BaseException:
            self.close()
            raise

    def get(self, fd: int) -> FdEntry:
        """The entry of ``fd``, or EBADF."""
        entry = self.entries.get(fd)
        if entry is None:
            raise WasiError(Errno.EBADF)
        return entry

    def room_for_one_more(self, limit: int | None) -> tuple[bool, bool]:
        """(under the guest's ``max_open_files``, under the process-wide headroom)."""
        return (limit is None or self.open_count < limit), (
            HOST_DESCRIPTORS.in_use < HOST_DESCRIPTORS.cap()
        )

    def add(self, entry: FdEntry) -> int:
        """Store ``entry`` under the lowest freed descriptor number (or the next new one).
        A host-backed entry takes one of the process's guest descriptors: ENFILE when the
        process-wide headroom is reached (the caller closes the host descriptor)."""
        if entry.fd is not None and not HOST_DESCRIPTORS.take():
            raise WasiError(Errno.ENFILE)
        while self._free and self._free[0] in self.entries:  # taken since by fd_renumber
            heapq.heappop(self._free)
        if self._free:
            fd = heapq.heappop(self._free)
        else:
            fd = self._next
            self._next += 1
        self.entries[fd] = entry
        self._counted(entry, +1)
        return fd

    def _counted(self, entry: FdEntry, sign: int) -> None:
        if entry.fd is not None and not entry.preopen:
            self.open_count += sign
            if entry.kind == "socket":
                self.socket_count += sign

    def renumber(self, fd: int, to: int) -> None:
        """Move ``fd`` to ``to`` (both open), closing what ``to`` held."""
        self.close_fd(to)
        self.entries[to] = self.entries.pop(fd)
        heapq.heappush(self._free, fd)

    def flush(self, entry: FdEntry) -> None:
        """Write ``entry``'s buffered bytes to the host (errors become the guest's errno)."""
        data, fd = entry.pending, entry.fd
        entry.pending, entry.pending_writes = None, 0
        self.dirty.discard(entry)
        if not data or fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise WasiError(errno_from_oserror(exc)) from None

    def flush_all(self) -> list[str]:
        """Flush every buffer; returns the errors (the guest may not be there to hear them)."""
        errors = []
        for entry in list(self.dirty):
            try:
                self.flush(entry)
            except WasiError as exc:
                errors.append(f"{entry.guest_path}: {exc.errno.name}")
        return errors

    def close_fd(self, fd: int) -> FdEntry:
        """Close ``fd`` (EBADF if it is not open)."""
        entry = self.entries.pop(fd, None)
        if entry is None:
            raise WasiError(Errno.EBADF)
        self._release(entry)
        heapq.heappush(self._free, fd)
        return entry

    def _release(self, entry: FdEntry) -> None:
        if entry.fd is not None:
            self._counted(entry, -1)
            if not entry.preopen:
                HOST_DESCRIPTORS.give_back()
        _close_host(entry)

    def close(self) -> None:
        """Close every host descriptor and mount (the instance is going away)."""
        self.flush_all()
        for entry in self.entries.values():
            self._release(entry)
        self.entries.clear()
        for runtime in self.mounts:
            runtime.close()
        self.mounts.clear()


@dataclass(slots=True)
class Resolved:
    """Where a guest path leads: a directory we hold and the final name in it."""

    mount: MountRuntime
    dir_fd: int
    name: str  # "." when the path names the directory itself
    rel: tuple[str, ...]  # components of the target below the mount root
    must_be_dir: bool = False
    _owned: list[int] = field(default_factory=list)

    def close(self) -> None:
        """Close the intermediate directory descriptors."""
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()


class Escape(WasiError):
    """A path that tries to leave its mount: ENOTCAPABLE, also reported as a security event."""

    def __init__(self, reason: str) -> None:
        super().__init__(Errno.ENOTCAPABLE)
        self.reason = reason


def decode_path(raw: bytes) -> str:
    """A guest path as text; NUL bytes, invalid UTF-8 and over-long paths are refused."""
    if len(raw) > MAX_PATH_BYTES:
        raise WasiError(Errno.ENAMETOOLONG)
    if b"\0" in raw:
        raise WasiError(Errno.EINVAL)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WasiError(Errno.EILSEQ) from None


@contextmanager
def resolve(base: FdEntry, path: str, *, follow: bool) -> Iterator[Resolved]:
    """Resolve ``path`` relative to the directory ``base``, confined to its mount."""
    if base.kind != "dir" or base.mount is None:
        raise WasiError(Errno.ENOTDIR)
    if path.startswith("/"):
        raise Escape(f"absolute path {path!r}")
    if path == "":
        raise WasiError(Errno.ENOENT)
    # Each directory descriptor is its own root (as in wasmtime's cap-std): resolution starts
    # at the directory it holds — also after a rename — and never goes above it.
    start = base.fd if base.fd is not None else base.mount.root_fd
    resolved = _walk(base.mount, start, base.rel, path.split("/"), follow)
    resolved.must_be_dir = path.endswith("/")
    try:
        yield resolved
    finally:
        resolved.close()


def _walk(
    mount: MountRuntime, start: int, base_rel: tuple[str, ...], parts: list[str], follow: bool
) -> Resolved:
    pending = deque(p for p in parts if p not in ("", "."))
    stack = [start]
    names: list[str] = []
    links = 0
    final = "."
    try:
        while pending:
            part = pending.popleft()
            if part == "..":
                if not names:
                    raise Escape("'..' above the directory it is resolved from")
                os.close(stack.pop())
                names.pop()
                continue
            last = not pending
            try:
                st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    final = part
                    break
                raise WasiError(Errno.ENOENT) from None
            if stat.S_ISLNK(st.st_mode) and (follow or not last):
                links += 1
                pending.extendleft(reversed(_link_parts(part, stack[-1], links)))
                continue
            if last:
                final = part
                break
            if not stat.S_ISDIR(st.st_mode):
                raise WasiError(Errno.ENOTDIR)
            stack.append(_open_dir(part, stack[-1]))
            names.append(part)
    except OSError as exc:
        for fd in stack[1:]:
            os.close(fd)
        raise WasiError(errno_from_oserror(exc)) from None
    except BaseException:
        for fd in stack[1:]:
            os.close(fd)
        raise
    rel = base_rel + tuple(names) + ((final,) if final != "." else ())
    return Resolved(mount, stack[-1], final, rel, _owned=stack[1:])


def _link_parts(name: str, dir_fd: int, links: int) -> list[str]:
    """The components a symbolic link expands to; absolute targets leave the mount."""
    if links > MAX_SYMLINKS:
        raise WasiError(Errno.ELOOP)
    target = os.readlink(name, dir_fd=dir_fd)
    if target.startswith("/"):
        raise Escape(f"symbolic link {name!r} points to the absolute path {target!r}")
    return [p for p in target.split("/") if p not in ("", ".")]


def count_entries(dir_fd: int) -> int:
    """Entries in the directory ``dir_fd`` (which may be an O_PATH descriptor)."""
    readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return len(os.listdir(readable))
    finally:
        os.close(readable)


def _open_dir(name: str, dir_fd: int) -> int:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    if not stat.S_ISDIR(os.fstat(fd).st_mode):  # swapped for something else since the stat
        os.close(fd)
        raise WasiError(Errno.ENOTDIR)
    return fd

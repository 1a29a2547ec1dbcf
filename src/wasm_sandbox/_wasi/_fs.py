"""The guest's file descriptors and mounts, and confined path resolution.

Paths are resolved one component at a time from the mount's root directory descriptor,
never as a host path string: each step opens the next directory with ``O_NOFOLLOW`` relative
to the previous one, symbolic links are expanded by us within the mount, and ``..`` pops a
directory we hold. So ``..``, absolute paths, symlinks (also ones created on the host, also
swapped in while we resolve) and sibling directories sharing a prefix cannot leave a mount.
"""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import tempfile
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .._mounts import MEMORY_ROOT, Mount
from ._errno import Errno, WasiError, errno_from_oserror

__all__ = [
    "ALL_RIGHTS",
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


class MountRuntime:
    """A mount while an instance uses it: the root directory descriptor and, for an
    in-memory mount, its private tmpfs directory and byte accounting."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self.guest_path = mount.guest_path
        self.read_only = mount.read_only
        self.cap = mount.max_bytes
        self.used = 0
        self._scratch: str | None = None
        if mount.host_path is not None:
            host = str(mount.host_path)
        else:
            host = self._scratch = tempfile.mkdtemp(prefix="wasm-sandbox-", dir=MEMORY_ROOT)
            # Removed on close(); and at the latest when this object is collected or the
            # interpreter exits (a kept instance may never be closed explicitly).
            self._cleanup = weakref.finalize(self, shutil.rmtree, host, True)
        self.root_fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def guest_name(self, rel: tuple[str, ...]) -> str:
        """The guest path of ``rel`` (components below the mount root)."""
        base = self.guest_path.rstrip("/")
        return base + "/" + "/".join(rel) if rel else self.guest_path

    def close(self) -> None:
        """Close the root descriptor and delete an in-memory directory."""
        os.close(self.root_fd)
        if self._scratch is not None:
            self._cleanup()


@dataclass(slots=True, eq=False)
class FdEntry:
    """One open guest file descriptor."""

    kind: str  # "stdin" | "stdout" | "stderr" | "file" | "dir"
    mount: MountRuntime | None = None
    fd: int | None = None  # host descriptor for files and directories
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


class FdTable:
    """The descriptors of one instance: stdio, one preopened directory per mount, and
    whatever the guest opens. Lives as long as the instance (across calls if it is kept)."""

    def __init__(self, mounts: tuple[Mount, ...]) -> None:
        self.entries: dict[int, FdEntry] = {
            0: FdEntry("stdin", readable=True),
            1: FdEntry("stdout", writable=True),
            2: FdEntry("stderr", writable=True),
        }
        self.mounts: list[MountRuntime] = []
        self.dirty: set[FdEntry] = set()  # entries with buffered writes
        try:
            for mount in mounts:
                runtime = MountRuntime(mount)
                self.mounts.append(runtime)
                self.entries[len(self.entries)] = FdEntry(
                    "dir", runtime, None, (), True, not mount.read_only, preopen=True
                )
        except BaseException:
            self.close()
            raise

    def get(self, fd: int) -> FdEntry:
        """The entry of ``fd``, or EBADF."""
        entry = self.entries.get(fd)
        if entry is None:
            raise WasiError(Errno.EBADF)
        return entry

    def add(self, entry: FdEntry) -> int:
        """Store ``entry`` under the lowest free descriptor number."""
        fd = 3
        while fd in self.entries:
            fd += 1
        self.entries[fd] = entry
        return fd

    def count_open(self) -> int:
        """Descriptors the guest opened itself (not stdio, not preopens)."""
        return sum(1 for e in self.entries.values() if e.fd is not None)

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
        _close_host(entry)
        return entry

    def close(self) -> None:
        """Close every host descriptor and mount (the instance is going away)."""
        self.flush_all()
        for entry in self.entries.values():
            _close_host(entry)
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

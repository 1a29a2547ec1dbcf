"""The host-side half of a snapshot: what the WASI layer holds for one instance beyond the
guest's memory. The descriptors must be the ones every instance starts with (stdio and one
preopened directory per mount): a file or connection the guest holds open is refused
(``SnapshotError``), since its host descriptor cannot be carried to another instance. The
content of in-memory directories is carried (files, directories, links and their byte
accounting); host directories are the host's, shared by every instance.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .._errors import SnapshotError
from ._fs import ENTRY_COST, FdEntry, FdTable

__all__ = ["HostState", "MountState", "capture_host", "pristine_refusal", "restore_host"]

_STDIO = ("stdin", "stdout", "stderr")


@dataclass(frozen=True, slots=True)
class MountState:
    """An in-memory directory's content: (path below its root, kind, bytes) with kind "d"
    (a directory: no bytes), "f" (a file: its content) or "l" (a link: its target), parents
    before children; and its accounting."""

    items: tuple[tuple[str, str, bytes], ...]
    used: int
    entries: int


@dataclass(frozen=True, slots=True)
class HostState:
    """Per mount, in order: its in-memory content, or None for a host directory."""

    mounts: tuple[MountState | None, ...]

    @property
    def stored_bytes(self) -> int:
        """Bytes of in-memory file content and link targets carried."""
        return sum(len(data) for m in self.mounts if m is not None for _, _, data in m.items)


def pristine_refusal(fds: FdTable) -> str | None:
    """Why ``fds`` is not the table every instance starts with (None when it is)."""
    expected = 3 + len(fds.mounts)
    extra = sorted(fd for fd in fds.entries if fd >= expected)
    if extra:
        held = ", ".join(_held(fds.entries[fd], fd) for fd in extra[:3])
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        them = "it" if len(extra) == 1 else "them"
        return f"the guest holds {held}{more} open; close {them} first"
    for fd in range(expected):
        entry = fds.entries.get(fd)
        kind = _STDIO[fd] if fd < 3 else "dir"
        if entry is None or entry.kind != kind or (fd >= 3 and not entry.preopen):
            return f"the guest closed or replaced its descriptor {fd}"
    return None


def _held(entry: FdEntry, fd: int) -> str:
    """How a refusal names a descriptor the guest holds."""
    if entry.kind == "socket":
        endpoint = entry.rel[0] if entry.rel else "a host"
        return f"a network connection to {endpoint} (fd {fd})"
    return f"the {'directory' if entry.kind == 'dir' else 'file'} {entry.guest_path} (fd {fd})"


def capture_host(fds: FdTable) -> HostState:
    """The host-side state of the instance whose table is ``fds`` (``SnapshotError`` when it
    holds descriptors a snapshot cannot carry)."""
    why = pristine_refusal(fds)
    if why is not None:
        raise SnapshotError(f"cannot snapshot this state: {why}")
    fds.flush_all()
    states: list[MountState | None] = []
    for runtime in fds.mounts:
        root = runtime.scratch
        states.append(None if root is None else _capture_tree(root, runtime.used, runtime.entries))
    return HostState(tuple(states))


def _capture_tree(root: str, used: int, entries: int) -> MountState:
    items: list[tuple[str, str, bytes]] = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(directory, root)
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                items.append((rel, "l", os.fsencode(os.readlink(path))))
            elif stat.S_ISDIR(mode):
                items.append((rel, "d", b""))
            elif stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    items.append((rel, "f", f.read()))
        dirs.sort()
    return MountState(tuple(items), used, entries)


def restore_host(fds: FdTable, state: HostState) -> None:
    """Fill the in-memory directories of a new instance's table ``fds`` from ``state``
    (captured for the same mounts)."""
    if len(state.mounts) != len(fds.mounts):
        raise SnapshotError("the snapshot was taken with other mounts")
    for runtime, mount_state in zip(fds.mounts, state.mounts, strict=True):
        root = runtime.scratch
        if (root is None) != (mount_state is None):
            raise SnapshotError("the snapshot was taken with other mounts")
        if root is None or mount_state is None:
            continue
        # What the items cost by the mount's own accounting, whatever the state says it
        # used (a saved state is untrusted: it must not fill the host's RAM past the cap).
        items = mount_state.items
        cost = sum(ENTRY_COST + len(rel.encode()) + len(data) for rel, _, data in items)
        used, entries = max(mount_state.used, cost), max(mount_state.entries, len(items))
        over_bytes = runtime.cap is not None and used > runtime.cap
        if over_bytes or (runtime.max_entries is not None and entries > runtime.max_entries):
            raise SnapshotError(
                f"the snapshot's {runtime.guest_path} holds more than the mount's cap"
            )
        made = {""}  # directories made by this restore: the only parents allowed
        for rel, kind, data in items:
            _restore_item(root, rel, kind, data, made)
        runtime.used, runtime.entries = used, entries


def _restore_item(root: str, rel: str, kind: str, data: bytes, made: set[str]) -> None:
    """Make one entry; its parent must be a directory this restore made (never a link: a
    saved state is untrusted data)."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or "/".join(parts[:-1]) not in made:
        raise SnapshotError(f"the snapshot names an invalid path {rel!r}")
    path = os.path.join(root, *parts)
    if kind == "d":
        os.mkdir(path, 0o700)
        made.add(rel)
    elif kind == "f":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    elif kind == "l":
        os.symlink(os.fsdecode(data), path)
    else:
        raise SnapshotError(f"the snapshot holds an entry of unknown kind {kind!r}")

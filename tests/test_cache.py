"""The on-disk compiled-module cache, exercised across fresh processes (the in-memory cache
of one process would hide it): first build writes a .cwasm, the next process loads it, broken
artifacts are recompiled, the cache can be turned off, optimisation levels get their own
entries, and a cache that cannot be written never breaks a build."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import wasm_sandbox as ws
from wasm_sandbox._runtime._engine import get_engine

SRC = Path(__file__).resolve().parents[1] / "src"

# Builds the guest once per requested optimisation level in a fresh interpreter, runs it,
# and prints what happened as one JSON line per build.
BUILD_SCRIPT = """
import json, sys
import wasm_sandbox as ws

source, cache = sys.argv[1], sys.argv[2]
for level in sys.argv[3:]:
    builder = ws.WasmSandbox.builder().source(source)
    builder.optimization_level(ws.OptimizationLevel[level])
    if cache == "off":
        builder.cache_dir(None)
    elif cache != "default":
        builder.cache_dir(cache)
    sandbox = builder.build()
    result = sandbox.run(["args", "cached", level])
    print(json.dumps({
        "level": level,
        "from_cache": sandbox.from_cache,
        "exit_code": result.exit_code,
        "stdout": result.stdout.decode(),
    }))
"""


def build_in_fresh_process(
    source: Path, cache: str | Path, env_cache: Path, *levels: str
) -> tuple[list[dict[str, Any]], str]:
    """Run BUILD_SCRIPT in a new interpreter; returns its JSON lines and its stderr."""
    env = dict(os.environ, PYTHONPATH=str(SRC), WASM_SANDBOX_CACHE_DIR=str(env_cache))
    proc = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(source), str(cache), *(levels or ("SPEED",))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode < 0:
        how = f"was killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"failed with status {proc.returncode}"
    assert proc.returncode == 0, f"the build process {how}:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def expected_stdout(probe: Path, level: str = "SPEED") -> str:
    return f"[{probe.name}][args][cached][{level}]\n"


def artifacts(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.cwasm")) if directory.is_dir() else []


@pytest.fixture(scope="module")
def probe(c_guest: Callable[[str], Path]) -> Path:
    return c_guest("probe")


def elf_section(data: bytes, name: bytes) -> tuple[int, int]:
    """(offset, size) of an ELF64 section: compiled artifacts are ELF images."""
    assert data[:4] == b"\x7fELF" and data[4] == 2, "expected an ELF64 artifact"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index: int) -> tuple[int, int, int, int, int, int]:
        return struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize)

    strings = header(shstrndx)[4]
    for index in range(shnum):
        name_at, _, _, _, offset, size = header(index)
        end = data.index(b"\0", strings + name_at)
        if data[strings + name_at : end] == name:
            return offset, size
    raise AssertionError(f"no section {name!r} in the artifact")


# --- hit and miss ----------------------------------------------------------------------------


def test_first_build_writes_an_artifact_and_second_process_loads_it(
    probe: Path, tmp_path: Path
) -> None:
    """A fresh process compiles and writes one .cwasm; the next fresh process loads it
    (from_cache is True) and the guest behaves the same."""
    cache = tmp_path / "cache"
    [first], _ = build_in_fresh_process(probe, cache, tmp_path / "unused")
    assert first["from_cache"] is False
    files = artifacts(cache)
    assert len(files) == 1
    assert files[0].stat().st_size > 0
    [second], _ = build_in_fresh_process(probe, cache, tmp_path / "unused")
    assert second["from_cache"] is True
    assert second == {**first, "from_cache": True}
    assert second["stdout"] == expected_stdout(probe)
    assert artifacts(cache) == files
    assert not list(cache.glob(".tmp-*")), "temporary files were left behind"


def test_default_cache_dir_is_taken_from_the_environment(probe: Path, tmp_path: Path) -> None:
    """Without .cache_dir(), WASM_SANDBOX_CACHE_DIR is where artifacts go and come from."""
    env_cache = tmp_path / "from-env"
    [first], _ = build_in_fresh_process(probe, "default", env_cache)
    assert first["from_cache"] is False
    assert len(artifacts(env_cache)) == 1
    [second], _ = build_in_fresh_process(probe, "default", env_cache)
    assert second["from_cache"] is True
    assert second["stdout"] == expected_stdout(probe)


def test_explicit_cache_dir_wins_over_the_environment(probe: Path, tmp_path: Path) -> None:
    """.cache_dir(path) is used instead of WASM_SANDBOX_CACHE_DIR, which stays untouched."""
    env_cache, explicit = tmp_path / "from-env", tmp_path / "explicit"
    build_in_fresh_process(probe, explicit, env_cache)
    assert len(artifacts(explicit)) == 1
    assert artifacts(env_cache) == []


def test_disabled_cache_writes_nothing(probe: Path, tmp_path: Path) -> None:
    """.cache_dir(None) turns the disk cache off: nothing is written anywhere, and a later
    process compiles again."""
    env_cache = tmp_path / "from-env"
    for _ in range(2):
        [result], _ = build_in_fresh_process(probe, "off", env_cache)
        assert result["from_cache"] is False
        assert result["stdout"] == expected_stdout(probe)
    assert not env_cache.exists() or not any(env_cache.iterdir())


def test_disabled_cache_ignores_an_existing_artifact(probe: Path, tmp_path: Path) -> None:
    """With the cache off, an artifact already in the default directory is not read."""
    env_cache = tmp_path / "from-env"
    build_in_fresh_process(probe, "default", env_cache)
    assert len(artifacts(env_cache)) == 1
    [result], _ = build_in_fresh_process(probe, "off", env_cache)
    assert result["from_cache"] is False
    assert result["stdout"] == expected_stdout(probe)


# --- broken artifacts ------------------------------------------------------------------------


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return bytes(range(256)) * (len(data) // 256)


def _empty(data: bytes) -> bytes:
    return b""


def _zeroed_code(data: bytes) -> bytes:
    # Same size, valid header and metadata, but the machine code is zero-filled (as after a
    # lost write or a damaged disk block): only an integrity check can notice.
    offset, size = elf_section(data, b".text")
    return data[:offset] + bytes(size) + data[offset + size :]


def _flipped_code(data: bytes) -> bytes:
    offset, size = elf_section(data, b".text")
    code = bytes(b ^ 0xFF for b in data[offset : offset + size])
    return data[:offset] + code + data[offset + size :]


@pytest.mark.parametrize(
    "corrupt",
    [_truncate, _garbage, _empty, _zeroed_code, _flipped_code],
    ids=["truncated", "garbage", "empty", "zeroed-code", "flipped-code"],
)
def test_broken_artifact_is_detected_and_recompiled(
    probe: Path, tmp_path: Path, corrupt: Callable[[bytes], bytes]
) -> None:
    """A damaged .cwasm never crashes the host or runs: it is detected, the module is
    compiled afresh with the right result, and the artifact is replaced by a good one."""
    cache = tmp_path / "cache"
    build_in_fresh_process(probe, cache, tmp_path / "unused")
    [path] = artifacts(cache)
    good = path.read_bytes()
    path.write_bytes(corrupt(good))

    [result], _ = build_in_fresh_process(probe, cache, tmp_path / "unused")
    assert result["from_cache"] is False, "the damaged artifact was loaded"
    assert result["exit_code"] == 0
    assert result["stdout"] == expected_stdout(probe)

    assert artifacts(cache) == [path]
    assert path.stat().st_size == len(good), "the damaged artifact was not replaced"
    [again], _ = build_in_fresh_process(probe, cache, tmp_path / "unused")
    assert again["from_cache"] is True
    assert again["stdout"] == expected_stdout(probe)


# --- optimisation levels ---------------------------------------------------------------------

_OPT_LEVEL = re.compile(rb"opt_level\x00[\x00-\xff](\w+)")


def test_optimization_levels_get_distinct_entries_that_reach_the_compiler(
    probe: Path, tmp_path: Path
) -> None:
    """SPEED, SIZE and NONE each get their own cache entry, each artifact was compiled with
    its own Cranelift opt_level (recorded in the artifact, and NONE's unoptimised code is
    larger), and all of them run the guest correctly, freshly compiled and from the cache."""
    cache = tmp_path / "cache"
    levels = ("SPEED", "SIZE", "NONE")
    first, _ = build_in_fresh_process(probe, cache, tmp_path / "unused", *levels)
    assert [r["from_cache"] for r in first] == [False, False, False]
    files = artifacts(cache)
    assert len(files) == 3, "the optimisation level is not part of the cache key"

    compiled_with: dict[str, Path] = {}
    for path in files:
        match = _OPT_LEVEL.search(path.read_bytes())
        assert match is not None, f"no opt_level recorded in {path.name}"
        compiled_with[match.group(1).decode()] = path
    assert set(compiled_with) == {"speed", "speed_and_size", "none"}
    assert compiled_with["none"].stat().st_size > compiled_with["speed"].stat().st_size

    second, _ = build_in_fresh_process(probe, cache, tmp_path / "unused", *levels)
    assert [r["from_cache"] for r in second] == [True, True, True]
    for result in first + second:
        assert result["exit_code"] == 0
        assert result["stdout"] == expected_stdout(probe, result["level"])
    assert artifacts(cache) == files


# --- unwritable cache ------------------------------------------------------------------------


def test_unwritable_cache_dir_does_not_break_the_build(probe: Path, tmp_path: Path) -> None:
    """A cache directory that cannot be created (its parent is a regular file) only skips
    caching: the build succeeds and runs; at most a warning is printed on stderr."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = blocker / "cache"
    for _ in range(2):
        [result], stderr = build_in_fresh_process(probe, cache, tmp_path / "unused")
        assert result["from_cache"] is False
        assert result["exit_code"] == 0
        assert result["stdout"] == expected_stdout(probe)
        assert stderr == "" or "not caching" in stderr
    assert blocker.read_text() == "not a directory"


def test_unwritable_cache_in_process(probe: Path, tmp_path: Path) -> None:
    """The same in this process through the public API: build and run succeed."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    wat = b'(module (func (export "answer") (result i32) i32.const 4242))'
    sandbox = ws.WasmSandbox.builder().source(wat).cache_dir(blocker / "cache").build()
    assert sandbox.call("answer") == 4242
    assert sandbox.from_cache is False


def test_in_memory_module_cache_is_bounded() -> None:
    """Building many different guests keeps only the modules in use plus a few recent ones."""
    digests = []
    for i in range(40):
        wat = (
            f'(module (func (export "f{i}_{time.time_ns()}") (result i32) i32.const {i}))'.encode()
        )
        ws.WasmSandbox.builder().source(wat).cache_dir(None).build()
        digests.append(hashlib.sha256(wasmtime.wat2wasm(wat)).hexdigest())
    gc.collect()
    handle = get_engine(ws.OptimizationLevel.SPEED, False, True)
    alive = [d for d in digests if d in handle._modules]
    assert len(alive) <= 16


def test_a_module_with_a_snapshot_template_can_leave_the_recent_modules() -> None:
    """A module whose memory image was read for a snapshot (its template instance) is
    released when newer modules push it out of the recent ones, while the engine's lock is
    held: its template goes with it, without deadlocking that thread (it did)."""
    handle = get_engine(ws.OptimizationLevel.SPEED, False, True)
    templates: dict[Any, Any] = handle._templates
    wat = f'(module (memory (export "memory") 1) (func (export "t{time.time_ns()}")))'.encode()
    compiled = handle.load(bytes(wasmtime.wat2wasm(wat)), None)
    before = len(templates)
    handle.template_memory(compiled)
    assert len(templates) == before + 1
    del compiled
    for i in range(20):  # more than the recent modules kept
        other = f'(module (func (export "g{i}_{time.time_ns()}") (result i32) i32.const 1))'
        handle.load(bytes(wasmtime.wat2wasm(other.encode())), None)
    gc.collect()
    assert len(templates) <= before


CONCURRENT_SCRIPT = """
import json, sys, time
import wasm_sandbox as ws
body = "local.get 0 " + " ".join(f"i32.const {i} i32.add i32.const 3 i32.mul" for i in range(60))
wat = "(module " + " ".join(
    f'(func (export "f{i}") (param i32) (result i32) {body})' for i in range(int(sys.argv[2]))
) + ")"
started = time.monotonic()
sandbox = ws.WasmSandbox.builder().source(wat.encode()).cache_dir(sys.argv[1]).build()
print(json.dumps({"from_cache": sandbox.from_cache, "seconds": time.monotonic() - started}))
"""


def test_concurrent_builders_of_one_module_compile_it_once(tmp_path: Path) -> None:
    """Two processes building the same (slow to compile) module at once: the second waits
    for the first's artifact instead of compiling it again (a runtime takes a minute and
    gigabytes of RAM to compile)."""
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SCRIPT, str(cache), "6000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["from_cache"] for r in results) == [False, True]
    assert len(artifacts(cache)) == 1


# --- the first-compile progress callback -------------------------------------------------------


def _unseen_module(functions: int) -> bytes:
    """A module of ``functions`` functions that no cache has seen, so it is really compiled
    (4,000 take about a second here: the progress thread reports "compiling" every 0.25 s)."""
    body = "".join(f'(func (export "f{i}") (result i32) i32.const {i})' for i in range(functions))
    return f'(module {body} (func (export "t{time.time_ns()}")))'.encode()


def _build_with_progress(functions: int, progress: Callable[[str, float], None]) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(_unseen_module(functions)).progress(progress)
    return builder.cache_dir(None).build()


def test_a_raising_progress_callback_is_logged_once_and_dropped_for_the_build(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A progress callback that raises at its first "compiling" report is called once in
    that build (no later "compiling", no "compiled"), logged once with its traceback; the
    module is built and works; the next build calls it again."""
    phases: list[str] = []

    def broken(phase: str, seconds: float) -> None:
        phases.append(phase)
        raise RuntimeError("progress bar bug")

    with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        sandbox = _build_with_progress(4000, broken)
    assert sandbox.call("f7") == 7
    assert phases == ["compiling"]
    [record] = [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
    assert record.levelno == logging.ERROR
    assert "progress" in record.getMessage() and "this build" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError

    assert _build_with_progress(10, broken).call("f3") == 3
    assert len(phases) == 2


def test_keyboard_interrupt_from_progress_reaches_the_builder_but_not_from_its_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On the building thread ("compiled"), a KeyboardInterrupt from the callback propagates
    out of build(). On the progress thread ("compiling") nobody could receive it: it is
    logged and the callback dropped like any error, and the build completes."""

    def interrupt_when_compiled(phase: str, seconds: float) -> None:
        if phase == "compiled":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _build_with_progress(10, interrupt_when_compiled)

    phases: list[str] = []

    def interrupt(phase: str, seconds: float) -> None:
        phases.append(phase)
        raise KeyboardInterrupt

    with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        sandbox = _build_with_progress(4000, interrupt)
    assert sandbox.call("f7") == 7
    assert phases == ["compiling"]
    [record] = [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
    assert record.exc_info is not None and record.exc_info[0] is KeyboardInterrupt

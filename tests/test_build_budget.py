"""The build budget of a sandbox that builds modules it does not trust: the size and
function caps refuse a module before it is compiled, and a compile in a child process is
killed at its time limit or fails at its memory limit with ``BuildLimitExceeded``, leaving
nothing in the compiled-module cache. A normal module builds under the budget and is cached."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import wasmtime

import wasm_sandbox as ws
from tests.conftest import script_sandbox

SRC = Path(__file__).resolve().parents[1] / "src"
CALCULATOR = b"""(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"""


def calculator(tag: str) -> bytes:
    """CALCULATOR made unique by ``tag``: no earlier build of this process has it in memory."""
    return CALCULATOR[:-1] + f' (func (export "{tag}")))'.encode()


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + _uleb(len(payload)) + payload


def many_functions(count: int) -> bytes:
    """A valid module defining ``count`` empty functions (the first exported as "f"):
    4 bytes per function, 400 KB for 100,000, and about 15 s of compiling with fuel."""
    return (
        b"\0asm\x01\0\0\0"
        + _section(1, b"\x01\x60\x00\x00")  # one type: () -> ()
        + _section(3, _uleb(count) + b"\x00" * count)
        + _section(7, b"\x01\x01f\x00\x00")
        + _section(10, _uleb(count) + b"\x02\x00\x0b" * count)  # each body: no locals, end
    )


def big_data(megabytes: int) -> bytes:
    """A valid module with one memory and a passive data segment of ``megabytes`` MiB, which
    wasmtime copies several times while compiling."""
    size = megabytes << 20
    segment = b"\x01" + _uleb(size) + bytes(size)
    return b"\0asm\x01\0\0\0" + _section(5, b"\x01\x00\x01") + _section(11, b"\x01" + segment)


def _build(source: bytes, cache: Path | None, **options: object) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(source).cache_dir(cache)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def _leftovers(cache: Path) -> list[str]:
    """What a build left in the cache besides lock files."""
    return sorted(p.name for p in cache.iterdir() if p.suffix != ".lock") if cache.exists() else []


def _compiling_children(parent: int | None = None) -> list[int]:
    """The compile processes of ``parent`` (default: this process) that still exist."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"child_main" in cmdline:
            found.append(int(entry.name))
    return found


# --- caps checked by our parser, before compiling --------------------------------------------


def test_a_module_with_100000_functions_is_refused_fast_by_the_function_cap(
    tmp_path: Path,
) -> None:
    """A module defining 100,000 functions is refused by max_functions from our parser, in well
    under the 15 s its compile would take, with the exact error and no file left in the cache."""
    started = time.monotonic()
    with pytest.raises(ws.BuildLimitExceeded) as info:
        _build(many_functions(100_000), tmp_path, max_functions=20_000)
    assert time.monotonic() - started < 2  # about 0.2 s: parsed, never compiled (15 s)
    error = info.value
    assert (error.limit, error.attempted, error.cap) == ("max_functions", 100_000, 20_000)
    assert str(error) == (
        "Build limit exceeded: max_functions (the module defines 100000 functions, limit 20000)"
    )
    assert _leftovers(tmp_path) == []


def test_a_module_over_the_size_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """Not even read as WebAssembly: bytes that are no module are refused for their size."""
    junk = b"\0asm\x01\0\0\0" + b"\xff" * (2 << 20)
    with pytest.raises(ws.BuildLimitExceeded, match=r"max_module_size \(the module is 2097160"):
        _build(junk, tmp_path, max_module_size="1MiB")
    with pytest.raises(ws.InvalidModule):
        _build(junk, tmp_path, max_module_size="4MiB")  # under the cap: parsed, and invalid


def test_the_caps_hold_for_a_module_already_compiled(tmp_path: Path) -> None:
    """A cache hit (in memory or on disk) is refused by the caps like a first build."""
    assert _build(CALCULATOR, tmp_path).call("add", 2, 3) == 5
    with pytest.raises(ws.BuildLimitExceeded, match="max_functions"):
        _build(CALCULATOR, tmp_path, max_functions=0)
    size = len(wasmtime.wat2wasm(CALCULATOR))  # the cap counts the module, not its WAT text
    with pytest.raises(ws.BuildLimitExceeded, match="max_module_size"):
        _build(CALCULATOR, tmp_path, max_module_size=size - 1)
    assert _build(CALCULATOR, tmp_path, max_module_size=size).call("add", 1, 2) == 3


# --- compiling in a child process ------------------------------------------------------------


def test_a_compile_past_build_timeout_is_killed_with_a_clear_error_and_no_artifact(
    tmp_path: Path,
) -> None:
    """A compile running past build_timeout is killed at the limit: BuildLimitExceeded naming the
    time spent, no artifact or temporary file, no compiler process left."""
    started = time.monotonic()
    with pytest.raises(ws.BuildLimitExceeded) as info:
        _build(many_functions(100_000), tmp_path, build_timeout=timedelta(seconds=1))
    spent = time.monotonic() - started
    assert 1 <= spent < 4, spent  # killed at the limit, not after the 15 s compile
    error = info.value
    assert error.limit == "build_timeout" and error.cap == 1.0
    assert error.attempted is not None and 1 <= error.attempted < 4
    assert str(error).startswith("Build limit exceeded: build_timeout (compiling was stopped after")
    assert _leftovers(tmp_path) == []  # no artifact, no checksum, no partial temporary file
    assert _compiling_children() == []  # the compiler is gone, not left running


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def test_the_compiling_child_dies_with_the_building_process(tmp_path: Path) -> None:
    """A builder killed outright (SIGKILL: no finally runs) takes its compile with it."""
    script = (
        "import sys, wasm_sandbox as ws\n"
        "ws.WasmSandbox.builder().source(sys.stdin.buffer.read()).cache_dir(sys.argv[1])"
        ".build_timeout(120).build()\n"
    )
    builder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
    )
    assert builder.stdin is not None
    builder.stdin.write(many_functions(100_000))
    builder.stdin.close()
    deadline = time.monotonic() + 30
    # compiling: the child has read the whole module and wasmtime's compiler threads run
    while not (children := _compiling_children(builder.pid)) or _threads(children[0]) < 2:
        assert builder.poll() is None and time.monotonic() < deadline, "no compile started"
        time.sleep(0.05)
    builder.kill()
    builder.wait()
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, "the compile outlived its builder"
        time.sleep(0.05)
    # no artifact was published (the builder's empty temporary file may stay: nothing ran
    # its clean-up, as after any SIGKILL)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [
        p.name for p in tmp_path.glob("*.lock")
    ]


def test_a_compile_past_build_memory_limit_fails_with_a_clear_error(tmp_path: Path) -> None:
    """A compile needing more than build_memory_limit fails with BuildLimitExceeded giving the cap,
    and leaves nothing in the cache."""
    with pytest.raises(ws.BuildLimitExceeded) as info:
        _build(big_data(64), tmp_path, build_memory_limit="256MiB")
    error = info.value
    assert (error.limit, error.attempted, error.cap) == ("build_memory_limit", None, 256 << 20)
    assert str(error) == (
        "Build limit exceeded: build_memory_limit (compiling needed more than 268435456 bytes "
        "of memory)"
    )
    assert _leftovers(tmp_path) == []


def test_a_normal_module_builds_under_the_budget_and_its_artifact_is_cached(
    tmp_path: Path,
) -> None:
    """A module within every cap builds in the child process, runs, and leaves exactly its artifact
    and checksum, which a new process then loads from the cache."""
    budget = {
        "max_module_size": "64KiB",
        "max_functions": 10,
        "build_timeout": 60,
        "build_memory_limit": "1GiB",
    }
    module = calculator("normal_build")
    sandbox = _build(module, tmp_path, **budget)
    assert not sandbox.from_cache
    assert sandbox.call("add", 40, 2) == 42
    names = _leftovers(tmp_path)
    assert [Path(n).suffix for n in names] == [
        ".cwasm",
        ".info",
        ".sha256",
        ".stamp",
    ]  # no temporary file left
    script = (
        "import sys, wasm_sandbox as ws\n"
        "b = ws.WasmSandbox.builder().source(sys.stdin.buffer.read()).cache_dir(sys.argv[1])\n"
        "s = b.build_timeout(60).build()\n"
        "print(s.from_cache, s.call('add', 1, 2))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        input=module,
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        timeout=60,
        check=True,
    )
    assert loaded.stdout == b"True 3\n"  # a new process loads the child's artifact


def test_without_a_cache_the_child_compile_leaves_no_file_anywhere(tmp_path: Path) -> None:
    """With no cache directory, the child's compile leaves no temporary build directory behind."""
    temp = Path(tempfile.gettempdir())
    before = {p.name for p in temp.glob("wasm-sandbox-build-*")}
    sandbox = _build(calculator("no_cache"), None, build_timeout=60)
    assert sandbox.call("add", 1, 1) == 2
    assert {p.name for p in temp.glob("wasm-sandbox-build-*")} == before


def test_an_invalid_module_compiled_in_a_child_is_an_invalid_module(tmp_path: Path) -> None:
    """Our parser accepts it, wasmtime's validation does not: the child's verdict arrives as
    InvalidModule with the message an in-process build gives."""
    mistyped = b'(module (func (export "f") (result i32) (i64.const 0)))'
    with pytest.raises(ws.InvalidModule, match="failed to compile") as info:
        _build(mistyped, tmp_path, build_timeout=60, build_memory_limit="1GiB")
    with pytest.raises(ws.InvalidModule) as in_process:
        _build(mistyped, tmp_path)
    assert str(info.value) == str(in_process.value)
    assert _leftovers(tmp_path) == []


def test_the_script_runtimes_we_ship_are_exempt_from_the_budget() -> None:
    """The budget bounds the module the user gives; QuickJS (1.5 MB, 1,601 functions) is
    ours, and the script itself is never compiled to machine code."""
    tool = script_sandbox(
        "function add(a, b) { return a + b }",
        "javascript",
        max_module_size="64KiB",
        max_functions=10,
    )
    assert tool.call("add", 2, 3) == 5


# --- options -----------------------------------------------------------------------------


def test_defaults_are_generous_and_compile_in_process() -> None:
    """By default the size and function caps are 1 GiB and 1,000,000, there is no time or memory
    limit, and compiling stays in-process."""
    config = ws.WasmSandbox.builder().source(CALCULATOR).config()
    assert config.max_module_size == 1 << 30
    assert config.max_functions == 1_000_000
    assert config.build_timeout is None and config.build_memory_limit is None
    assert not config.build_budget.in_child


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("build_memory_limit", "100MiB", "build_memory_limit must be >= 268435456"),
        ("build_timeout", 0, "build_timeout must be > 0"),
        ("max_module_size", 0, "max_module_size must be >= 1"),
        ("max_functions", -1, "max_functions must be >= 0"),
        ("build_timeout", "soon", "build_timeout: invalid duration 'soon'"),
        ("max_module_size", "big", "max_module_size: invalid size 'big'"),
    ],
    ids=["small-memory", "zero-timeout", "zero-size", "negative-count", "bad-duration", "bad-size"],
)
def test_bad_budget_values_are_refused_naming_the_option(
    option: str, value: object, message: str
) -> None:
    """Each budget option refuses a value out of range or a string it cannot parse, naming the
    option."""
    builder = getattr(ws.WasmSandbox.builder().source(CALCULATOR), option)
    with pytest.raises(ws.ConfigurationError, match=message):
        builder(value).config()


def test_budget_values_accept_units() -> None:
    """Budget options take size, count and duration strings (4MiB, 20k, 1.5s, 1GiB); with a
    time and a memory limit the compile runs in a child."""
    builder = ws.WasmSandbox.builder().source(CALCULATOR)
    config = (
        builder.max_module_size("4MiB")
        .max_functions("20k")
        .build_timeout("1.5s")
        .build_memory_limit("1GiB")
        .config()
    )
    assert (config.max_module_size, config.max_functions) == (4 << 20, 20_000)
    assert config.build_timeout == timedelta(seconds=1.5)
    assert config.build_memory_limit == 1 << 30 and config.build_budget.in_child

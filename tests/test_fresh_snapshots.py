"""Fresh Python and JavaScript executions start from a snapshot of the booted runtime, and an
instance may be put back to it for the next one (``_runtime._snapshot``): nothing of one
execution may reach the next, and each draws its own randomness and reads the clock.

Real guests on the real runtimes. A few checks look at the sandbox's spare instances from the
host (through internals) to show that a put-back instance holds exactly the snapshot's state.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wasm_sandbox as ws
from wasm_sandbox._execution._execute import Execution
from wasm_sandbox._invocation import sandbox_core
from wasm_sandbox._runtime._snapshot import InstanceState


def _python(code: str, **options: object) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(code).language("python").max_fuel(None)
    builder.memory_limit(512 << 20)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def _javascript(code: str) -> ws.WasmSandbox:
    return ws.WasmSandbox.builder().source(code).language("javascript").build()


def _execution(sandbox: ws.WasmSandbox) -> Execution:
    execution = sandbox_core(sandbox)._execution
    assert isinstance(execution, Execution)
    return execution


def _lines(result: ws.ExecutionResult) -> list[str]:
    return result.stdout.decode().split()


@pytest.fixture
def probe() -> Iterator[ws.WasmSandbox]:
    """A Python sandbox whose run() reports, then changes, what a leak would show."""
    code = """
import builtins, json, os, sys
seen = {
    "global": "leak" in globals(),
    "builtin": hasattr(builtins, "leak"),
    "module": "leaky_module" in sys.modules,
    "patched": json.dumps is not json.JSONEncoder,
    "path": "/leak" in sys.path,
    "env": os.environ.get("LEAK"),
    "file": os.path.exists("/tmp/leak.txt"),
}
print(json.dumps(seen, sort_keys=True))
leak = 1
builtins.leak = 1
sys.modules["leaky_module"] = sys
sys.path.append("/leak")
os.environ["LEAK"] = "1"
json.dumps = json.JSONEncoder
open("/tmp/leak.txt", "w").write("x")
"""
    sandbox = _python(code, mount=ws.Mount.memory("/tmp"))
    yield sandbox
    sandbox.close()


def test_nothing_of_one_python_execution_reaches_the_next(probe: ws.WasmSandbox) -> None:
    clean = {"builtin": False, "env": None, "file": False, "global": False, "module": False,
             "patched": True, "path": False}  # fmt: skip
    for _ in range(5):  # new instances and put-back ones alike
        result = probe.run()
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == clean


def test_a_put_back_instance_holds_exactly_the_snapshot(probe: ws.WasmSandbox) -> None:
    """After an execution that changed globals, modules, files and the heap, the spare
    instance's memory, globals and in-memory files are the start snapshot's, byte for byte."""
    probe.run()
    spares = _execution(probe)._spares
    assert len(spares) == 1
    start = sandbox_core(probe).plan.start
    assert start is not None
    state = spares[0].capture()
    assert _memory_of(probe, state.memory) == _memory_of(probe, start.memory)
    assert state.memory.globals == start.memory.globals
    assert state.host == start.host


def _memory_of(sandbox: ws.WasmSandbox, state: InstanceState) -> bytes:
    """The whole memory ``state`` stands for: the module's image with its runs written over."""
    plan = sandbox_core(sandbox).plan
    base, base_size = plan.handle.template_memory(plan.compiled)
    size = state.pages * 65536
    memory = bytearray(ctypes.string_at(base, min(size, base_size)).ljust(size, b"\0"))
    for offset, data in state.runs:
        memory[offset : offset + len(data)] = data
    return bytes(memory)


def test_the_heap_of_one_execution_is_gone_from_the_next() -> None:
    """A secret left in freed heap memory is not in the instance the next execution gets."""
    sandbox = _python("s = ('SECRET-' + 'x' * 10) * 200000\nprint(len(s))\ndel s\n")
    assert sandbox.run().exit_code == 0
    spares = _execution(sandbox)._spares
    assert spares, "the instance was not put back"
    memory = spares[0].read_memory(0, spares[0].memory_bytes()) or b""
    assert memory and b"SECRET-xxxxxxxxxx" not in memory
    sandbox.close()


def test_descriptors_left_open_never_reach_the_next_execution(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("hello")
    code = (
        "import os, sys\n"
        "if sys.argv[1:] == ['open']:\n"
        "    print(os.open('/data/data.txt', os.O_RDONLY))\n"
        "else:\n"
        "    fd = int(sys.argv[1])\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "        print('open')\n"
        "    except OSError:\n"
        "        print('closed')\n"
    )
    sandbox = _python(code, mount=ws.Mount.directory(tmp_path, "/data"))
    fd = _lines(sandbox.run(args=["open"]))[0]
    assert _lines(sandbox.run(args=[fd])) == ["closed"]
    sandbox.close()


def test_an_execution_that_grew_memory_is_not_reused() -> None:
    sandbox = _python("import sys\nif sys.argv[1:]: b = bytearray(64 << 20)\nprint('ok')\n")
    baseline = sandbox.run().resource_report.peak_memory_bytes
    grown = sandbox.run(args=["grow"]).resource_report.peak_memory_bytes
    assert grown > baseline + (32 << 20)
    assert sandbox.run().resource_report.peak_memory_bytes == baseline
    sandbox.close()


def test_each_python_execution_draws_its_own_randomness_and_reads_the_clock() -> None:
    code = (
        "import os, random, secrets, time, uuid\n"
        "print(random.random(), random.getrandbits(64), os.urandom(8).hex(),\n"
        "      uuid.uuid4(), secrets.token_hex(8), time.time())\n"
    )
    sandbox = _python(code)
    rows = []
    for _ in range(6):
        rows.append(_lines(sandbox.run()))
        time.sleep(0.01)
    for column in range(5):
        values = [row[column] for row in rows]
        assert len(set(values)) == len(values), f"column {column} repeats: {values}"
    clock = [float(row[5]) for row in rows]
    assert clock == sorted(clock) and clock[-1] - clock[0] >= 0.04
    assert abs(clock[-1] - time.time()) < 60
    sandbox.close()


def test_each_javascript_execution_draws_its_own_math_random() -> None:
    sandbox = _javascript(
        "function draw() { return [Math.random(), Math.random(), Date.now()]; }\n"
        "function both() { return typeof crypto === 'object' && crypto.getRandomValues\n"
        "  ? Array.from(crypto.getRandomValues(new Uint32Array(2))) : null; }\n"
    )
    draws = [sandbox.call("draw") for _ in range(6)]
    firsts = [d[0] for d in draws]
    assert len(set(firsts)) == len(firsts)
    assert all(0 <= d[0] < 1 and d[0] != d[1] for d in draws)
    assert abs(draws[-1][2] / 1000 - time.time()) < 60
    words = [sandbox.call("both") for _ in range(3)]
    if words[0] is not None:  # QuickJS builds with crypto.getRandomValues
        assert len({tuple(w) for w in words}) == 3
    sandbox.close()


def test_nothing_of_one_javascript_call_reaches_the_next() -> None:
    sandbox = _javascript(
        "var count = (globalThis.count || 0) + 1;\n"
        "function bump() { globalThis.extra = (globalThis.extra || 0) + 1;\n"
        "  Array.prototype.leak = 1; return [count, globalThis.extra, [].leak ?? null]; }\n"
    )
    for _ in range(4):
        assert sandbox.call("bump") == [1, 1, 1]
    sandbox.close()


def test_the_environment_travels_with_each_run() -> None:
    sandbox = _python(
        "import os\nprint(os.environ.get('A'), os.environ.get('B'))\n", env={"A": "1"}
    )
    assert _lines(sandbox.run()) == ["1", "None"]
    assert _lines(sandbox.run(env={"B": "2"})) == ["None", "2"]
    assert _lines(sandbox.run()) == ["1", "None"]
    sandbox.close()


def test_limits_hold_on_instances_put_back() -> None:
    """After clean runs (spare instances), a run over the fuel or memory cap still stops, and
    the next one is clean."""
    code = "import sys\nif sys.argv[1:] == ['spin']:\n    while True: pass\n" + (
        "if sys.argv[1:] == ['grow']:\n    b = bytearray(200 << 20)\nprint('ok')\n"
    )
    sandbox = (
        ws.WasmSandbox.builder().source(code).language("python")
        .max_fuel(2_000_000_000).memory_limit(128 << 20).build()
    )  # fmt: skip
    for _ in range(3):
        assert _lines(sandbox.run()) == ["ok"]
    with pytest.raises(ws.FuelExhausted):
        sandbox.run(args=["spin"])
    assert _lines(sandbox.run()) == ["ok"]
    with pytest.raises(ws.MemoryLimitExceeded):
        sandbox.run(args=["grow"])
    assert _lines(sandbox.run()) == ["ok"]
    sandbox.close()


def test_a_guest_error_leaves_the_next_call_clean() -> None:
    sandbox = _python("state = []\ndef f(fail):\n    state.append(1)\n"
                      "    if fail: raise ValueError('no')\n    return len(state)\n")  # fmt: skip
    with pytest.raises(ws.GuestError, match="no"):
        sandbox.call("f", True)
    assert [sandbox.call("f", False) for _ in range(3)] == [1, 1, 1]
    sandbox.close()


def test_concurrent_fresh_executions_stay_isolated() -> None:
    sandbox = _python("import sys\nx = sys.argv[1]\nprint(x * 3)\n")

    def one(i: int) -> str:
        return sandbox.run(args=[str(i)]).stdout.decode().strip()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, range(40)))
    assert answers == [str(i) * 3 for i in range(40)]
    assert len(_execution(sandbox)._spares) <= 2
    sandbox.close()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_spare_instances_are_released_with_the_sandbox() -> None:
    before = _open_descriptors()
    for _ in range(3):
        sandbox = _python("print('hi')", mount=ws.Mount.memory("/tmp"))
        sandbox.run()
        sandbox.run()
        sandbox.close()
    assert _open_descriptors() <= before
    sandbox = _python("print('hi')", mount=ws.Mount.memory("/tmp"))
    sandbox.run()
    del sandbox
    gc.collect()
    assert _open_descriptors() <= before


def test_the_environment_travels_with_each_javascript_run() -> None:
    sandbox = (
        ws.WasmSandbox.builder()
        .source("import('qjs:std').then((std) => console.log(String(std.getenv('A'))))")
        .language("javascript")
        .env({"A": "configured"})
        .build()
    )
    assert _lines(sandbox.run()) == ["configured"]
    assert _lines(sandbox.run(env={"A": "given"})) == ["given"]
    assert _lines(sandbox.run(env={})) == ["undefined"]
    assert _lines(sandbox.run()) == ["configured"]
    sandbox.close()


def test_a_new_process_reads_the_boot_state_from_disk(tmp_path: Path) -> None:
    """The first process that builds a sandbox boots the runtime and keeps its state on disk
    (``<cache>/boots``); the next process reads it instead of booting."""
    marker = os.urandom(8).hex()  # an environment of its own: a key no other test made
    code = (
        "import logging, sys\n"
        "import wasm_sandbox as ws\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format='%(message)s')\n"
        f"sandbox = ws.WasmSandbox.builder().source('print(1)').language('python')"
        f".env({{'MARK': '{marker}'}}).build()\n"
        "print(sandbox.run().stdout.decode().strip())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "boot state made" in outputs[0] and outputs[0].rstrip().endswith("1")
    assert "boot state made" not in outputs[1] and "boot state read" in outputs[1]
    assert outputs[1].rstrip().endswith("1")

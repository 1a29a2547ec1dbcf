"""``run_python`` / ``run_javascript`` / ``WasmSandbox.run_code``: code run as a notebook cell
in a fresh sandboxed interpreter, with a ``CodeResult`` that is never an exception; and
guest values converted to JSON (NaN, numpy, pandas, datetimes, sets), for calls too."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from datetime import timedelta
from pathlib import Path

import pytest

import wasm_sandbox as ws


def test_run_python_returns_output_and_the_last_expression() -> None:
    """stdout, stderr and the value of a trailing expression; no error; a report."""
    result = ws.run_python("import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n6 * 7")
    assert result.ok and result.error is None
    assert (result.stdout, result.stderr, result.result) == ("hello\n", "oops\n", 42)
    assert result.report is not None and result.report.outcome == "ok"
    assert result.report.memory_limit_bytes == 256 * 1024 * 1024
    assert result.report.timeout == timedelta(seconds=30)


def test_no_trailing_expression_is_none() -> None:
    """An assignment or a loop last: the result is None (a ``result`` variable is not read)."""
    assert ws.run_python("result = 5").result is None
    assert ws.run_python("for i in range(3):\n    i").result is None
    assert ws.run_python("").result is None


def test_guest_exception_is_a_result_with_its_traceback() -> None:
    """An exception is an error with type, message and a traceback naming the cell's line;
    what was printed before stays."""
    result = ws.run_python("print('before')\nx = 1\n1 / 0")
    assert not result.ok and result.result is None
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("ZeroDivisionError", "division by zero")
    assert result.error.limit is None
    assert 'File "<cell>", line 3' in result.error.traceback
    assert "<wsbx" not in result.error.traceback  # the driver's own frames are hidden
    assert result.stdout == "before\n"
    assert str(result.error) == "ZeroDivisionError: division by zero"


def test_syntax_error_points_at_the_code() -> None:
    """A syntax error is a SyntaxError result whose traceback shows the line, not the parser's
    own frames."""
    error = ws.run_python("def f(:\n    pass").error
    assert error is not None and error.type == "SyntaxError"
    assert '"<cell>", line 1' in error.traceback and "ast.py" not in error.traceback


def test_exit_status() -> None:
    """``sys.exit(0)`` is success; another status is a SystemExit error."""
    assert ws.run_python("import sys\nprint('x')\nsys.exit(0)").ok
    failed = ws.run_python("import sys\nsys.exit(3)")
    assert failed.error is not None and failed.error.type == "SystemExit"
    assert "status 3" in failed.error.message


def test_limits_are_results_not_exceptions() -> None:
    """A timeout, the memory cap and the fuel budget stop the code: each a result whose error
    names the limit, with the seed's message."""
    slow = ws.run_python("while True:\n    pass", timeout=0.5)
    assert slow.error is not None and slow.error.limit == "timeout"
    assert slow.error.type == "ExecutionTimeout"
    assert slow.report is not None and slow.report.outcome == "ExecutionTimeout"
    big = ws.run_python("x = bytearray(200 * 1024 * 1024)", memory="64MiB")
    assert big.error is not None and big.error.limit == "memory"
    assert big.error.message.startswith("Memory limit exceeded")
    spent = ws.run_python("while True:\n    pass", fuel=20_000_000)
    assert spent.error is not None and spent.error.limit == "fuel"


def test_arguments_in_the_forms_users_type() -> None:
    """``timeout`` as seconds, a timedelta or a string; ``memory`` as bytes or a size string;
    bad values raise at once (a programmer's error, not the code's)."""
    for timeout in (2, 2.0, timedelta(seconds=2), "2s"):
        report = ws.run_python("1", timeout=timeout).report
        assert report is not None and report.timeout == timedelta(seconds=2)
    for memory in (128 * 1024 * 1024, "128MiB"):
        report = ws.run_python("1", memory=memory).report
        assert report is not None and report.memory_limit_bytes == 128 * 1024 * 1024
    with pytest.raises(ws.ConfigurationError):
        ws.run_python("1", timeout=-1)
    with pytest.raises(ws.ConfigurationError):
        ws.run_python("1", memory="lots")
    with pytest.raises(TypeError):
        ws.run_python(b"1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ws.run_python("1", mounts="/tmp")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ws.run_python("1", network=[1])  # type: ignore[list-item]


def test_stdin_env_and_mounts(tmp_path: Path) -> None:
    """``stdin`` feeds input(), ``env`` os.environ; a mapping mounts a host directory read-only
    and a writable ``Mount`` lets the code write a file the host reads back."""
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import os, csv\n"
        "name = input()\n"
        "rows = list(csv.DictReader(open('/data/data.csv')))\n"
        "open('/out/answer.txt', 'w').write(name + os.environ['GREETING'])\n"
        "try:\n"
        "    open('/data/new.txt', 'w')\n"
        "    writable = True\n"
        "except OSError:\n"
        "    writable = False\n"
        "{'rows': rows, 'writable': writable}"
    )
    result = ws.run_python(
        code,
        stdin="ada\n",
        env={"GREETING": "!"},
        mounts=[
            ws.Mount.directory(tmp_path, "/data"),
            ws.Mount.directory(out, "/out", read_only=False),
        ],
    )
    assert result.error is None, result.error
    assert result.result == {
        "rows": [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}],
        "writable": False,
    }
    assert (out / "answer.txt").read_text() == "ada!"
    mapped = ws.run_python("open('/in/data.csv').read()", mounts={"/in": str(tmp_path)})
    assert mapped.result == "a,b\n1,2\n3,4\n"


def test_network_is_denied_unless_allowed() -> None:
    """No network by default; an allow pattern opens exactly that endpoint (a loopback server)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        code = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
            "s.close()\n"
            "'connected'"
        )
        denied = ws.run_python(code)
        assert denied.error is not None and denied.error.type in ("PermissionError", "OSError")
        allowed = ws.run_python(code, network=f"127.0.0.1:{port}")
        assert allowed.error is None and allowed.result == "connected"
        also = ws.run_python(code, network=ws.NetworkPolicy(allow=(f"127.0.0.1:{port}",)))
        assert also.result == "connected"
    finally:
        server.close()


def test_values_cross_as_json() -> None:
    """The documented table: NaN and infinities as None, sets as sorted lists, tuples as
    lists, non-string keys as strings, datetimes as ISO text, timedeltas as seconds, bytes as
    bytes, Decimal as float, anything else as its repr."""
    code = (
        "import datetime, decimal, math, uuid\n"
        "{'nan': math.nan, 'inf': [math.inf, -math.inf], 'set': {3, 1, 2}, 'tuple': (1, 2),\n"
        " 1: 'int key', 'when': datetime.datetime(2024, 5, 6, 7, 8, 9),\n"
        " 'day': datetime.date(2024, 1, 2), 'span': datetime.timedelta(minutes=2),\n"
        " 'raw': b'\\x00\\xff', 'dec': decimal.Decimal('1.5'), 'obj': object.__new__(object)}"
    )
    value = ws.run_python(code).result
    assert value["nan"] is None and value["inf"] == [None, None]
    assert value["set"] == [1, 2, 3] and value["tuple"] == [1, 2]
    assert value["1"] == "int key"
    assert value["when"] == "2024-05-06T07:08:09" and value["day"] == "2024-01-02"
    assert value["span"] == 120.0 and value["raw"] == b"\x00\xff" and value["dec"] == 1.5
    assert value["obj"].startswith("<object object at")


def test_numpy_and_pandas_values() -> None:
    """numpy scalars and arrays as numbers and lists; a DataFrame as row records, a Series as
    a dict, timestamps as ISO text and missing values as None."""
    code = (
        "import numpy as np, pandas as pd\n"
        "df = pd.DataFrame({'a': [1, 2], 'b': [0.5, np.nan],\n"
        "                   't': pd.to_datetime(['2024-01-01', None])})\n"
        "{'df': df, 'series': df['a'] * 2, 'array': np.arange(6).reshape(2, 3),\n"
        " 'f32': np.float32(1.5), 'i64': np.int64(7), 'bool': np.bool_(True),\n"
        " 'mean': df['b'].mean(), 'dates': np.array(['2024-03-04'], dtype='datetime64[ns]')}"
    )
    result = ws.run_python(code, timeout=120)
    assert result.error is None, result.error
    value = result.result
    assert value["df"] == [
        {"a": 1, "b": 0.5, "t": "2024-01-01T00:00:00"},
        {"a": 2, "b": None, "t": None},
    ]
    assert value["series"] == {"0": 2, "1": 4}
    assert value["array"] == [[0, 1, 2], [3, 4, 5]]
    assert (value["f32"], value["i64"], value["bool"], value["mean"]) == (1.5, 7, True, 0.5)
    assert value["dates"] == ["2024-03-04T00:00:00"]


def test_call_results_convert_too() -> None:
    """``call()`` returns NaN as None and numpy/pandas values as JSON values (strictly: an
    object with no JSON form is still a GuestError)."""
    source = (
        "import math\n"
        "def stats(xs):\n"
        "    import numpy as np\n"
        "    a = np.array(xs, dtype=float)\n"
        "    return {'mean': a.mean(), 'all': a, 'nan': math.nan}\n"
        "def opaque():\n"
        "    return object()\n"
    )
    sandbox = ws.WasmSandbox.builder().language("python").source(source).build()
    assert sandbox.call("stats", [1, 2, 3]) == {"mean": 2.0, "all": [1.0, 2.0, 3.0], "nan": None}
    with pytest.raises(ws.GuestError, match="cannot be returned to the host"):
        sandbox.call("opaque")


def test_call_with_detailed_monitoring_takes_keywords_and_keeps_output() -> None:
    """Keyword arguments reach the function; the guest's output is in the result."""
    source = "def greet(name, *, punctuation='.'):\n    print('greeting', name)\n    return name + punctuation\n"
    sandbox = ws.WasmSandbox.builder().language("python").source(source).build()
    monitored = sandbox.call_with_detailed_monitoring("greet", "ada", punctuation="!")
    assert monitored.value == "ada!" and monitored.stdout == b"greeting ada\n"


def test_run_code_on_a_built_sandbox_reuses_its_configuration_and_source() -> None:
    """A sandbox built once runs many cells, each in a fresh interpreter, after its source."""
    sandbox = (
        ws.WasmSandbox.builder()
        .language("python")
        .source("def double(x):\n    return 2 * x\n")
        .memory_limit("128MiB")
        .build()
    )
    assert sandbox.run_code("double(21)").result == 42
    assert sandbox.run_code("counter = 1\ncounter").result == 1
    assert sandbox.run_code("'counter' in globals()").result is False  # fresh every time


def test_run_code_after_preinitialize() -> None:
    """A cell starts from the preinitialised state: setup's names are there."""
    sandbox = (
        ws.WasmSandbox.builder()
        .language("python")
        .source("")
        .preinitialize("import json\nTABLE = {'x': 1}")
        .build()
    )
    assert sandbox.run_code("json.dumps(TABLE)").result == '{"x": 1}'
    loaded = (
        ws.WasmSandbox.builder()
        .language("python")
        .source("BASE = 10\ndef add(x):\n    return BASE + x\n")
        .preinitialize()
        .build()
    )
    assert loaded.run_code("add(5)").result == 15


def test_run_code_refuses_a_webassembly_module() -> None:
    """run_code is for Python and JavaScript sandboxes."""
    sandbox = ws.WasmSandbox.builder().source(b"(module)").build()
    with pytest.raises(ws.ConfigurationError, match="run_code"):
        sandbox.run_code("1")


CAP = 128 * 2**20  # a memory cap a 10**9-byte allocation fails on at once (Session.run_code)


@pytest.mark.parametrize(
    ("language", "define", "use"),
    [
        ("python", "x = 41", "print('hi')\nx + 1"),
        ("javascript", "let x = 41", "console.log('hi'); x + 1"),
    ],
    ids=["python", "javascript"],
)
def test_session_run_code_keeps_globals_and_returns_the_last_expression(
    language: str, define: str, use: str
) -> None:
    """A cell in a session sees what earlier cells defined (JavaScript's top-level ``let``
    too) and answers like ``run_code``: output and the last expression's value."""
    with ws.WasmSandbox.builder().language(language).source("").build().session() as session:
        assert session.run_code(define).result is None
        result = session.run_code(use)
    assert (result.ok, result.stdout, result.result) == (True, "hi\n", 42)
    assert result.report is not None


def test_session_run_code_errors_are_results_and_a_limit_restores() -> None:
    """An exception, a syntax error, an exit and a limit are the result's ``error``, never
    raised; after the limit and the exit the session is back where it was, still open."""
    sandbox = ws.WasmSandbox.builder().language("python").source("").memory_limit(CAP).build()
    with sandbox.session() as session:
        session.run_code("rows = [1, 2]")
        failed = session.run_code("print('before')\nrows.append(3)\n1 / 0")
        assert failed.error is not None and failed.error.type == "ZeroDivisionError"
        assert failed.stdout == "before\n" and 'File "<cell>", line 3' in failed.error.traceback
        syntax = session.run_code("def f(:").error
        assert syntax is not None and syntax.type == "SyntaxError"
        hog = session.run_code("rows.append(4)\nhog = bytearray(10**9)")
        assert hog.error is not None and hog.error.limit == "memory"
        exited = session.run_code("rows.append(5)\nimport sys\nsys.exit(3)")
        assert exited.error is not None and exited.error.type == "SystemExit"
        assert session.run_code("rows").result == [1, 2, 3]  # the exception's effect stays
        assert (session.restores, session.closed) == (2, False)


def test_async_session_run_code() -> None:
    """``AsyncSession.run_code`` is the coroutine twin."""

    async def main() -> list[ws.CodeResult]:
        sandbox = await ws.WasmSandbox.builder().language("python").source("").build_async()
        async with await sandbox.session() as session:
            return [await session.run_code("n = 20"), await session.run_code("n * 2 + 2")]

    assert [r.result for r in asyncio.run(main())] == [None, 42]


def test_run_javascript() -> None:
    """JavaScript: console output, the completion value, a thrown error, a promise awaited,
    timers run, and values without a JSON form converted."""
    result = ws.run_javascript("console.log('hi'); [1, 2].map((x) => x * 10)")
    assert (result.stdout, result.result, result.error) == ("hi\n", [10, 20], None)
    thrown = ws.run_javascript("const x = 1;\nthrow new TypeError('bad ' + x)")
    assert thrown.error is not None and (thrown.error.type, thrown.error.message) == (
        "TypeError",
        "bad 1",
    )
    awaited = ws.run_javascript("(async () => { await null; return 5; })()")
    assert awaited.result == 5
    timed = ws.run_javascript("setTimeout(() => console.log('later'), 1); 'now'")
    assert (timed.stdout, timed.result) == ("later\n", "now")
    loose = ws.run_javascript(
        "[NaN, 2n ** 70n, new Map([[1, 'a']]), new Set([1]), new Date(0), () => 1]"
    )
    assert loose.result == [
        None,
        str(2**70),
        {"1": "a"},
        [1],
        "1970-01-01T00:00:00.000Z",
        "() => 1",
    ]
    slow = ws.run_javascript("while (true) {}", timeout=0.5)
    assert slow.error is not None and slow.error.limit == "timeout"


def test_javascript_call_returns_nan_as_null() -> None:
    """As in Python, NaN in a call's result arrives as None."""
    sandbox = (
        ws.WasmSandbox.builder()
        .language("javascript")
        .source("function f() { return [NaN, 1]; }")
        .build()
    )
    assert sandbox.call("f") == [None, 1]


def test_javascript_run_code_sees_the_sandbox_source() -> None:
    """A JavaScript cell runs after the sandbox's script; a script that throws is the error."""
    sandbox = (
        ws.WasmSandbox.builder()
        .language("javascript")
        .source("function helper(x) { return x * 2; }")
        .build()
    )
    assert sandbox.run_code("helper(21)").result == 42
    broken = (
        ws.WasmSandbox.builder()
        .language("javascript")
        .source("throw new Error('broken script')")
        .build()
    )
    error = broken.run_code("1").error
    assert error is not None and error.message == "broken script"


def test_async_twins() -> None:
    """run_python_async / run_javascript_async / AsyncWasmSandbox.run_code."""

    async def main() -> tuple[ws.CodeResult, ws.CodeResult, list[ws.CodeResult]]:
        py = await ws.run_python_async("sum(range(10))")
        js = await ws.run_javascript_async("'a' + 'b'")
        sandbox = await ws.WasmSandbox.builder().language("python").source("").build_async()
        many = await asyncio.gather(*(sandbox.run_code(f"{i} * 2") for i in range(4)))
        return py, js, list(many)

    py, js, many = asyncio.run(main())
    assert (py.result, js.result) == (45, "ab")
    assert [r.result for r in many] == [0, 2, 4, 6]


def test_to_dict_is_json() -> None:
    """``CodeResult.to_dict()`` is JSON-serialisable, errors and bytes included."""
    for code in ("b'\\x01'", "1/0", "print('x')\n[1.5, None]"):
        data = ws.run_python(code).to_dict()
        text = json.dumps(data, allow_nan=False)
        assert set(json.loads(text)) == {
            "ok", "stdout", "stderr", "result", "error", "report", "stdout_truncated", "stderr_truncated"
        }  # fmt: skip
    assert ws.run_python("b'\\x01'").to_dict()["result"] == {"$bytes": "AQ=="}
    error = ws.run_python("1/0").to_dict()["error"]
    assert error["type"] == "ZeroDivisionError" and error["limit"] is None
    assert math.isclose(ws.run_python("0.5").to_dict()["result"], 0.5)


def test_repeated_configurations_reuse_a_sandbox_and_keep_runs_apart(tmp_path: Path) -> None:
    """run_python keeps the sandboxes of recent configurations: runs stay fresh (no state
    crosses), another configuration gets its own, and a mounted directory replaced since is
    mounted again (not a MountChanged)."""
    assert ws.run_python("secret = 1\nsecret").result == 1
    assert ws.run_python("'secret' in globals()").result is False
    assert ws.run_python("import os\nos.environ.get('A')", env={"A": "1"}).result == "1"
    assert ws.run_python("import os\nos.environ.get('A')", env={"A": "2"}).result == "2"
    assert ws.run_python("import os\nos.environ.get('A')").result is None
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.txt").write_text("first")
    assert ws.run_python("open('/in/x.txt').read()", mounts={"/in": folder}).result == "first"
    (folder / "x.txt").unlink()
    folder.rmdir()
    folder.mkdir()
    (folder / "x.txt").write_text("second")
    assert ws.run_python("open('/in/x.txt').read()", mounts={"/in": folder}).result == "second"

    async def again() -> ws.CodeResult:
        return await ws.run_python_async("open('/in/x.txt').read()", mounts={"/in": folder})

    (folder / "x.txt").unlink()
    folder.rmdir()
    folder.mkdir()
    (folder / "x.txt").write_text("third")
    assert asyncio.run(again()).result == "third"


def test_python_path_lets_the_code_import_a_package(tmp_path: Path) -> None:
    """``python_path``: a directory of pure-Python packages (one path or a list)."""
    package = tmp_path / "pkgs" / "greeter"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def hello(name):\n    return 'hello ' + name\n")
    code = "import greeter\ngreeter.hello('ada')"
    assert ws.run_python(code, python_path=tmp_path / "pkgs").result == "hello ada"
    assert ws.run_python(code, python_path=[str(tmp_path / "pkgs")]).result == "hello ada"
    missing = ws.run_python(code)
    assert missing.error is not None and missing.error.type == "ModuleNotFoundError"
    with pytest.raises(ws.ConfigurationError):
        ws.run_python(code, python_path=tmp_path / "absent")


def test_output_past_the_cap_is_flagged() -> None:
    """What is beyond max_output_bytes is not kept; the result says so (and the report
    counts every byte), on success and when a limit stopped the code."""
    sandbox = ws.WasmSandbox.builder().language("python").source("").max_output_bytes(1000).build()
    cut = sandbox.run_code("import sys\nprint('x' * 5000)\nprint('y', file=sys.stderr)")
    assert (len(cut.stdout), cut.stdout_truncated, cut.stderr_truncated) == (1000, True, False)
    assert cut.report is not None and cut.report.stdout_bytes == 5001
    assert cut.to_dict()["stdout_truncated"] is True
    assert not ws.run_python("print('short')").stdout_truncated


def test_a_value_that_contains_itself() -> None:
    """A reference cycle: a code result shows it as ``[...]`` (as repr does); ``call()``
    refuses it with a message that says so (not a depth error)."""
    assert ws.run_python("a = [1]\na.append(a)\na").result == [1, "[...]"]
    assert ws.run_python("d = {}\nd['me'] = d\nd").result == {"me": "{...}"}
    source = "def f():\n    a = [1]\n    a.append(a)\n    return a\n"
    sandbox = ws.WasmSandbox.builder().language("python").source(source).build()
    with pytest.raises(ws.GuestError, match="contains itself"):
        sandbox.call("f")


def test_a_javascript_cell_ending_in_a_rejected_promise_is_its_error() -> None:
    """The promise a cell ends with is awaited with its handlers attached: a rejection is
    the cell's error (type and message), not an unhandled rejection that ends the runtime."""
    rejected = ws.run_javascript("Promise.reject(new RangeError('nope'))")
    assert rejected.error is not None
    assert (rejected.error.type, rejected.error.message) == ("RangeError", "nope")
    late = ws.run_javascript("(async () => { await null; throw new TypeError('late'); })()")
    assert late.error is not None and (late.error.type, late.error.message) == ("TypeError", "late")


def test_a_javascript_timer_that_throws_is_not_lost() -> None:
    """QuickJS's event loop drops an error thrown in a timer callback; the driver keeps the
    first one: a cell's error, a run's exit 1 with the error on stderr (as node), a
    preinitialize setup's build error. A timer that does not throw still runs."""
    failed = ws.run_javascript("setTimeout(() => { throw new Error('in timer'); }, 1); 'now'")
    assert failed.error is not None and (failed.error.type, failed.error.message) == (
        "Error",
        "in timer",
    )
    fine = ws.run_javascript("setTimeout(() => console.log('later'), 1); 'now'")
    assert (fine.stdout, fine.result, fine.error) == ("later\n", "now", None)
    script = "setTimeout(() => { throw new TypeError('late'); }, 1);"
    run = ws.WasmSandbox.builder().language("javascript").source(script).build().run()
    assert run.exit_code == 1 and run.stderr.startswith(b"TypeError: late")
    with pytest.raises(ws.GuestError, match="late"):
        ws.WasmSandbox.builder().language("javascript").source(script).preinitialize().build()

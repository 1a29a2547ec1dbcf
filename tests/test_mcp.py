"""``wasm-sandbox mcp``, end to end with the MCP SDK's own client: one server process per
transport (stdio, spawned by the client; streamable HTTP on a free loopback port), each
started with the same flags, and every behaviour checked through both: the tool list and
schemas, a run, a timeout, a guest exception, a refused connection, sessions (state kept,
closed, capped). Then what needs no server: the session pool's idle expiry, the flags'
errors, ``--python-path``, and the message when the SDK is not installed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is the extra [mcp] (in [test])")

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

import wasm_sandbox as ws
from tests.netservers import echo_server
from wasm_sandbox._cli import main as cli_main
from wasm_sandbox._mcp._answers import describe_run
from wasm_sandbox._mcp._options import ServerOptions
from wasm_sandbox._mcp._tools import CodeTools

SRC = Path(ws.__file__).resolve().parents[1]
TOOLS = {"run_python", "run_javascript", "session_open", "session_exec", "session_close"}
# The flags both servers start with: a short timeout (the timeout test waits for it), a
# memory cap a 10**9-byte allocation fails on at once, two sessions, one read-only mount.
FLAGS = ["--timeout", "1s", "--memory", "128MiB", "--max-sessions", "2"]


def _env() -> dict[str, str]:
    """The server's environment: this checkout's sources and the test run's module cache."""
    env = {"PYTHONPATH": str(SRC)}
    if "WASM_SANDBOX_CACHE_DIR" in os.environ:
        env["WASM_SANDBOX_CACHE_DIR"] = os.environ["WASM_SANDBOX_CACHE_DIR"]
    return env


class Client:
    """A connected ``ClientSession``, driven from the (synchronous) tests through a portal."""

    def __init__(self, portal: BlockingPortal, session: ClientSession) -> None:
        self.portal = portal
        self.session = session

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        result = self.portal.call(self.session.call_tool, tool, arguments)
        assert isinstance(result, CallToolResult)
        return result

    def data(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """The structured content of a call that must succeed."""
        result = self.call(tool, **arguments)
        assert not result.is_error, text(result)
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    def failure(self, tool: str, **arguments: Any) -> tuple[dict[str, Any], str]:
        """The error and the text of a call that must fail (a tool result, never a protocol
        error)."""
        result = self.call(tool, **arguments)
        assert result.is_error, text(result)
        assert isinstance(result.structured_content, dict)
        return result.structured_content["error"], text(result)


def text(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


@contextlib.asynccontextmanager
async def _connected(transport: Any) -> AsyncIterator[ClientSession]:
    async with transport as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp-data")
    (path / "greeting.txt").write_text("hello from the host")
    return path


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the HTTP server exited ({server.returncode}):\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"the HTTP server did not listen on {port}:\n{log.read_text()}")


@contextlib.contextmanager
def _http_server(flags: list[str], log: Path) -> Iterator[str]:
    """A ``wasm-sandbox mcp --transport http`` process; its URL. Stopped on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "wasm_sandbox", "mcp", "--transport", "http"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--port", str(port), *flags],
            env={**os.environ, **_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, server, log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module", params=["stdio", "http"])
def client(
    request: pytest.FixtureRequest,
    portal: BlockingPortal,
    data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Client]:
    """A client of a server started with FLAGS and ``data_dir`` mounted at /data, over the
    stdio transport (the client spawns ``python -m wasm_sandbox mcp``) or streamable HTTP."""
    flags = [*FLAGS, "--mount", f"{data_dir}:/data"]
    with contextlib.ExitStack() as stack:
        if request.param == "stdio":
            parameters = StdioServerParameters(
                command=sys.executable, args=["-m", "wasm_sandbox", "mcp", *flags], env=_env()
            )
            transport: Any = stdio_client(parameters)
        else:
            log = tmp_path_factory.mktemp("mcp-http") / "server.log"
            transport = streamable_http_client(stack.enter_context(_http_server(flags, log)))
        session = stack.enter_context(portal.wrap_async_context_manager(_connected(transport)))
        yield Client(portal, session)


def test_the_tools_are_listed_with_schemas_and_the_servers_limits(client: Client) -> None:
    """Five tools; each input schema names its arguments; a run's description states the
    limits, the mount, that the last expression is returned and that there is no network;
    the answers have an output schema."""
    listed = {tool.name: tool for tool in client.portal.call(client.session.list_tools).tools}
    assert set(listed) == TOOLS
    required = {name: tool.input_schema.get("required", []) for name, tool in listed.items()}
    assert required == {
        "run_python": ["code"],
        "run_javascript": ["code"],
        "session_open": [],
        "session_exec": ["session_id", "code"],
        "session_close": ["session_id"],
    }
    language = listed["session_open"].input_schema["properties"]["language"]
    assert language["enum"] == ["python", "javascript"]
    description = listed["run_python"].description or ""
    for fact in ("1 s wall-clock", "128 MiB memory", "last line", "numpy", "/data (read-only)",
                 "Network: none"):  # fmt: skip
        assert fact in description
    output = listed["run_python"].output_schema or {}
    assert {"ok", "stdout", "stderr", "result", "error"} <= set(output["properties"])
    assert "2 sessions" in (listed["session_open"].description or "")


def test_a_run_answers_output_and_the_last_expression(client: Client) -> None:
    """stdout, stderr and the value as structured content, and the same as text; mounted
    files are readable; JavaScript too."""
    code = "import sys\nprint('hi')\nprint('careful', file=sys.stderr)\nopen('/data/greeting.txt').read()"
    result = client.call("run_python", code=code)
    assert not result.is_error
    assert result.structured_content == {
        "ok": True,
        "stdout": "hi\n",
        "stderr": "careful\n",
        "result": "hello from the host",
        "error": None,
    }
    assert text(result) == 'stdout:\nhi\n\nstderr:\ncareful\n\nresult: "hello from the host"'
    js = client.data("run_javascript", code="console.log('js'); [1, 2].map(x => x * 21)")
    assert (js["stdout"], js["result"]) == ("js\n", [21, 42])


def test_a_timeout_is_a_tool_error_naming_the_limit(client: Client) -> None:
    """Code past the time limit is stopped: an error result whose text says which limit."""
    error, message = client.failure(
        "run_python", code="print('start', flush=True)\nwhile True:\n    pass"
    )
    assert (error["type"], error["limit"]) == ("ExecutionTimeout", "timeout")
    assert message.startswith("stdout:\nstart\n\nerror: ExecutionTimeout")
    assert "time limit (1 s per call)" in message


def test_a_guest_exception_is_a_tool_error_with_its_traceback(client: Client) -> None:
    """An exception: its type, message and traceback, as structured content and text."""
    error, message = client.failure("run_python", code="def f():\n    return 1 / 0\nf()")
    assert (error["type"], error["message"]) == ("ZeroDivisionError", "division by zero")
    assert 'File "<cell>", line 2, in f' in message
    assert message.endswith("ZeroDivisionError: division by zero")
    js_error, _ = client.failure("run_javascript", code="null.x")
    assert js_error["type"] == "TypeError"


def test_a_connection_is_refused_without_network(client: Client) -> None:
    """No --allow-network: a connection to a live loopback server is refused in the guest,
    the answer says why, and the server sees nothing."""
    with echo_server() as server:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {server.port}))"
        error, message = client.failure("run_python", code=code)
        assert error["type"] == "PermissionError"
        assert "refused 1 network connection(s): this server gives the code no network" in message
        assert server.stats.connections == 0


def test_a_session_keeps_its_variables_until_closed(client: Client) -> None:
    """session_exec runs in the globals earlier calls left (a failed statement restores
    them); after session_close the id is unknown."""
    session_id = client.data("session_open", language="python")["session_id"]
    try:
        assert client.data("session_exec", session_id=session_id, code="rows = [1, 2]")["ok"]
        error, message = client.failure(
            "session_exec", session_id=session_id, code="rows.append(3)\nhog = bytearray(10**9)"
        )
        assert error["limit"] == "memory" and "back in the state it had" in message
        answer = client.data("session_exec", session_id=session_id, code="print(len(rows))\nrows")
        assert (answer["stdout"], answer["result"]) == ("2\n", [1, 2])
    finally:
        assert client.data("session_close", session_id=session_id)["closed"]
    error, message = client.failure("session_exec", session_id=session_id, code="rows")
    assert error["type"] == "UnknownSession" and "session_open" in message
    assert client.failure("session_close", session_id=session_id)[0]["type"] == "UnknownSession"


def test_javascript_sessions_and_the_session_cap(client: Client) -> None:
    """A JavaScript session keeps a top-level ``let``; a third session is refused at
    --max-sessions 2 until one closes."""
    first = client.data("session_open", language="javascript")["session_id"]
    second = client.data("session_open")["session_id"]
    try:
        client.data("session_exec", session_id=first, code="let n = 20")
        assert client.data("session_exec", session_id=first, code="n * 2 + 2")["result"] == 42
        error, message = client.failure("session_open")
        assert error["type"] == "TooManySessions" and "--max-sessions" in message
    finally:
        client.data("session_close", session_id=first)
        client.data("session_close", session_id=second)


# --- without a server -------------------------------------------------------------------


def test_an_idle_session_is_closed() -> None:
    """A session unused for --session-idle-timeout is closed by the pool's own task; its id
    is then unknown, and the pool is empty."""

    async def main() -> tuple[str, str, int]:
        tools = CodeTools(ServerOptions(session_idle=timedelta(seconds=0.3)))
        try:
            opened = await tools.session_open("python")
            session_id = opened.data["session_id"]
            kept = await tools.session_exec(session_id, "x = 1\nx")
            await asyncio.sleep(0.8)
            expired = await tools.session_exec(session_id, "x")
            return kept.text, expired.data["error"]["type"], len(tools.sessions)
        finally:
            await tools.close()

    assert asyncio.run(main()) == ("result: 1", "UnknownSession", 0)


def test_a_long_run_does_not_block_the_others() -> None:
    """Sandbox work runs off the event loop: a quick call started after a slow one answers
    first."""

    async def main() -> list[str]:
        tools = CodeTools(ServerOptions())
        finished: list[str] = []

        async def run(name: str, code: str) -> None:
            assert not (await tools.run("python", code)).is_error
            finished.append(name)

        try:
            await tools.run("python", "1")  # the sandbox is built
            await asyncio.gather(run("slow", "import time\ntime.sleep(0.5)"), run("quick", "1"))
        finally:
            await tools.close()
        return finished

    assert asyncio.run(main()) == ["quick", "slow"]


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--memory", "lots"], 2, "size"),
        (["--mount", "nocolon"], 2, "--mount expects HOST:GUEST"),
        (["--max-sessions", "0"], 65, "max_sessions must be between 1 and 100000, got 0"),
        (["--session-idle-timeout", "0s"], 65, "session_idle must be positive"),
        (["--memory", "100"], 65, "memory_bytes must be >= 65536"),
    ],
    ids=["bad-size", "bad-mount", "no-sessions", "no-idle", "too-little-memory"],
)
def test_bad_flags_exit_before_serving(
    flags: list[str], status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed flag is a usage error (2); a limit that cannot be honoured is 65."""
    assert cli_main(["mcp", *flags]) == status
    assert message in capsys.readouterr().err


def test_python_path_goes_to_the_builder_and_the_description(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--python-path entries reach ``SandboxBuilder.python_path``, and run_python's
    description names what they add; the JavaScript sandbox gets none."""
    (tmp_path / "greeter").mkdir()
    (tmp_path / "greeter" / "__init__.py").write_text("")
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "_private.py").write_text("")
    wheel = "/wheels/tabular-1.0-py3-none-any.whl"
    options = ServerOptions(python_path=(str(tmp_path), wheel))
    assert (
        "pillow, reportlab, tabulate, toolz, more-itertools, attrs, greeter, helpers, tabular;"
        in (describe_run("python", options))
    )
    real = ServerOptions(python_path=(str(tmp_path),))
    assert [str(p) for p in real.builder("python").config().python_path] == [str(tmp_path)]
    assert real.builder("javascript").config().python_path == ()  # not a Python directory


def test_without_the_sdk_the_command_says_what_to_install() -> None:
    """With ``mcp`` not importable, ``wasm-sandbox mcp`` exits 69 naming the extra."""
    code = (
        "import sys; sys.modules['mcp'] = None\n"
        "from wasm_sandbox._cli import main\n"
        "sys.exit(main(['mcp']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 69
    assert "pip install 'wasm-sandbox[mcp]'" in done.stderr

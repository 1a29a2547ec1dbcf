"""JavaScript guests: QuickJS-NG (the qjs-wasi-reactor.wasm package) driven by our WASI layer.

Every test runs real JavaScript inside the real WebAssembly engine."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from tests.netservers import http_server, https_server


def js(source: str | Path, **options: Any) -> ws.WasmSandbox:
    """A JavaScript sandbox (text or path); unmetered unless ``max_fuel`` is given."""
    return script_sandbox(source, "javascript", **options)


TOOLS = """
function add(a, b = 0, opts = {}) { return (a + b) * (opts.scale || 1); }
const mul = (a, b) => a * b;
function process(data) {
  return { count: data.rows.length, total: data.rows.reduce((s, r) => s + r.v, 0) };
}
function echo(...args) { return args; }
function bytes(b) { return b instanceof Uint8Array ? b.reverse() : "not bytes"; }
class Overdrawn extends Error { constructor(m) { super(m); this.name = "Overdrawn"; } }
function withdraw(amount) { throw new Overdrawn(`cannot withdraw ${amount}`); }
function throwsString() { throw "plain string"; }
async function later(x) { await null; return x * 2; }
async function rejects() { await null; throw new Error("async failure"); }
function timer() { return new Promise((resolve) => setTimeout(() => resolve("tick"), 20)); }
function unserialisable() { return () => 1; }
function setGlobal() { globalThis.counter = (globalThis.counter || 0) + 1; return counter; }
"""


def test_console_output_and_exit_codes() -> None:
    """console.log writes to stdout with exit code 0; an uncaught exception exits 1 with its
    JavaScript stack trace on stderr, naming the script, never the driver."""
    result = js("console.log('hi', 1 + 2)").run()
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"hi 3\n", b"")
    failed = js("function f() { throw new TypeError('bad'); }\nf();").run()
    assert failed.exit_code == 1
    assert failed.stderr.startswith(b"TypeError: bad\n    at f (<javascript source>:1:")
    assert b"<wsbx>" not in failed.stderr


def test_js_file_source(tmp_path: Path) -> None:
    """A .js path is a JavaScript guest: its functions are callable and run() executes its top
    level."""
    path = tmp_path / "tool.js"
    path.write_text("function twice(x) { return 2 * x; }\nconsole.log('loaded');\n")
    sandbox = js(path)
    assert sandbox.language == "javascript"
    assert sandbox.call("twice", 21) == 42
    assert sandbox.run().stdout == b"loaded\n"


def test_calls_with_data_keywords_bytes_and_lexical_functions() -> None:
    """Calls pass and return JSON data, keywords as a trailing object, bytes as a Uint8Array, and
    reach top-level const functions too."""
    tools = js(TOOLS)
    assert tools.call("add", 2, 3) == 5
    assert tools.call("add", 2, 3, scale=10) == 50  # keywords arrive as a trailing object
    assert tools.call("mul", 4, 5) == 20  # a top-level const is callable too
    assert tools.call("process", {"rows": [{"v": 1}, {"v": 2}]}) == {"count": 2, "total": 3}
    assert tools.call("echo", None, True, 1.5, "s", [1], {"k": "v"}) == [
        None, True, 1.5, "s", [1], {"k": "v"}
    ]  # fmt: skip
    assert tools.call("bytes", b"\x01\x02\x03") == b"\x03\x02\x01"


def test_promises_and_timers_are_awaited() -> None:
    """An async function, a timer and a rejected promise are awaited: the call returns the resolved
    value or raises the rejection."""
    tools = js(TOOLS)
    assert tools.call("later", 21) == 42
    assert tools.call("timer") == "tick"
    with pytest.raises(ws.GuestError, match="async failure"):
        tools.call("rejects")


def test_guest_exceptions_are_guest_errors() -> None:
    """A thrown Error, a thrown string, a result that cannot be returned and a syntax error are
    GuestErrors with the JavaScript type, message and stack."""
    tools = js(TOOLS)
    with pytest.raises(ws.GuestError) as info:
        tools.call("withdraw", 5)
    assert (info.value.type, info.value.guest_message) == ("Overdrawn", "cannot withdraw 5")
    assert "at withdraw (<javascript source>:" in info.value.guest_traceback
    with pytest.raises(ws.GuestError) as thrown:
        tools.call("throwsString")
    assert (thrown.value.type, thrown.value.guest_message) == ("string", "plain string")
    with pytest.raises(ws.GuestError, match="cannot be returned to the host") as bad:
        tools.call("unserialisable")
    assert bad.value.type == "TypeError"
    with pytest.raises(ws.GuestError, match="SyntaxError"):
        js("function (").call("f")


def test_missing_function_lists_the_global_ones() -> None:
    """Calling an unknown name is FunctionNotFound listing the script's global functions, not the
    built-ins or the driver's."""
    with pytest.raises(ws.FunctionNotFound) as info:
        js(TOOLS).call("nope")
    assert {"add", "process", "withdraw", "later"} <= set(info.value.available)
    assert "console" not in info.value.available and "__wsbx" not in info.value.available


def test_each_call_is_a_fresh_engine() -> None:
    """Each call starts from a fresh engine: a global set by one call is gone in the next."""
    tools = js(TOOLS)
    assert [tools.call("setGlobal") for _ in range(3)] == [1, 1, 1]


@pytest.mark.parametrize(
    "code",
    ["while (true) {}", "function f() { return new Promise(() => setTimeout(f, 10)); } f();"],
)
def test_timeout_stops_javascript(code: str) -> None:
    """A busy loop, and a script that keeps re-arming a timer, are stopped at the deadline:
    not before it, and within one tick after it."""
    sandbox = js(code, timeout_duration=timedelta(milliseconds=300))
    start = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout):
        sandbox.run()
    assert 0.3 <= time.monotonic() - start < 0.3 * 1.1 + 0.1


def test_memory_limit_stops_javascript() -> None:
    """A script growing past memory_limit, by small arrays or one 2 GiB ArrayBuffer, ends with
    MemoryLimitExceeded."""
    code = "const keep = []; while (true) keep.push(new Array(100000).fill(1));"
    with pytest.raises(ws.MemoryLimitExceeded) as info:
        js(code, memory_limit=32 * 2**20).run()
    assert info.value.limit == 32 * 2**20
    with pytest.raises(ws.MemoryLimitExceeded):
        js("function f() { return new ArrayBuffer(2 ** 31); }", memory_limit=32 * 2**20).call("f")


def test_fuel_and_output_caps() -> None:
    """max_fuel stops an endless loop with FuelExhausted; output past max_output_bytes is cut and
    flagged, the report counting every byte written."""
    with pytest.raises(ws.FuelExhausted):
        js("while (true) {}", max_fuel=10_000_000).run()
    big = js("for (let i = 0; i < 1000; i++) console.log('x'.repeat(1000));", max_output_bytes=4096)
    result = big.run()
    assert len(result.stdout) == 4096 and result.stdout_truncated
    assert result.resource_report.stdout_bytes == 1001 * 1000


def test_javascript_sessions_keep_state_and_survive_limits() -> None:
    """A session keeps its variables between statements; a statement that times out is undone by a
    restore, and later statements, errors included, go on from there."""
    sandbox = js(TOOLS, timeout_duration=timedelta(milliseconds=300))
    with sandbox.session() as session:
        session.exec("let items = [1, 2]")
        assert session.eval("items.length") == 2
        assert session.call("add", 1, 2) == 3
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("items.push(3); while (true) {}")
        assert session.eval("items") == [1, 2]
        assert session.restores == 1
        with pytest.raises(ws.GuestError, match="ReferenceError"):
            session.eval("missing")
        session.exec("console.log('still here', items.length)")
        assert session.exec("console.log(1)").stdout == b"1\n"


def test_async_and_one_liners(tmp_path: Path) -> None:
    """The one-liners run a .js file's function, with or without a timeout, and the asyncio twin
    calls a JavaScript function with keywords."""
    path = tmp_path / "processor.js"
    path.write_text("function process(d) { return d.toUpperCase(); }")
    assert ws.run(path, "process", "data") == "DATA"
    assert ws.run_with_timeout(path, "process", "data", timedelta(seconds=5)) == "DATA"

    async def main() -> Any:
        sandbox = await (
            ws.AsyncWasmSandbox.builder().source(TOOLS).language("javascript").max_fuel(None)
        ).build_async()
        return await sandbox.call("add", 1, 2, scale=2)

    assert asyncio.run(main()) == 6


def test_javascript_has_no_file_or_module_access() -> None:
    """Scripts cannot import the engine's std or os modules, and neither those nor require exist as
    globals."""
    result = js("import * as std from 'qjs:std';").run()
    assert result.exit_code == 1 and b"SyntaxError" in result.stderr
    assert js("console.log(typeof std, typeof os, typeof require)").run().stdout == (
        b"undefined undefined undefined\n"
    )


FETCH = """
async function get(url, init) {
  const r = await fetch(url, init);
  return [r.status, r.ok, await r.text(), r.headers.get("content-type")];
}
async function bytes(url) {
  const r = await fetch(url);
  return new Uint8Array(await r.arrayBuffer());
}
"""


def test_fetch_goes_through_the_host_policy() -> None:
    """fetch reaches an allowed server through the host (status, ok, text, headers, bytes) and is
    counted in the report; without a policy it fails with EACCES and never reaches the server."""
    with http_server() as server:
        base = f"http://127.0.0.1:{server.port}"
        tools = js(FETCH, network_policy=ws.NetworkPolicy(allow=(f"127.0.0.1:{server.port}",)))
        assert tools.call("get", f"{base}/hello") == [200, True, "hello", "text/plain"]
        assert tools.call("get", f"{base}/missing")[:2] == [404, False]
        assert tools.call("bytes", f"{base}/hello") == b"hello"
        outcome = tools.call_with_detailed_monitoring("get", f"{base}/hello")
        assert outcome.resource_report.network_requests == 1
        assert outcome.resource_report.network_bytes_received > 0
        with pytest.raises(ws.GuestError, match=r"fetch failed: .*EACCES") as info:
            js(FETCH).call("get", f"{base}/hello")
        assert info.value.type == "TypeError"
        assert info.value.guest_message.endswith(
            f"(EACCES): not allowed by the network policy: allow '127.0.0.1:{server.port}' "
            "to permit it"
        )
        assert server.paths == ["/hello", "/missing", "/hello", "/hello"]


def test_fetch_https_and_strict_refusal(tmp_path: Path) -> None:
    """fetch speaks HTTPS with the policy's CA; with strict_network a refused fetch stops the guest
    with SecurityViolation."""
    with https_server(tmp_path) as server:
        url = f"https://localhost:{server.port}/hello"
        policy = ws.NetworkPolicy(allow=(f"localhost:{server.port}",), ca_file=server.ca_file)
        assert js(FETCH, network_policy=policy).call("get", url)[:3] == [200, True, "hello"]
        with pytest.raises(ws.SecurityViolation, match="Unauthorized network access"):
            js(FETCH, strict_network=True).call("get", url)


def test_fetch_refuses_other_schemes_and_bad_headers() -> None:
    """fetch refuses schemes other than http and https, the redirect option, and headers holding
    line breaks."""
    with pytest.raises(ws.GuestError, match="only http:// and https://"):
        js(FETCH).call("get", "file:///etc/passwd")
    with pytest.raises(ws.GuestError, match="fetch option redirect is not supported"):
        js(FETCH).call("get", "http://127.0.0.1:1/", {"redirect": "follow"})
    with pytest.raises(ws.GuestError, match="line breaks"):
        js(FETCH).call("get", "http://127.0.0.1:1/", {"headers": {"X": "a\r\nInjected: 1"}})


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_fetch_has_an_overall_network_timeout(strict: bool) -> None:
    """network_timeout bounds each wait and the whole request: a server that trickles one
    byte every 50 ms never trips the per-wait bound but is cut by the overall one. It is a
    network limit: recorded in the report, and NetworkLimitExceeded in strict mode."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
            while not stop.wait(0.05):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        limits = ws.ResourceProfile.STANDARD.limits.replace(
            max_fuel=None, network_timeout=timedelta(milliseconds=400)
        )
        tools = js(
            FETCH,
            resource_limits=limits,
            network_policy=ws.NetworkPolicy((f"127.0.0.1:{port}",)),
            strict_network=strict,
        )
        start = time.monotonic()
        expected = ws.NetworkLimitExceeded if strict else ws.GuestError
        with pytest.raises(expected) as info:
            tools.call("get", f"http://127.0.0.1:{port}/")
        assert 0.35 < time.monotonic() - start < 1.5
        if isinstance(info.value, ws.NetworkLimitExceeded):
            assert strict
            assert (info.value.limit, info.value.cap) == ("network_timeout", 400)
        else:
            assert "ETIMEDOUT" in str(info.value)
        hit = info.value.report.network_limits_hit
        assert list(hit) == ["network_timeout"] and hit["network_timeout"][1] == 400
        assert 400 <= hit["network_timeout"][0] < 1500
    finally:
        stop.set()
        thread.join(5)
        listener.close()


QJS_MODULES = """
async function probe() {
  const os = await import('qjs:os');
  const std = await import('qjs:std');
  const absent = ['exec', 'kill', 'system', 'popen', 'Worker', 'symlink']
    .filter((name) => typeof os[name] !== 'undefined' || typeof std[name] !== 'undefined');
  const [mounted, err1] = os.readdir('/data');
  const [outside, err2] = os.readdir('/etc');
  let secret;
  try { secret = std.loadFile('/data/../outside.txt'); } catch (e) { secret = String(e); }
  return { absent, mounted: mounted.filter((n) => n[0] !== '.').sort(), err1, outside, err2, secret };
}
"""


def test_quickjs_std_and_os_see_only_the_mounts_and_cannot_start_processes(tmp_path: Path) -> None:
    """`import('qjs:os')` / `import('qjs:std')` work, but their file calls go through our
    WASI layer (only the mounts: /etc is not there, '..' does not leave /data) and the
    WebAssembly build has no process creation (exec, kill, system, popen, Worker)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "inside.txt").write_text("in")
    (tmp_path / "outside.txt").write_text("SECRET")
    sandbox = (
        ws.WasmSandbox.builder().source(QJS_MODULES).language("javascript").max_fuel(None)
        .mount_directory(data, "/data").build()
    )  # fmt: skip
    result = sandbox.call("probe")
    assert result["absent"] == []
    assert result["mounted"] == ["inside.txt"] and result["err1"] == 0
    assert result["outside"] == [] and result["err2"] != 0
    assert result["secret"] is None or "SECRET" not in str(result["secret"])

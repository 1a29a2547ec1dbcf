"""Sessions restore honestly: a restore never repeats an effect on the world outside the
sandbox, a statement that exits the interpreter is rolled back like any failed statement, and
the replay is bounded in time. (Checkpoints, forks and files: test_session_snapshots.py.)

Real Python and JavaScript guests; the network is a real HTTP server on 127.0.0.1 that records
every request it receives, so a repeated request cannot go unnoticed."""

from __future__ import annotations

import pickle
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from tests.netservers import HttpServer, http_server
from wasm_sandbox._guests._pydriver import BOOT
from wasm_sandbox._guests._python import _RAW


def py(source: str = "", **options: Any) -> ws.WasmSandbox:
    return script_sandbox(source, "python", **options)


def js(source: str = "", **options: Any) -> ws.WasmSandbox:
    return script_sandbox(source, "javascript", **options)


# A statement that fails at once on the memory cap (so a test need not wait for a timeout,
# and replays need no tight timeout on a busy machine).
CAP = 128 * 2**20
PY_HOG = "hog = bytearray(10**9)"
JS_HOG = "globalThis.hog = new Uint8Array(2 ** 30)"


def allow(server: HttpServer) -> ws.NetworkPolicy:
    return ws.NetworkPolicy(allow=(f"{server.host}:{server.port}",))


def url(server: HttpServer, path: str) -> str:
    return f"http://{server.host}:{server.port}{path}"


# Holding a file open makes checkpoints impossible (SnapshotError): the session falls back to
# replaying every statement since its last checkpoint, what these tests are about.
HOLD_FILE = "held = open('/usr/local/lib/' + __import__('os').listdir('/usr/local/lib')[0], 'rb')"

GET = """
import urllib.request, urllib.error

def get(url):
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as error:
        return error.code
"""


# --- external effects are never repeated ----------------------------------------------------


def test_a_request_is_never_repeated_by_a_restore() -> None:
    """The reported case: a request, then a timeout. The session is checkpointed after the
    request, so the timeout restores it without sending the request again."""
    with http_server() as server:
        sandbox = py(GET, network_policy=allow(server), timeout_duration=2)
        with sandbox.session() as session:
            session.exec(f"paid = get({url(server, '/pay?amount=100')!r})")
            with pytest.raises(ws.ExecutionTimeout):
                session.exec("paid = None\nwhile True: pass")
            assert session.eval("paid") == 404 and session.restores == 1
        assert server.paths == ["/pay?amount=100"]


def test_a_session_that_made_a_request_it_could_not_checkpoint_is_lost_not_replayed() -> None:
    """Without a checkpoint after the request (the guest held a file open), a restore would
    have to replay it: the session is lost instead, and the request reached the server once."""
    with http_server() as server:
        sandbox = py(GET, network_policy=allow(server), timeout_duration=2)
        session = sandbox.session()
        session.exec(HOLD_FILE)
        session.exec(f"paid = get({url(server, '/pay?amount=100')!r})")
        with pytest.raises(ws.SessionLost, match=r"network connection to 127\.0\.0\.1") as info:
            session.exec("while True: pass")
        assert isinstance(info.value.__cause__, ws.ExecutionTimeout)
        assert "statement 2 had an effect outside the sandbox" in str(info.value)
        assert "no checkpoint could be taken after it" in str(info.value)
        assert "python315.zip (fd 6) open" in str(info.value)
        assert session.closed
        assert server.paths == ["/pay?amount=100"]


def test_the_failing_statements_own_request_is_not_repeated() -> None:
    """A restore replays only the statements before the failed one: its own effects stay
    done, once, and the session goes on."""
    with http_server() as server:
        sandbox = py(GET, network_policy=allow(server), memory_limit=CAP)
        with sandbox.session() as session:
            session.exec("n = 1")
            with pytest.raises(ws.MemoryLimitExceeded):
                session.exec(f"n = get({url(server, '/pay?amount=100')!r})\n{PY_HOG}")
            assert session.eval("n") == 1
            assert session.restores == 1
            assert server.paths == ["/pay?amount=100"]


def test_a_refused_connection_is_not_an_effect() -> None:
    """A connection the policy refused never left the host: the session replays."""
    with http_server() as server, py(GET, memory_limit=CAP).session() as session:
        session.exec(f"try:\n    get({url(server, '/x')!r})\nexcept OSError:\n    refused = True")
        assert session.eval("refused") is True
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(PY_HOG)
        assert session.eval("refused") is True and session.restores == 1
        assert server.paths == []


def test_a_replay_is_stopped_before_an_effect_its_first_run_did_not_make() -> None:
    """Replay is not trusted to be deterministic: a statement that did not connect the first
    time (the clock said so) and tries to on replay is stopped before the connection."""
    with http_server() as server:
        sandbox = py(GET, network_policy=allow(server), memory_limit=CAP)
        session = sandbox.session()
        later = time.time() + 0.3
        session.exec(f"import time\nif time.time() > {later}:\n    get({url(server, '/late')!r})")
        time.sleep(0.4)
        with pytest.raises(ws.SessionLost, match="replaying statement 1 attempted a network"):
            session.exec(PY_HOG)
        assert session.closed
        assert server.paths == []


def test_javascript_fetch_is_an_effect_too() -> None:
    """A JavaScript fetch is an external effect: the session is checkpointed after it, and a
    failing statement restores it without sending the request again."""
    with http_server() as server:
        sandbox = js(network_policy=allow(server), memory_limit=CAP)
        with sandbox.session() as session:
            fetch = f"fetch({url(server, '/pay?amount=100')!r}).then((r) => r.status)"
            assert session.eval(f"{fetch}.then((s) => (globalThis.status = s))") == 404
            with pytest.raises(ws.MemoryLimitExceeded):
                session.exec(JS_HOG)
            assert session.eval("status") == 404 and session.restores == 1
        assert server.paths == ["/pay?amount=100"]


def test_reading_a_writable_host_directory_is_not_an_effect(tmp_path: Path) -> None:
    """The host decides from what the guest did: reads from a writable host mount replay
    (the previous rule lost any session that touched files there); a write is an effect,
    checkpointed after, never written again by a restore."""
    (tmp_path / "in.txt").write_text("data")
    sandbox = (
        ws.WasmSandbox.builder()
        .source("")
        .language("python")
        .max_fuel(None)
        .memory_limit(CAP)
        .mount_directory(tmp_path, "/work", read_only=False)
        .memory_fs("/tmp")
        .build()
    )
    with sandbox.session() as session:
        session.exec("text = open('/work/in.txt').read()")
        session.exec("open('/tmp/scratch', 'w').write(text)")  # in-memory: rebuilt by replay
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(PY_HOG)
        assert session.eval("[text, open('/tmp/scratch').read()]") == ["data", "data"]
        session.exec("open('/work/out.txt', 'a').write(text)")
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(PY_HOG)
        assert session.eval("text") == "data" and session.restores == 2
    assert (tmp_path / "out.txt").read_text() == "data"


# --- exiting the interpreter --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("import os\nos._exit(5)", 5), ("import sys\nsys.exit(3)", 3), ("raise SystemExit", 0)],
    ids=["os._exit", "sys.exit", "SystemExit"],
)
def test_a_python_statement_that_exits_restores_the_session(code: str, status: int) -> None:
    """A statement that ends the interpreter (os._exit, sys.exit, SystemExit) raises GuestExit with
    its status, and the session is restored to its state before that statement, then goes on."""
    with py().session() as session:
        session.exec("x = [1]")
        with pytest.raises(ws.GuestExit) as info:
            session.exec(f"x.append(2)\n{code}")
        assert info.value.exit_code == status
        assert session.eval("x") == [1]
        assert session.restores == 1
        session.exec("x.append(3)")
        assert session.eval("x") == [1, 3]


def test_a_javascript_statement_that_exits_restores_the_session() -> None:
    """QuickJS's std.exit is reachable (a dynamic import): it ends the guest with proc_exit."""
    with js().session() as session:
        session.exec("globalThis.x = [1]")
        with pytest.raises(ws.GuestExit) as info:
            session.eval("x.push(2); import('qjs:std').then((std) => std.exit(3))")
        assert info.value.exit_code == 3
        assert session.eval("x") == [1] and session.restores == 1


# --- the replay is bounded in time ----------------------------------------------------------


def test_the_replay_is_bounded_by_the_statement_timeout_by_default() -> None:
    """A history that takes 3 s to replay (no checkpoint could be taken), statements with a
    1 s timeout: the failed
    statement returns within 1 s (its timeout) + 1 s (the replay bound), not after 4 s, and
    the session, which cannot be restored in time, is lost."""
    session = py(timeout_duration=1).session()
    session.exec(f"import time\n{HOLD_FILE}")  # no checkpoint: the whole history replays
    for _ in range(6):
        session.exec("time.sleep(0.5)")
    start = time.monotonic()
    with pytest.raises(ws.SessionLost, match=r"within replay_timeout \(1 s\)") as info:
        session.exec("while True: pass")
    elapsed = time.monotonic() - start
    assert isinstance(info.value.__cause__, ws.ExecutionTimeout)
    assert 1.9 < elapsed < 3.2  # the 2 s bound, with a margin for a busy machine
    assert session.closed


def test_a_longer_replay_timeout_restores_a_longer_history() -> None:
    """A replay_timeout longer than the history (1.5 s of sleeps) lets the session replay it after a
    timeout: the state before the failing statement comes back."""
    with py(timeout_duration=1).session(replay_timeout=timedelta(seconds=30)) as session:
        session.exec(f"import time\nn = 0\n{HOLD_FILE}")  # no checkpoint: all replays
        for _ in range(3):
            session.exec("time.sleep(0.5)\nn += 1")
        start = time.monotonic()
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("n = 100\nwhile True: pass")
        assert time.monotonic() - start > 1 + 1.5  # the 1.5 s history was replayed
        assert session.eval("n") == 3 and session.restores == 1


def test_a_replayed_statement_that_hangs_is_cut_by_the_replay_bound() -> None:
    """A statement quick the first time but stuck on replay (the clock said so) is stopped at
    replay_timeout, not at its own (much longer) timeout."""
    sandbox = py(timeout_duration=5, memory_limit=CAP)
    session = sandbox.session(replay_timeout=0.3)
    later = time.time() + 0.2
    session.exec(f"import time\nif time.time() > {later}:\n    while True: pass")
    time.sleep(0.3)
    start = time.monotonic()
    with pytest.raises(ws.SessionLost, match="replay_timeout") as info:
        session.exec(PY_HOG)
    assert isinstance(info.value.__cause__, ws.MemoryLimitExceeded)
    assert time.monotonic() - start < 1.5  # 0.3 s bound; without it, 5 s


def test_replay_timeout_is_validated() -> None:
    """A negative replay_timeout is a ConfigurationError naming it."""
    with pytest.raises(ws.ConfigurationError, match="replay_timeout"):
        py().session(replay_timeout=-1)


def test_the_auto_scalers_retry_never_repeats_a_request() -> None:
    """The same rule outside sessions: a call that hit its memory cap is retried at the
    raised cap only when its first attempt had no external effect."""
    code = (
        "function hog(mb) { return new Uint8Array(mb * 2 ** 20).length; }\n"
        "async function payThenHog(url, mb) { await fetch(url); return hog(mb); }\n"
    )
    with http_server() as server:
        scaler = ws.AutoScaler().memory_policy(
            ws.ScalingPolicy(min_limit=8 * 2**20, max_limit=256 * 2**20)
        )
        sandbox = js(
            code,
            network_policy=allow(server),
            memory_limit=16 * 2**20,
            auto_scaler=scaler,
        )
        assert sandbox.call("hog", 20) == 20 * 2**20  # no effect: retried at 32 MiB
        assert scaler.memory_limit == 32 * 2**20
        with pytest.raises(ws.MemoryLimitExceeded):
            sandbox.call("payThenHog", url(server, "/pay?amount=100"), 40)
        assert server.paths == ["/pay?amount=100"]
        assert scaler.memory_limit == 64 * 2**20  # the cap still rose for the next calls


# --- the statement path ---------------------------------------------------------------------


def test_python_statements_run_without_the_turn_hook_too() -> None:
    """Statements reach the driver through a hook in the runtime's reactor (it then compiles
    only the statement); a turn's text also calls the driver itself, so a guest that removed
    the hook (or a runtime without it) runs the same statements, errors included."""
    with py(memory_limit=CAP).session() as session:
        session.exec("x = 1")
        session.exec(
            "import sys\n"
            "reactor = sys.modules['_reactor']\n"
            "reactor._run_turn = lambda text, name: exec(\n"
            "    compile(text, name, 'exec'), sys.modules['__main__'].__dict__)\n"
        )
        assert session.exec("x += 1\nprint(x)").stdout == b"2\n"
        assert session.eval("x") == 2
        with pytest.raises(ws.GuestError, match="ZeroDivisionError"):
            session.exec("1 / 0")
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(PY_HOG)
        assert session.eval("x") == 2


def test_an_exec_result_builds_its_report_when_read() -> None:
    """A statement's result carries its report, built on first access; it compares, prints
    and pickles as a plain MonitoredResult."""
    with py().session() as session:
        result = session.exec("print('hi')")
        assert isinstance(result, ws.MonitoredResult)
        assert result.stdout == b"hi\n" and result.resource_report.outcome == "ok"
        plain = ws.MonitoredResult(
            value=None, resource_report=result.resource_report, stdout=b"hi\n", stderr=b""
        )
        assert result == plain and repr(result) == repr(plain)
        copied = pickle.loads(pickle.dumps(session.exec("print('hi')")))
        assert type(copied) is ws.MonitoredResult and copied.stdout == b"hi\n"


def test_the_bare_statement_line_is_the_drivers() -> None:
    """The host and the Python driver agree on a bare statement's first line."""
    assert f"_RAW = {_RAW!r}" in BOOT

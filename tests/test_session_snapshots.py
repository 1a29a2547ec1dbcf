"""Sessions on snapshots: a failed statement is restored from a checkpoint without running an
effect again, users checkpoint and roll back, fork a session into independent ones, and save
one to a file that another process loads; what cannot be captured or loaded is refused with
``SnapshotError``.

Real Python and JavaScript guests; the network is a real HTTP server on 127.0.0.1 that records
every request, so a repeated request cannot go unnoticed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from tests.netservers import HttpServer, http_server
from wasm_sandbox._invocation import session_core
from wasm_sandbox._runtime import _snapshot
from wasm_sandbox._wasi._hoststate import HostState, MountState

REPO = Path(__file__).resolve().parent.parent
CAP = 128 * 2**20
HOG = {"python": "hog = bytearray(10**9)", "javascript": "globalThis.hog = new Uint8Array(2 ** 30)"}
LANGUAGES = ("python", "javascript")
# Statements per language: set x, add to x, read x.
SET = {"python": "x = {}", "javascript": "globalThis.x = {}"}
ADD = {"python": "x += {}", "javascript": "x += {}"}
PY_HOLD_FILE = (
    "held = open('/usr/local/lib/' + __import__('os').listdir('/usr/local/lib')[0], 'rb')"
)
TOOLS = {
    "python": "def double(n):\n    return 2 * n\n",
    "javascript": "function double(n) { return 2 * n; }\n",
}


def box(language: str, source: str = "", **options: Any) -> ws.WasmSandbox:
    options.setdefault("memory_limit", CAP)
    return script_sandbox(source, language, **options)


def allow(server: HttpServer) -> ws.NetworkPolicy:
    return ws.NetworkPolicy(allow=(f"{server.host}:{server.port}",))


def fetch_statement(language: str, server: HttpServer, path: str) -> str:
    """A statement that makes one request and keeps its status in ``status``."""
    url = f"http://{server.host}:{server.port}{path}"
    if language == "python":
        return (
            "import urllib.request, urllib.error\n"
            f"try:\n    status = urllib.request.urlopen({url!r}, timeout=5).status\n"
            "except urllib.error.HTTPError as error:\n    status = error.code\n"
        )
    return f"fetch({url!r}).then((r) => (globalThis.status = r.status))"


def run_statement(session: ws.Session, language: str, code: str) -> None:
    """``code`` as a statement (JavaScript's promise settled: eval waits for it)."""
    if language == "python":
        session.exec(code)
    else:
        session.eval(code)


# --- a failed statement is restored from a checkpoint ---------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_restore_never_runs_a_request_again(language: str) -> None:
    """A request, pure statements, then a statement over the memory cap: the session comes
    back to the state before the failure (the pure statements replayed after the checkpoint
    taken after the request), and the server saw the request exactly once."""
    with http_server() as server:
        sandbox = box(language, network_policy=allow(server))
        with sandbox.session() as session:
            run_statement(session, language, fetch_statement(language, server, "/pay"))
            session.exec(SET[language].format(1))
            session.exec(ADD[language].format(2))
            with pytest.raises(ws.MemoryLimitExceeded):
                session.exec(f"{SET[language].format(100)}\n{HOG[language]}")
            assert session.eval("[status, x]") == [404, 3]
            assert session.restores == 1
            session.exec(ADD[language].format(1))
            with pytest.raises(ws.MemoryLimitExceeded):
                session.exec(HOG[language])
            assert session.eval("x") == 4 and session.restores == 2
        assert server.paths == ["/pay"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_restore_after_1000_statements_is_quick(language: str) -> None:
    """A thousand statements, then a failure: the restore does not replay the thousand (the
    checkpoints bound its tail), well under a second even on a busy machine (the benchmark
    measures the real figure: bench_sessions.py)."""
    with box(language).session() as session:
        session.exec(SET[language].format(0))
        for _ in range(1000):
            session.exec(ADD[language].format(1))
        start = time.monotonic()
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(HOG[language])
        assert time.monotonic() - start < 1.0
        assert session.eval("x") == 1000 and session.statements == 1003


def test_in_memory_files_come_back_with_the_checkpoint() -> None:
    """A restore brings back the in-memory files as they were before the failed statement."""
    sandbox = box("python", memory_fs="/tmp")
    with sandbox.session() as session:
        session.exec("open('/tmp/a', 'w').write('kept')")
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(f"open('/tmp/a', 'w').write('lost')\nopen('/tmp/b', 'w')\n{HOG['python']}")
        assert session.eval("[open('/tmp/a').read(), __import__('os').listdir('/tmp')]") == [
            "kept",
            ["a"],
        ]


def test_a_restore_draws_randomness_again() -> None:
    """The instance a restore makes from a checkpoint reseeds Python's random: the stream
    after a restore is not the one the lost statement saw."""
    with box("python").session() as session:
        session.exec("import random")
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(f"seen = random.random()\n{HOG['python']}")
        first = session.eval("random.random()")
        with pytest.raises(ws.MemoryLimitExceeded):
            session.exec(HOG["python"])
        assert session.eval("random.random()") != first


# --- checkpoint and rollback ----------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_rollback_goes_back_to_a_checkpoint_and_forgets_what_came_after(language: str) -> None:
    """Two checkpoints; rolling back to the first, then the second: each time the state and
    the history length are the checkpoint's, and the statements after it are forgotten."""
    with box(language, TOOLS[language]).session() as session:
        session.exec(SET[language].format(1))
        first = session.checkpoint()
        session.exec(ADD[language].format(10))
        second = session.checkpoint()
        session.exec(ADD[language].format(100))
        assert (first.statements, second.statements, session.statements) == (2, 3, 4)
        assert first.size > 0
        session.rollback(first)
        assert session.statements == 2
        assert session.eval("x") == 1
        session.rollback(second)
        assert session.eval("x") == 11 and session.call("double", 4) == 8
        session.rollback(second)  # again: a checkpoint is not used up
        assert session.eval("x") == 11


def test_rollback_refuses_another_sessions_checkpoint_and_a_closed_session() -> None:
    """A checkpoint belongs to its session: another session refuses it (fork to continue from
    it), and a closed session refuses to roll back."""
    sandbox = box("python")
    one, two = sandbox.session(), sandbox.session()
    checkpoint = one.checkpoint()
    with pytest.raises(ws.ConfigurationError, match="taken by another session"):
        two.rollback(checkpoint)
    one.close()
    with pytest.raises(ws.ConfigurationError, match="session is closed"):
        one.rollback(checkpoint)
    with pytest.raises(ws.ConfigurationError, match="taken by another session"):
        two.rollback(checkpoint)
    with pytest.raises(TypeError, match="expected a Checkpoint"):
        two.rollback("checkpoint")  # type: ignore[arg-type]
    two.close()


def test_a_checkpoint_is_refused_while_a_file_is_open_and_the_session_goes_on() -> None:
    """A state holding an open file cannot be captured: SnapshotError names the file, and
    the session goes on; once the file is closed, checkpoints work again."""
    with box("python").session() as session:
        session.exec(f"x = 1\n{PY_HOLD_FILE}")
        with pytest.raises(ws.SnapshotError, match=r"python315\.zip \(fd 6\) open; close it"):
            session.checkpoint()
        session.exec("held.close()\nx += 1")
        checkpoint = session.checkpoint()
        session.exec("x = 100")
        session.rollback(checkpoint)
        assert session.eval("x") == 2


def test_rollback_restores_in_memory_files() -> None:
    """The in-memory files are part of a checkpoint."""
    with box("python", memory_fs="/tmp").session() as session:
        session.exec("open('/tmp/notes', 'w').write('first')")
        checkpoint = session.checkpoint()
        session.exec("open('/tmp/notes', 'w').write('second')\nopen('/tmp/other', 'w')")
        session.rollback(checkpoint)
        assert session.eval(
            "[open('/tmp/notes').read(), sorted(__import__('os').listdir('/tmp'))]"
        ) == [
            "first",
            ["notes"],
        ]


# --- forks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_forks_start_from_the_same_state_and_never_see_each_others_changes(
    language: str,
) -> None:
    """A fork has its parent's state; afterwards each changes only itself (separate
    instances), in both directions, and each survives the other closing."""
    with box(language, TOOLS[language]).session() as parent:
        parent.exec(SET[language].format(1))
        fork = parent.fork()
        assert fork.statements == parent.statements
        assert fork.eval("x") == 1 and fork.call("double", 21) == 42
        fork.exec(ADD[language].format(10))
        parent.exec(ADD[language].format(100))
        assert (parent.eval("x"), fork.eval("x")) == (101, 11)
        second = fork.fork()
        second.exec(ADD[language].format(1000))
        assert (parent.eval("x"), fork.eval("x"), second.eval("x")) == (101, 11, 1011)
        fork.close()
        assert parent.eval("x") == 101 and second.eval("x") == 1011
        with pytest.raises(ws.MemoryLimitExceeded):
            second.exec(HOG[language])
        assert (second.restores, parent.restores) == (1, 0)
        second.close()


def test_forks_draw_their_own_randomness() -> None:
    """Two forks of one session do not share a random stream."""
    with box("python").session() as parent:
        parent.exec("import random")
        one, two = parent.fork(), parent.fork()
        assert one.eval("random.random()") != two.eval("random.random()")
        one.close()
        two.close()


def test_a_fork_is_refused_while_a_file_is_open() -> None:
    """Fork captures the state: an open file refuses it (SnapshotError), the parent goes on."""
    with box("python").session() as session:
        session.exec(PY_HOLD_FILE)
        with pytest.raises(ws.SnapshotError, match="open; close it first"):
            session.fork()
        assert session.eval("1 + 1") == 2


# --- save and load --------------------------------------------------------------------------

LOADER = """
import json, sys
import wasm_sandbox as ws
language, path = sys.argv[1], sys.argv[2]
source = json.loads(sys.argv[3])
sandbox = (ws.WasmSandbox.builder().source(source).language(language).max_fuel(None)
           .memory_limit(128 * 2**20).memory_fs("/tmp").build())
session = sandbox.load_session(path)
session.exec(sys.argv[4])
print(json.dumps({"x": session.eval("x"), "double": session.call("double", 5),
                  "statements": session.statements}))
"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_saved_session_continues_in_another_process(language: str, tmp_path: Path) -> None:
    """save() in this process, load_session() in a new one (the same sandbox configuration):
    the state, the functions and the history length come back, and the loaded session goes
    on with statements of its own."""
    path = tmp_path / "session.wsbx"
    sandbox = box(language, TOOLS[language], memory_fs="/tmp")
    with sandbox.session() as session:
        session.exec(SET[language].format(41))
        session.save(path)
        session.exec(ADD[language].format(1000))  # not in the file
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, language, str(path), json.dumps(TOOLS[language]),
         ADD[language].format(1)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"x": 42, "double": 10, "statements": 5}


def test_in_memory_files_travel_with_a_saved_session(tmp_path: Path) -> None:
    """An in-memory mount's files are saved and loaded with the session."""
    path = tmp_path / "s"
    sandbox = box("python", memory_fs="/tmp")
    with sandbox.session() as session:
        session.exec("import os\nos.mkdir('/tmp/d')\nopen('/tmp/d/f', 'w').write('saved')")
        session.save(path)
    with sandbox.load_session(path) as loaded:
        assert loaded.eval("open('/tmp/d/f').read()") == "saved"


def test_a_loaded_session_is_restored_and_checkpointed_like_any_other(tmp_path: Path) -> None:
    """A loaded session restores after a failure and rolls back to its own checkpoints."""
    path = tmp_path / "s"
    sandbox = box("python")
    with sandbox.session() as session:
        session.exec("x = 1")
        session.save(path)
    with sandbox.load_session(path, timeout=60) as loaded:
        with pytest.raises(ws.MemoryLimitExceeded):
            loaded.exec(f"x = 2\n{HOG['python']}")
        checkpoint = loaded.checkpoint()
        loaded.exec("x = 3")
        loaded.rollback(checkpoint)
        assert loaded.eval("x") == 1 and loaded.restores == 1


@pytest.mark.parametrize(
    ("other", "what"),
    [
        ({"source": "y = 2"}, "another source"),
        ({"language": "javascript"}, "another runtime module"),
        ({"mounts": ("/data",)}, "other mounts"),
    ],
    ids=["source", "language", "mounts"],
)
def test_a_file_from_another_sandbox_configuration_is_refused(
    other: dict[str, Any], what: str, tmp_path: Path
) -> None:
    """A session saved from one sandbox is refused by a sandbox with another source,
    language or mounts: SnapshotError naming what differs."""
    path = tmp_path / "s"
    with box("python", "y = 1").session() as session:
        session.save(path)
    options: dict[str, Any] = {}
    for guest_path in other.get("mounts", ()):
        options["memory_fs"] = guest_path
    loading = box(other.get("language", "python"), other.get("source", "y = 1"), **options)
    with pytest.raises(ws.SnapshotError, match=f"saved from a sandbox with {what}"):
        loading.load_session(path)


def test_a_file_whose_memory_is_over_the_loading_sandboxs_cap_is_refused(tmp_path: Path) -> None:
    """The memory cap holds for a loaded state too: one larger than the loading sandbox's cap
    is refused with SnapshotError."""
    path = tmp_path / "s"
    with box("python", memory_limit=256 * 2**20).session() as session:
        session.exec("big = bytearray(100 * 2**20)")
        session.save(path)
    with pytest.raises(ws.SnapshotError, match="its memory does not fit this sandbox"):
        box("python", memory_limit=64 * 2**20).load_session(path)


def test_an_altered_or_truncated_file_is_refused(tmp_path: Path) -> None:
    """One changed byte anywhere, or a cut, and the file is refused (its checksum)."""
    path = tmp_path / "s"
    sandbox = box("python")
    with sandbox.session() as session:
        session.exec("x = 1")
        session.save(path)
    data = path.read_bytes()
    for at in (10, len(data) // 2, len(data) - 40):
        altered = bytearray(data)
        altered[at] ^= 0x01
        path.write_bytes(bytes(altered))
        with pytest.raises(ws.SnapshotError, match="truncated or was altered"):
            sandbox.load_session(path)
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ws.SnapshotError, match="truncated or was altered"):
        sandbox.load_session(path)
    path.write_bytes(b"not a session")
    with pytest.raises(ws.SnapshotError, match="not a wasm-sandbox snapshot"):
        sandbox.load_session(path)


def _rewrite(path: Path, change: Any) -> None:
    """Rewrite a saved session with ``change(snapshot, meta)`` applied and a valid checksum:
    what a crafted file looks like."""
    snapshot, meta = _snapshot.load_snapshot(path.read_bytes())
    snapshot, meta = change(snapshot, meta)
    path.write_bytes(_snapshot.dump_snapshot(snapshot, meta))


def test_a_crafted_file_with_a_valid_checksum_is_still_refused(tmp_path: Path) -> None:
    """The checksum is no authority: a file rewritten with a valid one is checked again on
    load. An in-memory file outside its mount's root, a memory run past the memory, a meta
    naming another runtime, a file that is not a session: each is refused."""
    path = tmp_path / "s"
    sandbox = box("python", memory_fs="/tmp")
    with sandbox.session() as session:
        session.exec("open('/tmp/f', 'w').write('x')")
        session.save(path)
    saved = path.read_bytes()

    def escape(snapshot: Any, meta: Any) -> Any:
        mounts = list(snapshot.host.mounts)
        index = next(i for i, m in enumerate(mounts) if m is not None)
        mounts[index] = MountState((("../../escaped", "f", b"x"),), 1, 1)
        host = HostState(tuple(mounts))
        return _snapshot.Snapshot(snapshot.memory, host, snapshot.script_ready), meta

    def past_the_memory(snapshot: Any, meta: Any) -> Any:
        memory = snapshot.memory
        runs = (*memory.runs, (memory.pages * _snapshot.PAGE - 4096, b"\0" * 8192))
        state = _snapshot.InstanceState(memory.digest, memory.pages, runs, memory.globals)
        return _snapshot.Snapshot(state, snapshot.host, snapshot.script_ready), meta

    cases = [
        (escape, "invalid path"),
        (past_the_memory, "outside the memory"),
        (lambda s, m: (s, {**m, "runtime": "0" * 64}), "another runtime module"),
        (lambda s, m: (s, {**m, "kind": "something else"}), "not a saved session"),
        (lambda s, m: (s, {**m, "statements": -1}), "history length is malformed"),
    ]
    for change, message in cases:
        path.write_bytes(saved)
        _rewrite(path, change)
        with pytest.raises(ws.SnapshotError, match=message):
            sandbox.load_session(path)
    assert not (tmp_path / "escaped").exists()


def test_a_session_with_a_writable_host_mount_cannot_be_saved(tmp_path: Path) -> None:
    """A writable host directory's content is the host's: save() refuses, saying so, and
    the session goes on (in-process checkpoints still work)."""
    builder = ws.WasmSandbox.builder().source("").language("python").max_fuel(None)
    sandbox = builder.mount_directory(tmp_path, "/work", read_only=False).build()
    with sandbox.session() as session:
        with pytest.raises(ws.SnapshotError, match="writable host directory /work"):
            session.save(tmp_path / "s")
        session.exec("x = 1")
        checkpoint = session.checkpoint()
        session.exec("x = 2")
        session.rollback(checkpoint)
        assert session.eval("x") == 1
    assert not (tmp_path / "s").exists()


def test_a_session_holding_a_connection_cannot_be_saved(tmp_path: Path) -> None:
    """An open network connection cannot travel in a file: SnapshotError names it; closed,
    the session saves."""
    with http_server() as server:
        sandbox = box("python", network_policy=allow(server))
        with sandbox.session() as session:
            session.exec(
                f"import socket\nconn = socket.create_connection(({server.host!r}, {server.port}))"
            )
            with pytest.raises(ws.SnapshotError, match=f"network connection to .*{server.port}"):
                session.save(tmp_path / "s")
            session.exec("conn.close()")
            session.save(tmp_path / "s")
    assert (tmp_path / "s").exists()


# --- the asyncio twins ----------------------------------------------------------------------


def test_async_sessions_checkpoint_fork_save_and_load(tmp_path: Path) -> None:
    """The coroutine twins of checkpoint, rollback, fork, save and load_session."""

    async def main() -> list[Any]:
        sandbox = ws.AsyncWasmSandbox(box("python"))
        async with await sandbox.session() as session:
            await session.exec("x = 1")
            checkpoint = await session.checkpoint()
            await session.exec("x = 2")
            fork = await session.fork()
            await session.rollback(checkpoint)
            await session.save(tmp_path / "s")
            loaded = await sandbox.load_session(tmp_path / "s")
            values = [await session.eval("x"), await fork.eval("x"), await loaded.eval("x")]
            await fork.close()
            await loaded.close()
            return [*values, session.statements]

    assert asyncio.run(main()) == [1, 2, 1, 3]


# --- the capture itself ---------------------------------------------------------------------


def test_capturing_only_written_blocks_misses_no_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture compares only the blocks /proc/self/pagemap says were written (whole spans
    of them); every byte a comparison of the whole memory finds changed is in it, with the
    same content, and it is barely larger."""
    with box("python", memory_fs="/tmp").session() as session:
        session.exec("data = [str(i) * 10 for i in range(20000)]\nopen('/tmp/f', 'w')")
        execution = session_core(session)._execution
        quick = execution.capture()
        monkeypatch.setattr(_snapshot, "written_blocks", lambda data, size: None)
        full = execution.capture()
    assert (quick.memory.pages, quick.memory.globals, quick.host) == (
        full.memory.pages,
        full.memory.globals,
        full.host,
    )
    covered = {offset // 4096: data for offset, data in _blocks(quick.memory.runs)}
    for offset, data in _blocks(full.memory.runs):
        assert covered.get(offset // 4096) == data, offset
    assert full.memory.changed_bytes > 1 << 20
    assert quick.memory.changed_bytes < full.memory.changed_bytes * 1.25


def _blocks(runs: tuple[tuple[int, bytes], ...]) -> list[tuple[int, bytes]]:
    """Each run's 4 KiB blocks, with their offsets."""
    return [
        (offset + at, data[at : at + 4096])
        for offset, data in runs
        for at in range(0, len(data), 4096)
    ]


def test_the_readme_example_runs() -> None:
    """The README's sessions example (checkpoint, rollback, fork, save, load) runs as shown."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- sessions-example: run by tests/test_session_snapshots.py -->")[1]
    code = block.split("```python\n")[1].split("```")[0]
    assert "session.fork()" in code and "load_session" in code
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})

#!/usr/bin/env python
"""Sessions on snapshots: statements against pyeryx's in the same run, restores, checkpoints,
forks, files.

    PYTHONPATH=src .venv/bin/python bench/bench_sessions.py [--quick] [--[no-]peers] [--json FILE]

Figures (medians; milliseconds unless named otherwise):

* ``stmt``: per statement of ``x = 0`` then 19 times ``x += 1`` in a new session per round,
  the session's opening excluded: what ``bench/peers/run_peer.py`` measures for pyeryx
  (``session_stmt_ms``), measured alternately with it (ours, pyeryx, ours, ...) so that both
  see the same machine; the ratio is the target (<= 1.0x).
* ``long_stmt``: the mean per statement over 2,000 ``x += 1`` in one session, automatic
  checkpoints included (the short rounds above take none after the first).
* ``restore_after_1000``: a statement that fails at once (Python: ``os._exit(3)``; JavaScript:
  over the memory cap) after 1,000 statements, from the call to its error, the restore
  included (target <= 50 ms), and the same right after opening (``restore_after_0``: the
  failure and a restore with nothing to replay).
* ``checkpoint``, ``rollback``, ``fork`` (and the fork's first statement), ``save`` (and the
  file's size), ``load`` (``load_session`` in this process), for Python and JavaScript, on a
  session holding a little state (``import json, re`` or its JavaScript twin, 100 statements).

The script is a measurement: it exits 0 even when a target is missed.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
try:
    import wasm_sandbox as ws
except ImportError:  # run without PYTHONPATH=src: use the checkout's sources
    sys.path.insert(0, str(REPO / "src"))
    import wasm_sandbox as ws

from bench._args import bench_parser, with_peers  # noqa: E402 - after the path is set

CAP = 512 << 20
# A statement that fails at once, so that its time is mostly the restore's: Python's exits the
# interpreter (a MemoryError would first import traceback in the guest: ~30 ms of its own);
# JavaScript's goes over the memory cap.
FAIL = {"python": "os._exit(3)", "javascript": "globalThis.hog = new Uint8Array(2 ** 30)"}
STATE = {
    "python": "import json, re\nrows = [{'n': i} for i in range(100)]",
    "javascript": "globalThis.rows = Array.from({ length: 100 }, (_, n) => ({ n }))",
}
ADD = {"python": "x += 1", "javascript": "x += 1"}
SET = {"python": "import os\nx = 0", "javascript": "globalThis.x = 0"}


def _sandbox(language: str) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source("").language(language).max_fuel(None)
    builder.memory_limit(CAP).timeout_duration(timedelta(seconds=120))
    return builder.build()


def _ms(fn: Callable[[], object]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1e3, value


def _summary(times: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(times), "min": min(times), "rounds": len(times)}


def statement_rounds(sandbox: ws.WasmSandbox, rounds: int) -> list[float]:
    """run_peer.py's session measurement, ours: per statement, a new session per round."""

    def one() -> float:
        with sandbox.session() as session:
            start = time.perf_counter()
            session.exec("x = 0")
            for _ in range(19):
                session.exec("x += 1")
            per = (time.perf_counter() - start) * 1e3 / 20
            assert session.eval("x") == 19
        return per

    one()  # warm-up
    return [one() for _ in range(rounds)]


def long_session(sandbox: ws.WasmSandbox, statements: int) -> float:
    """The mean per statement over ``statements`` in one session (checkpoints included)."""
    with sandbox.session() as session:
        session.exec("x = 0")
        for _ in range(100):  # warm-up: the instance's pages
            session.exec("x += 1")
        start = time.perf_counter()
        for _ in range(statements):
            session.exec("x += 1")
        per = (time.perf_counter() - start) * 1e3 / statements
        assert session.eval("x") == statements + 100
    return per


def restore_after(sandbox: ws.WasmSandbox, language: str, history: int, rounds: int) -> list[float]:
    """The failing statement's time after ``history`` statements (the restore included)."""
    times = []
    for _ in range(rounds):
        with sandbox.session() as session:
            session.exec(SET[language])
            for _ in range(history):
                session.exec(ADD[language])
            start = time.perf_counter()
            try:
                session.exec(FAIL[language])
            except (ws.GuestExit, ws.MemoryLimitExceeded):
                times.append((time.perf_counter() - start) * 1e3)
            assert session.eval("x") == history and session.restores == 1
    return times


def operations(sandbox: ws.WasmSandbox, language: str, rounds: int) -> dict[str, Any]:
    """Checkpoint, rollback, fork, save and load on a session holding a little state."""
    found: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder, sandbox.session() as session:
        path = Path(folder) / "session.wsbx"
        session.exec(STATE[language])
        session.exec(SET[language])
        for _ in range(100):
            session.exec(ADD[language])
        for _ in range(rounds + 1):  # the first round is a warm-up
            took: dict[str, float] = {}
            took["checkpoint"], checkpoint = _ms(session.checkpoint)
            session.exec(ADD[language])
            took["rollback"], _ = _ms(lambda: session.rollback(checkpoint))  # noqa: B023
            took["fork"], fork = _ms(session.fork)
            took["fork_first_statement"], _ = _ms(lambda: fork.exec(ADD[language]))  # noqa: B023
            fork.close()
            took["save"], _ = _ms(lambda: session.save(path))
            took["load"], loaded = _ms(lambda: sandbox.load_session(path))
            assert loaded.eval("x") == 100
            loaded.close()
            for name, ms in took.items():
                found.setdefault(name, []).append(ms)
        sizes = {"checkpoint_bytes": checkpoint.size, "file_bytes": path.stat().st_size}
    return {**{name: _summary(times[1:]) for name, times in found.items()}, **sizes}


def measure_pyeryx(quick: bool, rounds: int) -> dict[str, Any] | None:
    """pyeryx's figures from its own venv (bench/peers), or None when it is not there."""
    from bench.peers.setup_peers import ensure_peers, measure_peer  # noqa: PLC0415

    peer = ensure_peers(quick=quick).get("pyeryx", {})
    if not peer.get("ok"):
        print(f"pyeryx skipped: {peer.get('reason')}", file=sys.stderr)
        return None
    return measure_peer("pyeryx", peer["python"], rounds, quick)


def _median(figures: dict[str, Any] | None, key: str) -> float | None:
    value = (figures or {}).get(key)
    if isinstance(value, dict) and isinstance(value.get("median"), int | float):
        return float(value["median"])
    return None


def statements_against_pyeryx(
    sandbox: ws.WasmSandbox, alternations: int, rounds: int, quick: bool, peers: bool
) -> dict[str, Any]:
    """Ours and pyeryx's statement figures, alternately; each pair's ratio."""
    pairs: list[dict[str, Any]] = []
    for _ in range(alternations):
        ours = statistics.median(statement_rounds(sandbox, rounds))
        eryx = _median(measure_pyeryx(quick, rounds), "session_stmt_ms") if peers else None
        pairs.append({"ours": ours, "pyeryx": eryx, "ratio": ours / eryx if eryx else None})
    ratios = [pair["ratio"] for pair in pairs if pair["ratio"] is not None]
    return {
        "pairs": pairs,
        "ours": statistics.median(pair["ours"] for pair in pairs),
        "pyeryx": statistics.median(p["pyeryx"] for p in pairs) if ratios else None,
        "ratio": statistics.median(ratios) if ratios else None,
    }


def report(figures: dict[str, Any]) -> list[str]:
    """The figures as lines, with the targets."""
    stmt = figures["statements"]
    lines = [f"statement (x += 1, new session per round): ours {stmt['ours']:.3f} ms"]
    if stmt["ratio"] is not None:
        pairs = ", ".join(f"{p['ratio']:.2f}x" for p in stmt["pairs"])
        lines.append(
            f"  pyeryx {stmt['pyeryx']:.3f} ms: {stmt['ratio']:.2f}x (each alternation: {pairs});"
            f" target <= 1.0x"
        )
    lines.append(
        f"statement in a 2,000-statement session (checkpoints included): "
        f"{figures['long_stmt_ms']:.3f} ms"
    )
    for language in ("python", "javascript"):
        ops = figures[language]
        lines.append(
            f"{language}: failed statement + restore after 1,000 statements "
            f"{ops['restore_after_1000']['median']:.1f} ms (after 0: "
            f"{ops['restore_after_0']['median']:.1f} ms); target <= 50 ms"
        )
        names = ("checkpoint", "rollback", "fork", "fork_first_statement", "save", "load")
        lines.append(
            "  " + ", ".join(f"{name} {ops[name]['median']:.2f}" for name in names) + " ms; "
            f"checkpoint {ops['checkpoint_bytes'] / 2**20:.1f} MiB, "
            f"file {ops['file_bytes'] / 2**20:.1f} MiB"
        )
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "sessions", "pyeryx in its own venv").parse_args()
    rounds, alternations, restores = (5, 1, 3) if args.quick else (21, 3, 11)
    peers = with_peers(args)
    python = _sandbox("python")
    figures: dict[str, Any] = {
        "statements": statements_against_pyeryx(python, alternations, rounds, args.quick, peers),
        "long_stmt_ms": long_session(python, 500 if args.quick else 2000),
    }
    for language in ("python", "javascript"):
        sandbox = python if language == "python" else _sandbox(language)
        figures[language] = {
            "restore_after_1000": _summary(restore_after(sandbox, language, 1000, restores)),
            "restore_after_0": _summary(restore_after(sandbox, language, 0, restores)),
            **operations(sandbox, language, rounds),
        }
    for line in report(figures):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

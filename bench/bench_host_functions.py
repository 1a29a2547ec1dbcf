#!/usr/bin/env python
"""Host functions (issue 14, part 4): the round trip of one host-function call from a guest.

    PYTHONPATH=src .venv/bin/python bench/bench_host_functions.py [--quick] [--json FILE]

Each figure is the median, over rounds, of one guest-side loop's time per call (measured in
the guest with its own clock, so the turn that starts the loop is not counted):

* ``python_noop``: ``ping()`` from a Python guest, a host function that returns None;
* ``python_args``: ``add(i, 1)`` (two ints in, one out);
* ``python_inline``: the same with ``inline=True`` (the function runs on the guest's thread,
  no worker hand-over);
* ``python_payload``: a 1 KiB string there and back;
* ``javascript_args``: ``host.add(i, 1)`` from a JavaScript guest;
* ``python_door``: the floor, a bare empty frame through the Python runtime's door (the
  cheapest way into the host, no JSON and no worker thread).

Target: a Python guest's call <= 50 µs. By default the function runs on a host worker
thread (so the deadline and ``host_call_timeout`` hold while it runs); ``handoff`` is that
hand-over's own cost, measured on the host alone (two thread switches and the GIL passed
both ways: the bulk of the difference with ``python_inline``). A measurement: exits 0 even
when a target is missed.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
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

from bench._args import bench_parser  # noqa: E402 - after the path is set

from wasm_sandbox._wasi import _hostcalls  # noqa: E402 - the hand-over is internal

PYTHON = """
import time, _host
from wasm_sandbox_host import ping, add, same, fast_add

def loop(kind, n):
    payload = "x" * 1024
    start = time.perf_counter()
    if kind == "python_noop":
        for _ in range(n):
            ping()
    elif kind == "python_args":
        for i in range(n):
            add(i, 1)
    elif kind == "python_inline":
        for i in range(n):
            fast_add(i, 1)
    elif kind == "python_payload":
        for _ in range(n):
            same(payload)
    elif kind == "python_door":
        for _ in range(n):
            _host.call(b'{"x":1}')
    return (time.perf_counter() - start) / n * 1e6
"""

JAVASCRIPT = """
function loop(n) {
  const start = performance.now();
  for (let i = 0; i < n; i++) host.add(i, 1);
  return (performance.now() - start) / n * 1000;
}
"""


def ping() -> None:
    return None


def add(a: int, b: int) -> int:
    return a + b


def same(text: str) -> str:
    return text


def _median(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "rounds": len(samples)}


def measure(rounds: int, calls: int) -> dict[str, Any]:
    """Microseconds per call, each variant in alternating rounds."""
    tools = [("ping", ping), ("add", add), ("same", same)]
    builder = ws.WasmSandbox.builder().source(PYTHON).language("python").max_fuel(None)
    js_builder = ws.WasmSandbox.builder().source(JAVASCRIPT).language("javascript")
    for name, fn in tools:
        builder.host_function(name, fn)
        js_builder.host_function(name, fn)
    builder.host_function("fast_add", add, inline=True)
    python, javascript = builder.build(), js_builder.max_fuel(None).build()
    runs = {
        kind: (lambda kind=kind: python.call("loop", kind, calls))
        for kind in ("python_noop", "python_args", "python_inline", "python_payload", "python_door")
    }
    runs["javascript_args"] = lambda: javascript.call("loop", calls)
    samples: dict[str, list[float]] = {kind: [] for kind in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(rounds):
        for kind, run in runs.items():
            samples[kind].append(float(run()))
    figures = {kind: _median(values) for kind, values in samples.items()}
    figures["handoff"] = _median([_handoff(calls) for _ in range(rounds)])
    return figures


def _handoff(calls: int) -> float:
    """The worker-thread hand-over alone, on the host: microseconds per job."""
    start = time.perf_counter()
    for _ in range(calls):
        job = _hostcalls._Job(ping, [], {})
        _hostcalls._hand_over(job)
        job.done.acquire()
    return (time.perf_counter() - start) / calls * 1e6


def report(figures: dict[str, Any]) -> list[str]:
    lines = [f"{'':18}{'median µs':>12}{'min µs':>10}"]
    for kind, figure in figures.items():
        lines.append(f"{kind:18}{figure['median']:>12.1f}{figure['min']:>10.1f}")
    for kind in ("python_args", "python_inline"):
        call = figures[kind]["median"]
        verdict = "PASS" if call <= 50 else "MISS"
        lines.append(f"target Python guest call <= 50 µs, {kind}: {call:.1f} µs ({verdict})")
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "host_functions").parse_args()
    figures = measure(rounds=5 if args.quick else 21, calls=500 if args.quick else 2000)
    for line in report(figures):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

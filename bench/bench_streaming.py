#!/usr/bin/env python
"""Streamed output and the output rescue (issue 14, part 3): what ``on_stdout`` costs a
chatty guest, and what keeping a stopped Python guest's output costs.

    PYTHONPATH=src .venv/bin/python bench/bench_streaming.py [--quick] [--json FILE]

Figures (median wall ms over the rounds, measured here in one run):

* ``100k prints``: a Python ``run()`` of ``for i in range(100000): print(i)`` and the same in
  JavaScript (``console.log``): not streamed; streamed to a callback that counts bytes; and,
  for Python, line-buffered but not delivered (the part of the cost that is the guest's
  100,000 writes rather than the delivery thread).
* ``rescue``: a fresh ``print('hi')`` with the rescue in place and with it disabled (it runs
  only after a limit stopped the guest: the normal path must cost the same); and a Python
  ``print(); while True: pass`` under a 100 ms timeout, its ``run()`` until the error, with
  and without the rescue (what keeping the output adds after the stop).

A measurement: exits 0 whatever the figures.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

from wasm_sandbox._execution import _execute  # noqa: E402 - the rescue is internal
from wasm_sandbox._observe import _output  # noqa: E402

PRINTS = {
    "python": "for i in range(100000):\n    print(i)\n",
    "javascript": "for (let i = 0; i < 100000; i++) console.log(i);",
}
SPIN = "print('spinning')\nwhile True: pass\n"


def _median_ms(fn: Callable[[], object], rounds: int, warm: int = 1) -> float:
    for _ in range(warm):
        fn()
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls) * 1e3


def _builder(source: str, language: str) -> ws.SandboxBuilder:
    return ws.WasmSandbox.builder().source(source).language(language).max_fuel(None)


@contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def measure_prints(rounds: int) -> dict[str, dict[str, float]]:
    """100k prints, per guest language: plain, streamed (and Python line-buffered only)."""
    figures: dict[str, dict[str, float]] = {}
    received = [0]

    def count(chunk: bytes) -> None:
        received[0] += len(chunk)

    for language, source in PRINTS.items():
        plain = _builder(source, language).build()
        streamed = _builder(source, language).on_stdout(count).build()
        expected = len(plain.run().stdout)
        row = {
            "plain": _median_ms(plain.run, rounds),
            "streamed": _median_ms(streamed.run, rounds),
        }
        received[0] = 0
        streamed.run()
        if received[0] != expected:
            raise SystemExit(f"{language}: {received[0]} bytes delivered, {expected} printed")
        if language == "python":
            with _patched(_output.OutputStreams, "put", lambda self, stream, data: None):
                row["line_buffered_only"] = _median_ms(streamed.run, rounds)
        figures[language] = row
    return figures


def _spin_until_error(sandbox: ws.WasmSandbox) -> bytes:
    try:
        sandbox.run()
    except ws.ExecutionTimeout as error:
        return error.stdout
    raise SystemExit("the spinning guest was not stopped")


def measure_rescue(rounds: int) -> dict[str, float]:
    """The rescue on the normal path (must be ~0) and after a timeout."""
    hello = _builder("print('hi')", "python").build()
    spin = _builder(SPIN, "python").timeout_duration(0.1).build()
    skip = _patched(_execute, "_rescue_output", lambda ctx, call, instance: None)
    figures = {"fresh_print": _median_ms(hello.run, rounds * 20, warm=20)}
    with skip:
        figures["fresh_print_without_rescue"] = _median_ms(hello.run, rounds * 20, warm=20)
    figures["fresh_print_again"] = _median_ms(hello.run, rounds * 20, warm=20)
    if _spin_until_error(spin) != b"spinning\n":
        raise SystemExit("the rescue did not keep the output")
    figures["timeout_100ms_run"] = _median_ms(lambda: _spin_until_error(spin), rounds)
    with _patched(_execute, "_rescue_output", lambda ctx, call, instance: None):
        figures["timeout_100ms_run_without_rescue"] = _median_ms(
            lambda: _spin_until_error(spin), rounds
        )
    return figures


def report(prints: dict[str, dict[str, float]], rescue: dict[str, float]) -> list[str]:
    lines = [f"{'100k prints':14}{'plain':>10}{'streamed':>10}{'line-buf':>10}   (median ms)"]
    for language, row in prints.items():
        buffered = row.get("line_buffered_only")
        cells = [f"{row['plain']:.0f}", f"{row['streamed']:.0f}",
                 "-" if buffered is None else f"{buffered:.0f}"]  # fmt: skip
        lines.append(f"{language:14}" + "".join(f"{c:>10}" for c in cells))
    with_, without = rescue["fresh_print"], rescue["fresh_print_without_rescue"]
    lines.append(
        f"fresh print('hi'): {with_:.3f} ms with the rescue, {without:.3f} ms without, "
        f"{rescue['fresh_print_again']:.3f} ms with it again"
    )
    lines.append(
        f"run() stopped by a 100 ms timeout: {rescue['timeout_100ms_run']:.1f} ms with the "
        f"rescue (output kept), {rescue['timeout_100ms_run_without_rescue']:.1f} ms without"
    )
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "streaming").parse_args()
    rounds = 3 if args.quick else 9
    prints = measure_prints(rounds)
    rescue = measure_rescue(rounds)
    for line in report(prints, rescue):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"prints": prints, "rescue": rescue}, indent=2))


if __name__ == "__main__":
    main()

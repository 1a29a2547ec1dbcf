#!/usr/bin/env python
"""MCP round trip (issue 14, part 5): ``print('hi')`` through ``wasm-sandbox mcp`` over stdio,
against the same code run directly in this process.

    PYTHONPATH=src .venv/bin/python bench/bench_mcp.py [--quick] [--json FILE]

Figures, each the median wall time of one call after a warm-up:

* ``mcp run_python``: a ``tools/call`` of ``run_python`` from the MCP SDK's own client to a
  server process it spawned (``python -m wasm_sandbox mcp``, stdio transport), until the
  answer is decoded: JSON-RPC over pipes, the server's asyncio loop, a worker thread, a fresh
  interpreter, the answer's schema validation on both sides;
* ``mcp session_exec``: the same code as a statement of an open session;
* ``direct run_python``: ``wasm_sandbox.run_python("print('hi')")`` in this process (what the
  one-liner costs, building its sandbox or reusing it as the installed version does);
* ``direct run_code``: ``WasmSandbox.run_code`` on a sandbox built once (what the server does
  for each call).

The ratios say what the protocol adds. A measurement: it always exits 0.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
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

CODE = "print('hi')"
WARM_UP = 5


def _median_ms(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples) * 1e3,
        "min": min(samples) * 1e3,
        "rounds": len(samples),
    }


def _times(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return _median_ms(samples)


async def _async_times(fn: Callable[[], Awaitable[object]], rounds: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        await fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return _median_ms(samples)


def measure_direct(rounds: int) -> dict[str, Any]:
    """``run_python`` and ``run_code`` in this process, in milliseconds."""
    assert ws.run_python(CODE).stdout == "hi\n"
    sandbox = ws.WasmSandbox.builder().language("python").source("").max_fuel(None).build()
    assert sandbox.run_code(CODE).stdout == "hi\n"
    return {
        "run_python": _times(lambda: ws.run_python(CODE), rounds),
        "run_code": _times(lambda: sandbox.run_code(CODE), rounds),
    }


async def _measure_mcp(rounds: int) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: PLC0415

    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    if "WASM_SANDBOX_CACHE_DIR" in os.environ:
        env["WASM_SANDBOX_CACHE_DIR"] = os.environ["WASM_SANDBOX_CACHE_DIR"]
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "wasm_sandbox", "mcp"], env=env
    )
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()  # the client validates answers against the listed schemas

        async def run() -> None:
            answer = await session.call_tool("run_python", {"code": CODE})
            assert answer.structured_content is not None, answer
            assert answer.structured_content["stdout"] == "hi\n", answer

        opened = await session.call_tool("session_open", {"language": "python"})
        assert opened.structured_content is not None, opened
        session_id = opened.structured_content["session_id"]

        async def statement() -> None:
            answer = await session.call_tool(
                "session_exec", {"session_id": session_id, "code": CODE}
            )
            assert answer.structured_content is not None, answer
            assert answer.structured_content["stdout"] == "hi\n", answer

        figures = {
            "run_python": await _async_times(run, rounds),
            "session_exec": await _async_times(statement, rounds),
        }
        await session.call_tool("session_close", {"session_id": session_id})
        return figures


def measure_mcp(rounds: int) -> dict[str, Any] | None:
    """The MCP round trips over stdio, in milliseconds; None without the SDK."""
    try:
        import anyio  # noqa: PLC0415
        import mcp  # noqa: F401, PLC0415
    except ImportError:
        return None
    figures: dict[str, Any] = anyio.run(_measure_mcp, rounds)
    return figures


def report(direct: dict[str, Any], over_mcp: dict[str, Any] | None) -> list[str]:
    """The figures and the ratios."""
    lines = [f"{'print(hi)':32}{'median ms':>10}{'min ms':>10}"]
    rows = [(f"direct {name}", figures) for name, figures in direct.items()]
    if over_mcp is not None:
        rows += [(f"mcp stdio {name}", figures) for name, figures in over_mcp.items()]
    for name, figures in rows:
        lines.append(f"{name:32}{figures['median']:>10.2f}{figures['min']:>10.2f}")
    if over_mcp is None:
        lines.append("mcp not measured: pip install 'wasm-sandbox[mcp]'")
        return lines
    mcp_run = over_mcp["run_python"]["median"]
    for name in ("run_python", "run_code"):
        base = direct[name]["median"]
        lines.append(
            f"mcp run_python / direct {name}: {mcp_run:.2f} / {base:.2f} ms = "
            f"{mcp_run / base:.2f}x ({mcp_run - base:+.2f} ms)"
        )
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "mcp").parse_args()
    rounds = 21 if args.quick else 201
    direct = measure_direct(rounds)
    over_mcp = measure_mcp(rounds)
    for line in report(direct, over_mcp):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"direct": direct, "mcp_stdio": over_mcp}, indent=2))


if __name__ == "__main__":
    main()

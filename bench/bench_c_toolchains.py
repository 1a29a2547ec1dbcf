#!/usr/bin/env python
"""C compile time with each toolchain (issue 15, part 5): Debian's clang-14 + wasi-libc
against zig from the ``ziglang`` package (``wasm-sandbox[c]``), same sources, same flags.

    PYTHONPATH=src .venv/bin/python bench/bench_c_toolchains.py [--quick] [--json FILE]

Each figure is the median wall time of the package's whole C compile (``compile_source``:
finding the compiler, its version, the compile) with the compiled-guest cache bypassed. The
rounds alternate between the toolchains, and each round's source differs by one function, so
zig's own compile cache (in ``~/.cache/zig``) cannot answer: ``cold``. ``zig, same source``
repeats one source, which zig's cache answers (what a user whose guest cache was cleared
sees). Without ``--quick``, ``zig, first use`` is zig's first compile on a machine, which
builds its wasi-libc into an empty cache directory (once per machine and zig version).
A measurement: it exits 0 whatever the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
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

from wasm_sandbox._guests import _compile  # noqa: E402 - the compile step is internal

HELLO = b"""#include <stdio.h>
#include <stdlib.h>
int main(void) { char *p = malloc(16); printf("hello %p\\n", (void *)p); free(p); return 0; }
"""
DATA = b"""#include "wasm_sandbox.h"
static char *echo(const char *args_json, size_t len, const char **error_type) {
    wsbx_builder b; wsbx_builder_init(&b); wsbx_json_raw(&b, args_json);
    return wsbx_builder_finish(&b);
}
WASM_SANDBOX_EXPORT(process_data, echo)
"""
SOURCES = {
    "hello.c (printf, malloc)": HELLO,
    "data ABI library (wasm_sandbox.h)": DATA,
    "tests/guests/fs_security.c": (REPO / "tests" / "guests" / "fs_security.c").read_bytes(),
}


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def compile_with(toolchain: str, source: bytes) -> tuple[float, int]:
    """(seconds, module bytes) of one package compile of ``source`` by ``toolchain``."""
    with environment(WASM_SANDBOX_C_TOOLCHAIN=toolchain):
        start = time.perf_counter()
        wasm = _compile.compile_source(source, "c", None, "bench.c")
        return time.perf_counter() - start, len(wasm)


def summary(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1e3 for s in seconds]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "rounds": len(ms)}


def measure(source: bytes, rounds: int, toolchains: list[str]) -> dict[str, Any]:
    """Cold compiles of ``source``, alternating the toolchains; then zig on one source."""
    times: dict[str, list[float]] = {name: [] for name in toolchains}
    sizes: dict[str, int] = {}
    nonce = time.time_ns()
    for i in range(rounds):
        unique = source + f"\nint bench_round_{nonce}_{i}(void) {{ return {i}; }}\n".encode()
        for name in toolchains if i % 2 == 0 else reversed(toolchains):
            seconds, sizes[name] = compile_with(name, unique)
            times[name].append(seconds)
    figures: dict[str, Any] = {
        name: {**summary(times[name]), "module_bytes": sizes[name]} for name in toolchains
    }
    if "zig" in toolchains:
        compile_with("zig", source)  # zig's cache now has it
        figures["zig, same source"] = summary([compile_with("zig", source)[0] for _ in range(3)])
    return figures


def first_use() -> dict[str, Any]:
    """zig's first compile with an empty cache directory (it builds its wasi-libc)."""
    with (
        tempfile.TemporaryDirectory(prefix="zig-cache-") as cache,
        environment(ZIG_GLOBAL_CACHE_DIR=cache),
    ):
        seconds, _ = compile_with("zig", HELLO)
    return summary([seconds])


def available() -> list[str]:
    found = []
    for name in ("clang", "zig"):
        try:
            with environment(WASM_SANDBOX_C_TOOLCHAIN=name):
                _compile.find_toolchain("c")
        except ws.ToolchainNotFound as exc:
            print(f"{name}: not measured ({exc})")
            continue
        found.append(name)
    return found


def report(results: dict[str, Any], versions: dict[str, str]) -> list[str]:
    lines = [f"{'':36}{'median ms':>11}{'min ms':>9}{'module':>10}   " + ", ".join(
        f"{k}: {v}" for k, v in versions.items())]  # fmt: skip
    for source, figures in results.items():
        if source == "zig, first use":
            lines.append(f"zig, first use (builds its wasi-libc): {figures['median_ms']:.0f} ms")
            continue
        lines.append(source)
        for name, f in figures.items():
            size = f"{f['module_bytes'] / 1024:.0f} KiB" if "module_bytes" in f else ""
            lines.append(f"  {name:34}{f['median_ms']:>11.0f}{f['min_ms']:>9.0f}{size:>10}")
        if "clang" in figures and "zig" in figures:
            ratio = figures["zig"]["median_ms"] / figures["clang"]["median_ms"]
            lines.append(f"  {'zig / clang, cold':34}{ratio:>10.2f}x")
    return lines


def main() -> None:
    args = bench_parser(__doc__ or "", "c_toolchains").parse_args()
    toolchains = available()
    versions: dict[str, str] = {}
    for name in toolchains:
        with environment(WASM_SANDBOX_C_TOOLCHAIN=name):
            versions[name] = _compile.find_toolchain("c").version
    rounds = 3 if args.quick else 11
    results: dict[str, Any] = {
        name: measure(source, rounds, toolchains) for name, source in SOURCES.items()
    }
    if "zig" in toolchains and not args.quick:
        results["zig, first use"] = first_use()
    for line in report(results, versions):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"cpus": os.cpu_count(), "versions": versions, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()

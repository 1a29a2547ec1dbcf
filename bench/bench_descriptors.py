#!/usr/bin/env python
"""Descriptor allocation: the cost of one open() as a guest holds more and more files, ours
against wasmtime's built-in WASI (wasmtime-py) in the same run.

    PYTHONPATH=src .venv/bin/python bench/bench_descriptors.py [--quick] [--json PATH]

A C guest (tests/guests/fs_shell.c, ``openmany``) opens one mounted file N times and keeps
every descriptor. Our table allocates numbers from a heap of freed ones (O(log n)) and keeps
its counts as it changes, so the time per open must stay flat from N = 1,000 to N = 30,000
(it grew with N while allocation was a linear scan: 91 -> 876 µs per open from N = 1,000 to
10,000 on 2026-12-04). ``max_open_files`` is unset and RLIMIT_NOFILE raised to its hard
limit for the run; counts above 70% of it (past our headroom) are skipped. Medians of a few
runs per N.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

import wasm_sandbox as ws  # noqa: E402


def build_guest(out: Path) -> Path:
    wasm = out / "fs_shell.wasm"
    subprocess.run(
        ["clang-14", "--target=wasm32-wasi", "-O2", "-o", str(wasm),
         str(ROOT / "tests" / "guests" / "fs_shell.c")],
        check=True,
    )  # fmt: skip
    return wasm


def run_ours(wasm: Path, data: Path, count: int) -> float:
    limits = ws.ResourceLimits(execution_timeout=600)
    sandbox = (
        ws.WasmSandbox.builder().source(wasm).resource_limits(limits)
        .mount_directory(data, "/d").build()
    )  # fmt: skip
    start = time.perf_counter()
    result = sandbox.run([f"openmany:/d/f:{count}"])
    elapsed = time.perf_counter() - start
    if result.stdout.decode().strip() != f"openmany:/d/f:{count}: {count}":
        raise RuntimeError(f"ours: {result.stdout!r}")
    return elapsed


def run_wasmtime(engine: wasmtime.Engine, module: wasmtime.Module, data: Path, count: int) -> float:
    config = wasmtime.WasiConfig()
    config.argv = ["fs_shell", f"openmany:/d/f:{count}"]
    config.preopen_dir(str(data), "/d")
    with tempfile.NamedTemporaryFile() as out:
        config.stdout_file = out.name
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        store = wasmtime.Store(engine)
        store.set_wasi(config)
        instance = linker.instantiate(store, module)
        start_fn = instance.exports(store)["_start"]
        assert isinstance(start_fn, wasmtime.Func)
        start = time.perf_counter()
        start_fn(store)
        elapsed = time.perf_counter() - start
        text = Path(out.name).read_text().strip()
    if text != f"openmany:/d/f:{count}: {count}":
        raise RuntimeError(f"wasmtime: {text!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, fewer rounds")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "descriptors.json")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = [1000, 5000] if args.quick else [1000, 10_000, 30_000]
    rounds = 3 if args.quick else 5
    counts = [c for c in counts if c < hard * 0.7]  # under our headroom below the limit
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wasm = build_guest(Path(tmp))
        data = Path(tmp, "data")
        data.mkdir()
        (data / "f").write_text("x")
        engine = wasmtime.Engine()
        module = wasmtime.Module.from_file(engine, str(wasm))
        print(f"{'N':>7} {'ours µs/open':>14} {'wasmtime µs/open':>18} {'ratio':>7}")
        for count in counts:
            ours = statistics.median(run_ours(wasm, data, count) for _ in range(rounds))
            theirs = statistics.median(
                run_wasmtime(engine, module, data, count) for _ in range(rounds)
            )
            per_ours, per_theirs = ours / count * 1e6, theirs / count * 1e6
            results[str(count)] = {"ours_us": per_ours, "wasmtime_us": per_theirs}
            print(f"{count:>7} {per_ours:>14.2f} {per_theirs:>18.2f} {per_ours / per_theirs:>7.2f}")
    first, last = results[str(counts[0])], results[str(counts[-1])]
    growth = last["ours_us"] / first["ours_us"]
    print(f"ours: time per open at N={counts[-1]} is {growth:.2f}x that at N={counts[0]}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"per_open": results, "growth": growth}, indent=2) + "\n")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""What building an untrusted module costs, with and without a build budget.

    PYTHONPATH=src .venv/bin/python bench/bench_build.py [--quick] [--json FILE]

The module is the one of issue 10: 100,000 empty functions (400 KB), built with the
STANDARD profile (fuel metering on, as in the issue). Each variant runs in a fresh process
with the disk cache off, so every build compiles; the figures are the wall time of the
build and the peak RSS of the building process and of its compiling child, if any
(``ru_maxrss``; a child's figure includes the few tens of MB it shares with its parent at
``fork``). A small module shows what compiling in a child process costs by itself. The
script is a measurement: it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

# name -> (module, builder options); --quick skips the unbudgeted compile of 15-20 s.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "100k functions, no budget (default)": ("many", {}),
    "100k functions, max_functions(20_000)": ("many", {"max_functions": 20_000}),
    "100k functions, build_timeout(2s)": ("many", {"build_timeout": 2}),
    "100k functions, build_memory_limit(256MiB)": ("many", {"build_memory_limit": "256MiB"}),
    "small module, in process": ("small", {}),
    "small module, build_timeout(60s)": ("small", {"build_timeout": 60}),
}
SLOW = ("100k functions, no budget (default)", "100k functions, build_memory_limit(256MiB)")

# Runs in a fresh interpreter: builds the module once, prints one JSON line.
ONE_BUILD = """
import json, resource, sys, time
import wasm_sandbox as ws

def uleb(v):
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)

def section(sid, payload):
    return bytes([sid]) + uleb(len(payload)) + payload

def many(n):
    return (b"\\0asm\\x01\\0\\0\\0" + section(1, b"\\x01\\x60\\x00\\x00")
            + section(3, uleb(n) + b"\\x00" * n) + section(7, b"\\x01\\x01f\\x00\\x00")
            + section(10, uleb(n) + b"\\x02\\x00\\x0b" * n))

small = b'(module (func (export "f") (param i32) (result i32) (local.get 0)))'
module = many(100_000) if sys.argv[1] == "many" else small
builder = ws.WasmSandbox.builder().source(module).cache_dir(None)
for name, value in json.loads(sys.argv[2]).items():
    getattr(builder, name)(value)
started = time.monotonic()
try:
    builder.build()
    outcome = "built"
except ws.SandboxError as error:
    outcome = f"{type(error).__name__}: {error}"
seconds = time.monotonic() - started
print(json.dumps({
    "bytes": len(module),
    "seconds": round(seconds, 3),
    "outcome": outcome,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    "child_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024,
}))
"""


def one(module: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build ``module`` with ``options`` in a fresh process; its JSON line."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, "-c", ONE_BUILD, module, json.dumps(options)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the two slow variants")
    parser.add_argument("--json", default=str(HERE / "results" / "build.json"))
    args = parser.parse_args()
    results = {}
    print(f"{'variant':44} {'time':>8} {'RSS':>8} {'child RSS':>10}  outcome")
    for name, (module, options) in VARIANTS.items():
        if args.quick and name in SLOW:
            continue
        result = results[name] = {"options": options, **one(module, options)}
        child = f"{result['child_peak_rss_mib']} MiB" if result["child_peak_rss_mib"] else "-"
        print(
            f"{name:44} {result['seconds']:7.2f}s {result['peak_rss_mib']:5d} MiB {child:>10}"
            f"  {result['outcome'][:90]}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()

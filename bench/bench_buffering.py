"""Effect of io_batch_size / buffer_size: a C guest making many small write() calls to a file.

Measures, in one run, the same guest on the same mounted directory with write buffering off,
with io_batch_size=256 and with buffer_size=64 KiB: wall time per run and the number of host
write(2) calls (the kernel's count, from /proc/self/io). Prints a table and writes
bench/results/buffering.json. A measurement, not a test: exits 0.

    PYTHONPATH=src .venv/bin/python bench/bench_buffering.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import wasm_sandbox as ws  # noqa: E402

GUEST = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int lines = atoi(argv[1]);
    int fd = open("/data/out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char line[32];
    for (int i = 0; i < lines; i++) {
        int n = snprintf(line, sizeof line, "record %d\n", i);
        if (write(fd, line, (size_t)n) != n) return 1;
    }
    close(fd);
    return 0;
}
"""

VARIANTS = {
    "unbuffered": ws.ResourceLimits(),
    "io_batch_size=256": ws.ResourceLimits(io_batch_size=256),
    "buffer_size=64KiB": ws.ResourceLimits(buffer_size=64 * 1024),
}


def host_writes() -> int:
    """write(2) calls this process has made (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer writes and rounds")
    args = parser.parse_args()
    writes, rounds = (20_000, 3) if args.quick else (100_000, 9)
    work = Path(tempfile.mkdtemp(prefix="bench-buffering-"))
    try:
        source = work / "writes.c"
        source.write_text(GUEST)
        wasm = work / "writes.wasm"
        clang = shutil.which("clang-14") or "clang"
        subprocess.run([clang, "--target=wasm32-wasi", "-O2", "-o", wasm, source], check=True)
        data = work / "data"
        data.mkdir()
        builder = ws.WasmSandbox.builder().source(wasm)
        builder.mount_directory(data, "/data", read_only=False)
        sandboxes = {
            name: builder.resource_limits(limits).build() for name, limits in VARIANTS.items()
        }
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        syscalls: dict[str, int] = {}
        for round_ in range(rounds + 1):  # round 0 warms up
            order = list(VARIANTS) if round_ % 2 else list(reversed(VARIANTS))
            for name in order:
                before = host_writes()
                started = time.perf_counter()
                result = sandboxes[name].run([str(writes)])
                elapsed = time.perf_counter() - started
                count = host_writes() - before
                if result.exit_code != 0:
                    raise SystemExit(f"{name}: guest failed with {result.exit_code}")
                if round_:
                    times[name].append(elapsed)
                    syscalls[name] = count
        expected = sum(len(f"record {i}\n") for i in range(writes))
        if (data / "out.txt").stat().st_size != expected:
            raise SystemExit("output file has the wrong size")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["unbuffered"])
    print(f"{writes:,} write() calls of ~12 bytes each, median of {rounds} rounds")
    print(f"{'variant':<20} {'median/run':>11} {'vs unbuffered':>14} {'host writes':>12}")
    rows = {}
    for name in VARIANTS:
        median = statistics.median(times[name])
        rows[name] = {"median_s": median, "ratio": median / base, "host_writes": syscalls[name]}
        print(f"{name:<20} {median * 1000:>9.1f} ms {median / base:>13.2f}x {syscalls[name]:>12,}")
    out = HERE / "results" / "buffering.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"writes": writes, "rounds": rounds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""WASI I/O performance of wasm_sandbox's own preview1 layer, each figure a ratio against
wasmtime's built-in WASI (wasmtime-py) measured in the same run (see bench/README.md).

    PYTHONPATH=src .venv/bin/python bench/bench_io.py [--quick] [--check] [--profile]

1. file read    a C guest reads a 100 MB file of a read-only mount in 64 KiB read() calls:
                ours/raw throughput >= 0.5x
2. printf       a C guest printf()s 100,000 lines to stdout: ours/raw time <= 2x

Both measure whole runs (instantiate + ``_start``), the module compiled once per side. The
guests (bench/guests/*.c) are compiled at start-up with clang-14 --target=wasm32-wasi. Runs
are timed in batches, alternating the variants round by round exactly as bench_core.py does
(its ``compare`` is reused); medians and minimums over the rounds decide. The script is a
measurement: it exits 0 even when a target is missed, unless ``--check`` is given.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# bench_core imports wasm_sandbox (falling back to the checkout's src/) and holds the method
from bench_core import Sample, compare, environment, fmt_ns, profile_calls  # noqa: E402

from wasm_sandbox import WasmSandbox  # noqa: E402

GUESTS = HERE / "guests"
FILE_MB = 100  # MiB: 100 x 1 MiB of random bytes
CHUNK = 64 * 1024  # the guest's read() size
LINES = 100_000
BIG_STDIO_BUFFER = 4 << 20  # printf guest's optional setvbuf size (information rows)
GUEST_DIR = "/data"
FILE_NAME = "big.bin"
OUTPUT_CAP = 64 * 1024 * 1024  # our max_output_bytes: far above the ~2.2 MB printf output
READ_TARGET = 0.5  # ours/raw throughput, at least
PRINTF_TARGET = 2.0  # ours/raw time, at most


# --------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int  # alternating rounds
    batch_ms: float  # target duration of one timed batch (at least one run)
    warmup_ms: float  # per variant, before calibration


FULL = Settings(False, rounds=21, batch_ms=150.0, warmup_ms=500.0)
QUICK = Settings(True, rounds=5, batch_ms=40.0, warmup_ms=100.0)


# --------------------------------------------------------------------------------------
# Results


@dataclass
class IoResult:
    key: str
    title: str
    ours: Sample
    baseline: Sample
    info: list[Sample]
    target: float
    throughput_bytes: int | None = None  # read: ratio is of throughputs (higher is better)
    # info row -> (numerator row, denominator row) of the ratio shown on it; default
    # (ours, that row): ours against that row as the baseline
    info_ratios: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return self.throughput_bytes is not None

    def _ratio(self, ours_ns: float, base_ns: float) -> float:
        # read: ours/raw throughput = raw time / ours time; printf: ours time / raw time
        return base_ns / ours_ns if self.higher_is_better else ours_ns / base_ns

    @property
    def ratio(self) -> float:
        return self._ratio(self.ours.median, self.baseline.median)

    @property
    def ratio_min(self) -> float:
        return self._ratio(self.ours.min, self.baseline.min)

    @property
    def paired_ratio(self) -> float:
        pairs = zip(self.ours.per_op_ns, self.baseline.per_op_ns, strict=False)
        return statistics.median(self._ratio(o, b) for o, b in pairs)

    @property
    def passed(self) -> bool:
        if self.failed_checks:
            return False
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        return f">= {self.target:g}x" if self.higher_is_better else f"<= {self.target:g}x"

    def mb_per_s(self, ns: float) -> float:
        assert self.throughput_bytes is not None
        return self.throughput_bytes / 1e6 / (ns / 1e9)

    def info_ratio(self, s: Sample) -> tuple[str, float] | None:
        """The ratio shown on info row ``s`` and what it compares, or None."""
        pair = self.info_ratios.get(s.name, ("ours", s.name))
        if pair is None:
            return None
        by_name = {x.name: x for x in (self.ours, self.baseline, *self.info)}
        top, bottom = by_name[pair[0]], by_name[pair[1]]
        return f"{top.name} vs {bottom.name}", self._ratio(top.median, bottom.median)

    def sample_dict(self, s: Sample) -> dict[str, Any]:
        out = {"name": s.name, **s.to_dict()}
        shown = self.info_ratio(s) if s in self.info else None
        if shown is not None:
            out["ratio"] = {"of": shown[0], "value": round(shown[1], 3)}
        if self.higher_is_better:
            out["median_MB_per_s"] = round(self.mb_per_s(s.median), 1)
            out["max_MB_per_s"] = round(self.mb_per_s(s.min), 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "ratio": round(self.ratio, 3),
            "ratio_definition": (
                f"throughput {self.ours.name} / {self.baseline.name} (medians)"
                if self.higher_is_better
                else f"time {self.ours.name} / {self.baseline.name} (medians)"
            ),
            "ratio_of_minimums": round(self.ratio_min, 3),
            "paired_ratio_median": round(self.paired_ratio, 3),
            "target": self.target_text,
            "passed": self.passed,
            **({"bytes_per_run": self.throughput_bytes} if self.higher_is_better else {}),
            "ours": self.sample_dict(self.ours),
            "baseline": self.sample_dict(self.baseline),
            "info": {s.name: self.sample_dict(s) for s in self.info},
            "notes": self.notes,
            "failed_checks": self.failed_checks,
        }


# --------------------------------------------------------------------------------------
# Guests and data


def find_clang() -> str:
    for name in (os.environ.get("CLANG"), "clang-14", "clang"):
        if name and shutil.which(name):
            return name
    raise SystemExit("bench_io: no clang found (set CLANG=...); needs --target=wasm32-wasi")


def compile_guest(clang: str, name: str, out_dir: Path) -> Path:
    out = out_dir / f"{name}.wasm"
    cmd = [clang, "--target=wasm32-wasi", "-O2", "-o", str(out), str(GUESTS / f"{name}.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_io: compiling {name}.c failed:\n{proc.stderr}")
    return out


def make_data_file(path: Path, mib: int) -> bytes:
    """``mib`` MiB: one random MiB repeated. Returns the expected guest output line."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)
    return expected_read_output(block, mib)


def expected_read_output(block: bytes, mib: int) -> bytes:
    """What read_file.c prints for ``block`` repeated ``mib`` times (read in 64 KiB chunks)."""
    mask = (1 << 64) - 1
    total = checksum = 0
    u64 = struct.Struct("<Q").unpack_from
    for _ in range(mib):
        for start in range(0, len(block), CHUNK):
            n = min(CHUNK, len(block) - start)
            for i in range(0, n - 7, 4096):
                checksum = ((checksum * 31) & mask) ^ u64(block, start + i)[0]
            checksum = (checksum + n) & mask
            total += n
    return f"bytes={total} checksum={checksum:016x}\n".encode()


def expected_printf_output(lines: int) -> bytes:
    return "".join(f"line {i}: some text\n" for i in range(lines)).encode()


# --------------------------------------------------------------------------------------
# The two sides


def our_sandbox(wasm: Path, data_dir: Path) -> WasmSandbox:
    return (
        WasmSandbox.builder()
        .source(wasm)
        .mount_directory(data_dir, GUEST_DIR, read_only=True)
        .max_fuel(None)
        .timeout_duration(None)
        .max_output_bytes(OUTPUT_CAP)
        .cache_dir(None)
        .build()
    )


class RawWasi:
    """The same guest on wasmtime-py with its built-in WASI: one Engine, Module and Linker
    (``define_wasi``); per run a WasiConfig, Store, instantiate and ``_start``."""

    def __init__(
        self, wasm: Path, data_dir: Path, *, epoch: bool = False, stdout: Path | None = None
    ) -> None:
        config = wasmtime.Config()
        if epoch:  # like wasm_sandbox's engines (information)
            config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.module = wasmtime.Module(self.engine, wasm.read_bytes())
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.data_dir = str(data_dir)
        self.epoch = epoch
        self.stdout = str(stdout) if stdout is not None else None
        self.chunks: list[bytes] = []  # stdout_custom: what the guest wrote

    def run(self, args: list[str]) -> int:
        cfg = wasmtime.WasiConfig()
        cfg.argv = ["guest", *args]
        cfg.preopen_dir(self.data_dir, GUEST_DIR, fs_mutable=False)
        if self.stdout is not None:
            cfg.stdout_file = self.stdout
        else:
            chunks = self.chunks = []
            cfg.stdout_custom = chunks.append
        store = wasmtime.Store(self.engine)
        if self.epoch:
            store.set_epoch_deadline(2**40)
        store.set_wasi(cfg)
        instance = self.linker.instantiate(store, self.module)
        start = instance.exports(store)["_start"]
        try:
            start(store)  # type: ignore[operator]
        except wasmtime.ExitTrap as exc:
            return exc.code
        return 0

    def output(self) -> bytes:
        if self.stdout is not None:
            return Path(self.stdout).read_bytes()
        return b"".join(self.chunks)


def check_ours(result: IoResult, name: str, run: Callable[[], Any], want: bytes) -> None:
    r = run()
    if r.exit_code != 0:
        result.failed_checks.append(f"{name}: exit code {r.exit_code}")
    if r.stdout_truncated:
        result.failed_checks.append(f"{name}: stdout truncated at {len(r.stdout)} bytes")
    if r.stdout != want:
        result.failed_checks.append(
            f"{name}: stdout {describe(r.stdout)}, expected {describe(want)}"
        )


def check_raw(result: IoResult, name: str, raw: RawWasi, args: list[str], want: bytes) -> None:
    code = raw.run(args)
    got = raw.output()
    if code != 0:
        result.failed_checks.append(f"{name}: exit code {code}")
    if got != want:
        result.failed_checks.append(f"{name}: stdout {describe(got)}, expected {describe(want)}")


def describe(data: bytes) -> str:
    if len(data) <= 80:
        return repr(data)
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


# --------------------------------------------------------------------------------------
# 1. file read


def bench_read(
    s: Settings, wasm: Path, data_dir: Path, work: Path, want: bytes
) -> tuple[IoResult, Callable[[], Any]]:
    size = FILE_MB << 20
    args = [f"{GUEST_DIR}/{FILE_NAME}"]
    sandbox = our_sandbox(wasm, data_dir)

    def ours() -> Any:
        return sandbox.run(args)

    raw_side = RawWasi(wasm, data_dir, stdout=work / "read-raw.out")

    def raw() -> int:
        return raw_side.run(args)

    path = data_dir / FILE_NAME
    buf = bytearray(CHUNK)

    def host_floor() -> int:  # the host's own 64 KiB read loop into one buffer
        total = 0
        with open(path, "rb", buffering=0) as f:
            readinto = f.readinto
            while n := readinto(buf):
                total += n
        return total

    samples = compare(
        {"ours": ours, "raw": raw, "host readinto": host_floor},
        s.rounds, s.batch_ms, s.warmup_ms,
    )  # fmt: skip
    notes = {
        "ours": "wasm_sandbox run(): our WASI layer, read-only mount at /data",
        "raw": "wasmtime-py built-in WASI, preopen_dir(fs_mutable=False), stdout_file",
        "host readinto": "Python: open + readinto(64 KiB buffer) loop over the file, no wasm"
        " (floor, information)",
    }
    for name, note in notes.items():
        samples[name].note = note
    result = IoResult(
        "file_read_100mb",
        f"read {FILE_MB} MiB in 64 KiB reads",
        samples["ours"],
        samples["raw"],
        [samples["host readinto"]],
        target=READ_TARGET,
        throughput_bytes=size,
    )
    result.notes.append(
        f"file: {FILE_MB} x the same random MiB ({size} bytes), in the page cache (warm)"
    )
    check_ours(result, "ours", ours, want)
    check_raw(result, "raw", raw_side, args, want)
    if host_floor() != size:
        result.failed_checks.append("host readinto: wrong size")
    return result, ours


# --------------------------------------------------------------------------------------
# 2. printf


def bench_printf(
    s: Settings, wasm: Path, data_dir: Path, work: Path
) -> tuple[IoResult, Callable[[], Any]]:
    args = [str(LINES)]
    big = [str(LINES), str(BIG_STDIO_BUFFER)]  # the guest's stdout with a 4 MiB stdio buffer
    want = expected_printf_output(LINES)
    sandbox = our_sandbox(wasm, data_dir)
    raw_file = RawWasi(wasm, data_dir, stdout=work / "printf-raw.out")
    raw_custom = RawWasi(wasm, data_dir, stdout=None)
    raw_epoch = RawWasi(wasm, data_dir, epoch=True, stdout=work / "printf-raw-epoch.out")

    def ours() -> Any:
        return sandbox.run(args)

    variants: dict[str, tuple[Callable[[], Any], str]] = {
        "ours": (ours, "wasm_sandbox run(): stdout kept in memory (max_output_bytes 64 MiB)"),
        "raw": (
            functools.partial(raw_file.run, args),
            "wasmtime-py built-in WASI, WasiConfig.stdout_file = a temp file",
        ),
        "raw stdout_custom": (
            functools.partial(raw_custom.run, args),
            "built-in WASI, stdout_custom = list.append: kept in memory like ours (information)",
        ),
        "raw epoch engine": (
            functools.partial(raw_epoch.run, args),
            "built-in WASI, stdout_file, engine with epoch_interruption like ours (information)",
        ),
        "ours, 4 MiB stdio buf": (
            functools.partial(sandbox.run, big),
            "setvbuf(stdout, 4 MiB): the same output in a few fd_write calls (information)",
        ),
        "raw, 4 MiB stdio buf": (
            functools.partial(raw_file.run, big),
            "setvbuf(stdout, 4 MiB), stdout_file (information)",
        ),
        "ours, 0 lines": (
            functools.partial(sandbox.run, ["0"]),
            "fixed cost of one of our runs (information)",
        ),
        "raw, 0 lines": (
            functools.partial(raw_file.run, ["0"]),
            "fixed cost of one raw run (information)",
        ),
    }
    samples = compare(
        {name: fn for name, (fn, _) in variants.items()}, s.rounds, s.batch_ms, s.warmup_ms
    )
    for name, (_, note) in variants.items():
        samples[name].note = note
    result = IoResult(
        "printf_100k_lines",
        f"printf {LINES:,} lines",
        samples["ours"],
        samples["raw"],
        [samples[name] for name in list(variants)[2:]],
        target=PRINTF_TARGET,
        info_ratios={
            "ours, 4 MiB stdio buf": ("ours, 4 MiB stdio buf", "raw, 4 MiB stdio buf"),
            "raw, 4 MiB stdio buf": None,
            "ours, 0 lines": ("ours, 0 lines", "raw, 0 lines"),
            "raw, 0 lines": None,
        },
    )
    result.notes.append(f"output: {len(want)} bytes")
    check_ours(result, "ours", ours, want)
    check_ours(result, "ours, 4 MiB stdio buf", variants["ours, 4 MiB stdio buf"][0], want)
    check_ours(result, "ours, 0 lines", variants["ours, 0 lines"][0], b"")
    check_raw(result, "raw", raw_file, args, want)
    check_raw(result, "raw, 4 MiB stdio buf", raw_file, big, want)
    check_raw(result, "raw stdout_custom", raw_custom, args, want)
    check_raw(result, "raw epoch engine", raw_epoch, args, want)
    calls = sandbox.run(args).resource_report.syscalls
    calls_big = sandbox.run(big).resource_report.syscalls
    result.notes.append(
        f"ours: {calls} WASI calls per run with stdio's default buffer, {calls_big} with"
        " the 4 MiB buffer"
    )
    if calls > calls_big:
        per_call = {
            side: (samples[side].median - samples[f"{side}, 4 MiB stdio buf"].median)
            / (calls - calls_big)
            for side in ("ours", "raw")
        }
        result.notes.append(
            "cost of one extra fd_write call ((default - 4 MiB buffer) / extra calls):"
            f" ours {fmt_ns(per_call['ours'])}, raw {fmt_ns(per_call['raw'])}"
        )
    return result, ours


# --------------------------------------------------------------------------------------
# Profiling (--profile)


# --------------------------------------------------------------------------------------
# Report


def print_table(results: list[IoResult]) -> None:
    headers = ["benchmark", "variant", "median/run", "min/run", "MB/s (med)", "ratio med",
               "ratio min", "paired", "target", "result"]  # fmt: skip
    rows: list[list[str]] = []
    for r in results:
        for i, sample in enumerate([r.ours, r.baseline, *r.info]):
            mbs = f"{r.mb_per_s(sample.median):,.0f}" if r.higher_is_better else ""
            row = [r.title if i == 0 else "", sample.name, fmt_ns(sample.median),
                   fmt_ns(sample.min), mbs]  # fmt: skip
            if i == 0:
                row += [f"{r.ratio:.2f}x", f"{r.ratio_min:.2f}x", f"{r.paired_ratio:.2f}x",
                        r.target_text, "PASS" if r.passed else "FAIL"]  # fmt: skip
            elif i == 1:
                row += ["", "", "", "", ""]
            else:
                shown = r.info_ratio(sample)
                row += [f"({shown[1]:.2f}x)" if shown else "", "", "", "info", ""]
            rows.append(row)
        rows.append([])
    widths = [max(len(h), *(len(row[i]) for row in rows if row)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    print("-" * len(line.rstrip()))
    for row in rows[:-1]:
        cells = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip() if row else "")
    print()
    print(
        "read: ratio = ours/raw throughput (raw time / ours time), higher is better;"
        " printf: ratio = ours/raw time, lower is better.\n"
        "ratio min = same with minimum times; paired = median over rounds of the in-round"
        " ratio; PASS/FAIL uses 'ratio med'.\n(x) on info rows = the same ratio with that"
        " row in place of raw ('ours, 0 lines': ours/raw, both 0 lines)."
    )
    for r in results:
        for note in r.notes:
            print(f"   {r.title}: {note}")
        for check in r.failed_checks:
            print(f"!! {r.title}: {check}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile our side of each benchmark"
    )
    parser.add_argument(
        "--only", action="append", choices=["read", "printf"],
        help="run only these benchmarks (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--json", type=Path, default=HERE / "results" / "io.json", help="where to write results"
    )
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    selected = args.only or ["read", "printf"]
    wall = time.perf_counter()
    env = environment(s)  # type: ignore[arg-type]
    clang = find_clang()
    clang_version = subprocess.run(
        [clang, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    print(f"wasm_sandbox I/O benchmarks ({'quick' if s.quick else 'full'} run)")
    print(f"  python {env['python']}, wasmtime {env['wasmtime']}, {os.cpu_count()} CPUs,"
          f" {platform.platform()}\n  {clang_version}")  # fmt: skip

    results: list[IoResult] = []
    ours_fns: dict[str, Callable[[], Any]] = {}
    guests: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="wsbx-bench-io-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        data_dir.mkdir()
        for name in ("read_file", "printf_lines"):
            wasm = compile_guest(clang, name, work)
            guests[name] = {"bytes": wasm.stat().st_size,
                            "sha256": hashlib.sha256(wasm.read_bytes()).hexdigest()}  # fmt: skip
        if "read" in selected:
            started = time.perf_counter()
            want = make_data_file(data_dir / FILE_NAME, FILE_MB)
            print(f"1. file read ({FILE_MB} MiB file made in"
                  f" {time.perf_counter() - started:.2f} s) ...", flush=True)  # fmt: skip
            result, fn = bench_read(s, work / "read_file.wasm", data_dir, work, want)
            results.append(result)
            ours_fns["file read"] = fn
        if "printf" in selected:
            print(f"2. printf {LINES:,} lines ...", flush=True)
            result, fn = bench_printf(s, work / "printf_lines.wasm", data_dir, work)
            results.append(result)
            ours_fns["printf"] = fn

        elapsed = time.perf_counter() - wall
        print()
        print_table(results)
        print(f"\ntotal time {elapsed:.1f} s")

        payload = {
            "environment": {**env, "clang": clang_version, "guests": guests},
            "elapsed_s": round(elapsed, 2),
            "all_passed": all(r.passed for r in results),
            "benchmarks": {r.key: r.to_dict() for r in results},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")

        if args.profile:  # while the data file still exists
            for label, fn in ours_fns.items():
                profile_calls(f"ours, {label}", fn, 1.0 if s.quick else 3.0)

    if args.check and not payload["all_passed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

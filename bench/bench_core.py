#!/usr/bin/env python
"""Core performance figures of wasm_sandbox, each as a ratio against raw wasmtime-py
measured in the same run (see bench/README.md).

    PYTHONPATH=src .venv/bin/python bench/bench_core.py [--quick] [--check] [--profile]

1. kept-instance call   ``call("add", 1, 2)`` with keep_instance vs raw set_fuel+deadline+call
2. fresh isolated call  ``call("add", 1, 2)``, new store+instance per call vs raw equivalent
3. metering overhead    ``call("fib", 30)`` with no limits vs raw wasmtime, no fuel/epoch
4. disk cache           build of a >= 1 MB module: empty cache vs warm cache (fresh processes)

Microbenchmarks time batches of calls, alternating the variants round by round (the order
reversed every other round) to spread machine noise evenly; they report the median and the
minimum per-operation time over the rounds. The script is a measurement: it exits 0 even
when a target is missed, unless ``--check`` is given.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import wasmtime

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
try:
    import wasm_sandbox
except ImportError:  # run without PYTHONPATH=src: use the checkout's sources
    sys.path.insert(0, str(REPO / "src"))
    import wasm_sandbox

from wasm_sandbox import WasmSandbox  # noqa: E402

FUEL = 10_000_000
TIMEOUT_S = 10.0
EPOCH_DEADLINE = 2_000  # ticks; wasm_sandbox ticks every 5 ms, so about 10 s
FIB_N = 30
FIB_RESULT = 832_040

ADD_WAT = """(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add))"""

FIB_WAT = """(module
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else
        (i32.add
          (call $fib (i32.sub (local.get $n) (i32.const 1)))
          (call $fib (i32.sub (local.get $n) (i32.const 2))))))))"""


# --------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int  # alternating rounds of the microbenchmarks
    batch_ms: float  # target duration of one timed batch
    warmup_ms: float  # per variant, before calibration
    fib_rounds: int
    disk_reps: int  # (first build, second build) pairs, each pair with a new cache dir
    big_funcs: int


FULL = Settings(False, rounds=41, batch_ms=25.0, warmup_ms=300.0, fib_rounds=31, disk_reps=5,
                big_funcs=3000)  # fmt: skip
QUICK = Settings(True, rounds=9, batch_ms=5.0, warmup_ms=50.0, fib_rounds=7, disk_reps=1,
                 big_funcs=3000)  # fmt: skip


# --------------------------------------------------------------------------------------
# Measurement


@dataclass
class Sample:
    """Per-operation times (ns) of one variant, one value per timed batch."""

    name: str
    per_op_ns: list[float] = field(default_factory=list)
    inner: int = 1
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.per_op_ns)

    @property
    def min(self) -> float:
        return min(self.per_op_ns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_ns": round(self.median, 1),
            "min_ns": round(self.min, 1),
            "max_ns": round(max(self.per_op_ns), 1),
            "batches": len(self.per_op_ns),
            "ops_per_batch": self.inner,
            "per_op_ns": [round(v, 1) for v in self.per_op_ns],
            **({"note": self.note} if self.note else {}),
        }


@dataclass
class Result:
    key: str
    title: str
    ours: Sample
    baseline: Sample
    info: list[Sample]
    target: float
    higher_is_better: bool = False  # disk cache: first/second must be >= target
    notes: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)  # correctness problems

    @property
    def ratio(self) -> float:
        if self.higher_is_better:  # baseline = first build, ours = second build
            return self.baseline.median / self.ours.median
        return self.ours.median / self.baseline.median

    @property
    def ratio_min(self) -> float:
        if self.higher_is_better:
            return self.baseline.min / self.ours.min
        return self.ours.min / self.baseline.min

    @property
    def paired_ratio(self) -> float:
        """Median over rounds of the ratio within the round (robust to slow drifts)."""
        pairs = zip(self.ours.per_op_ns, self.baseline.per_op_ns, strict=False)
        if self.higher_is_better:
            return statistics.median(b / o for o, b in pairs)
        return statistics.median(o / b for o, b in pairs)

    @property
    def passed(self) -> bool:
        if self.failed_checks:
            return False
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        return f">= {self.target:g}x" if self.higher_is_better else f"<= {self.target:g}x"

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "ratio": round(self.ratio, 3),
            "ratio_definition": (
                f"{self.baseline.name} / {self.ours.name} (medians)"
                if self.higher_is_better
                else f"{self.ours.name} / {self.baseline.name} (medians)"
            ),
            "ratio_of_minimums": round(self.ratio_min, 3),
            "paired_ratio_median": round(self.paired_ratio, 3),
            "target": self.target_text,
            "passed": self.passed,
            "ours": {"name": self.ours.name, **self.ours.to_dict()},
            "baseline": {"name": self.baseline.name, **self.baseline.to_dict()},
            "info": {
                s.name: {
                    **s.to_dict(),
                    "ratio_ours_to_this": round(self.ours.median / s.median, 3),
                }
                for s in self.info
            },
            "notes": self.notes,
            "failed_checks": self.failed_checks,
        }


def _time_batch(fn: Callable[[], Any], inner: int) -> int:
    loop = range(inner)
    start = time.perf_counter_ns()
    for _ in loop:
        fn()
    return time.perf_counter_ns() - start


def compare(
    variants: dict[str, Callable[[], Any]], rounds: int, batch_ms: float, warmup_ms: float
) -> dict[str, Sample]:
    """Time every variant in ``rounds`` alternating rounds of one batch each."""
    samples = {}
    for name, fn in variants.items():
        # warm up (caches, lazy thread start, branch predictors), then size the batch
        deadline = time.perf_counter_ns() + int(warmup_ms * 1e6)
        calls = 0
        while calls < 5 or time.perf_counter_ns() < deadline:
            fn()
            calls += 1
        per_op = _time_batch(fn, 5) / 5
        inner = max(1, int(batch_ms * 1e6 / max(per_op, 1.0)))
        samples[name] = Sample(name, inner=inner)
    names = list(variants)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            sample = samples[name]
            gc.collect()
            elapsed = _time_batch(variants[name], sample.inner)
            sample.per_op_ns.append(elapsed / sample.inner)
    return samples


# --------------------------------------------------------------------------------------
# Helpers


def raw_metered_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def raw_export(engine: wasmtime.Engine, wasm: bytes, name: str) -> tuple[wasmtime.Store, Any]:
    """A store, and the exported function ``name`` of a plain instance of ``wasm`` in it."""
    store = wasmtime.Store(engine)
    func = wasmtime.Instance(store, wasmtime.Module(engine, wasm), []).exports(store)[name]
    assert isinstance(func, wasmtime.Func)
    return store, func


def our_sandbox(wasm: bytes, *, keep: bool, limited: bool) -> WasmSandbox:
    builder = WasmSandbox.builder().source(wasm).keep_instance(keep).cache_dir(None)
    if limited:
        builder = builder.max_fuel(FUEL).timeout_duration(TIMEOUT_S)
    else:
        builder = builder.max_fuel(None).timeout_duration(None)
    return builder.build()


def check_value(result: Result, name: str, got: Any, want: Any) -> None:
    if got != want:
        result.failed_checks.append(f"{name} returned {got!r}, expected {want!r}")


def fmt_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


# --------------------------------------------------------------------------------------
# 1. kept-instance call


def bench_kept(s: Settings) -> tuple[Result, Callable[[], Any]]:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    sandbox = our_sandbox(wasm, keep=True, limited=True)
    ours = functools.partial(sandbox.call, "add", 1, 2)

    store, func = raw_export(raw_metered_engine(), wasm, "add")

    def raw(store: Any = store, func: Any = func) -> Any:
        store.set_fuel(FUEL)
        store.set_epoch_deadline(EPOCH_DEADLINE)
        return func(store, 1, 2)

    raw_call_only = functools.partial(func, store, 1, 2)
    store.set_fuel(2**62)  # enough for every call-only iteration
    store.set_epoch_deadline(2**40)

    samples = compare(
        {"ours": ours, "raw": raw, "raw call only": raw_call_only},
        s.rounds, s.batch_ms, s.warmup_ms,
    )  # fmt: skip
    samples["raw"].note = "per call: store.set_fuel + store.set_epoch_deadline + func(store, 1, 2)"
    samples["raw call only"].note = "func(store, 1, 2), no per-call limits (information)"
    result = Result(
        "kept_instance_call",
        "kept-instance call add(1,2)",
        samples["ours"],
        samples["raw"],
        [samples["raw call only"]],
        target=1.3,
    )
    check_value(result, "ours", ours(), 3)
    check_value(result, "raw", raw(), 3)
    return result, ours


# --------------------------------------------------------------------------------------
# 2. fresh isolated call


def bench_fresh(s: Settings) -> tuple[Result, Callable[[], Any]]:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    sandbox = our_sandbox(wasm, keep=False, limited=True)
    ours = functools.partial(sandbox.call, "add", 1, 2)

    engine = raw_metered_engine()
    module = wasmtime.Module(engine, wasm)
    Store, Instance = wasmtime.Store, wasmtime.Instance  # noqa: N806

    def raw() -> Any:
        store = Store(engine)
        store.set_fuel(FUEL)
        store.set_epoch_deadline(EPOCH_DEADLINE)
        instance = Instance(store, module, [])
        return instance.exports(store)["add"](store, 1, 2)  # type: ignore[operator]

    samples = compare({"ours": ours, "raw": raw}, s.rounds, s.batch_ms, s.warmup_ms)
    samples["raw"].note = (
        "per call: Store(engine) + set_fuel + set_epoch_deadline + Instance(store, module, [])"
        " + exports lookup + call"
    )
    result = Result(
        "fresh_isolated_call",
        "fresh isolated call add(1,2)",
        samples["ours"],
        samples["raw"],
        [],
        target=2.0,
    )
    check_value(result, "ours", ours(), 3)
    check_value(result, "raw", raw(), 3)
    return result, ours


# --------------------------------------------------------------------------------------
# 3. metering overhead on fib(30)


def bench_fib(s: Settings) -> tuple[Result, Callable[[], Any]]:
    wasm = bytes(wasmtime.wat2wasm(FIB_WAT))
    sandbox = our_sandbox(wasm, keep=False, limited=False)
    ours = functools.partial(sandbox.call, "fib", FIB_N)

    plain_store, plain_fib = raw_export(wasmtime.Engine(), wasm, "fib")
    raw = functools.partial(plain_fib, plain_store, FIB_N)

    m_store, m_fib = raw_export(raw_metered_engine(), wasm, "fib")

    def raw_metered(store: Any = m_store, func: Any = m_fib) -> Any:
        store.set_fuel(2**62)
        store.set_epoch_deadline(2**40)
        return func(store, FIB_N)

    epoch_config = wasmtime.Config()
    epoch_config.epoch_interruption = True
    e_store, e_fib = raw_export(wasmtime.Engine(epoch_config), wasm, "fib")

    def raw_epoch(store: Any = e_store, func: Any = e_fib) -> Any:
        store.set_epoch_deadline(2**40)
        return func(store, FIB_N)

    fueled = WasmSandbox.builder().source(wasm).max_fuel(10**12).timeout_duration(None).build()
    ours_fuel = functools.partial(fueled.call, "fib", FIB_N)

    samples = compare(
        {"ours": ours, "raw": raw, "ours with max_fuel": ours_fuel,
         "raw fuel+epoch": raw_metered, "raw epoch only": raw_epoch},
        s.fib_rounds, max(s.batch_ms, 20.0), s.warmup_ms,
    )  # fmt: skip
    samples["ours with max_fuel"].note = "a fuel limit set: wasmtime fuel metering on (information)"
    samples["raw"].note = "plain wasmtime.Engine(): no fuel, no epoch"
    samples["raw fuel+epoch"].note = "consume_fuel + epoch_interruption, no ticker (information)"
    samples["raw epoch only"].note = "epoch_interruption, no fuel (information)"
    result = Result(
        "metering_fib30",
        f"metering overhead fib({FIB_N})",
        samples["ours"],
        samples["raw"],
        [samples["ours with max_fuel"], samples["raw fuel+epoch"], samples["raw epoch only"]],
        target=1.6,
    )
    check_value(result, "ours", ours(), FIB_RESULT)
    check_value(result, "raw", raw(), FIB_RESULT)
    check_value(result, "ours with max_fuel", ours_fuel(), FIB_RESULT)
    check_value(result, "raw fuel+epoch", raw_metered(), FIB_RESULT)
    check_value(result, "raw epoch only", raw_epoch(), FIB_RESULT)
    return result, ours


# --------------------------------------------------------------------------------------
# 4. disk cache


def big_module_wat(nfuncs: int, seed: int = 1234) -> str:
    """``nfuncs`` distinct functions, each a 16-iteration loop of 12 random arithmetic,
    load and store steps, calling its predecessor on a branch (no dead code to drop)."""
    rng = random.Random(seed)
    ops = ["i32.add", "i32.sub", "i32.mul", "i32.xor", "i32.or", "i32.and", "i32.rotl",
           "i32.shl", "i32.shr_u"]  # fmt: skip
    out = ["(module", '  (memory (export "memory") 1)']
    for i in range(nfuncs):
        lines = [
            f'  (func $f{i} (export "f{i}") (param $a i32) (param $b i32) (result i32)',
            "    (local $x i32) (local $y i32) (local $i i32)",
            "    (local.set $x (local.get $a)) (local.set $y (local.get $b))",
            "    (block $done (loop $top",
            "      (br_if $done (i32.ge_u (local.get $i) (i32.const 16)))",
        ]
        for _ in range(12):
            op1, op2 = rng.choice(ops), rng.choice(ops)
            c1, c2 = rng.randrange(1, 1 << 20), rng.randrange(1, 1 << 20)
            addr = rng.randrange(0, 16000) * 4
            lines += [
                f"      (local.set $x ({op1} (local.get $x)"
                f" ({op2} (local.get $y) (i32.const {c1}))))",
                f"      (local.set $y ({op2} (local.get $y)"
                f" (i32.load offset={addr} (i32.and (local.get $x) (i32.const 0xfc)))))",
                f"      (i32.store offset={addr} (i32.and (local.get $y) (i32.const 0xfc))"
                f" (i32.add (local.get $x) (i32.const {c2})))",
            ]
        lines += [
            "      (local.set $i (i32.add (local.get $i) (i32.const 1)))",
            "      (br $top)))",
        ]
        if i > 0:
            lines.append(
                f"    (if (i32.eqz (local.get $a)) (then (local.set $x (call $f{i - 1}"
                " (local.get $b) (local.get $x)))))"
            )
        lines.append("    (i32.add (local.get $x) (local.get $y)))")
        out.append("\n".join(lines))
    out.append(")")
    return "\n".join(out)


def code_section_size(wasm: bytes) -> int:
    """Size in bytes of the code section (id 10) of a module."""
    pos = 8
    while pos < len(wasm):
        sid = wasm[pos]
        pos += 1
        size = shift = 0
        while True:
            byte = wasm[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if sid == 10:
            return size
        pos += size
    return 0


CHILD = r"""
import json, sys, time
mode, source, cache = sys.argv[1], sys.argv[2], sys.argv[3]
if mode in ("ours", "ours-profile"):
    from wasm_sandbox import WasmSandbox
    def build():
        return WasmSandbox.builder().source(source).cache_dir(cache).progress(False).build()
    if mode == "ours-profile":
        import cProfile, io, pstats
        prof = cProfile.Profile()
        prof.enable()
        sandbox = build()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    start = time.perf_counter_ns()
    sandbox = build()
    elapsed = time.perf_counter_ns() - start
    print(json.dumps({"ns": elapsed, "from_cache": sandbox.from_cache,
                      "exports": len(sandbox.exports)}))
else:
    import wasmtime
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    if mode == "raw-compile":
        start = time.perf_counter_ns()
        with open(source, "rb") as f:
            module = wasmtime.Module(engine, f.read())
        elapsed = time.perf_counter_ns() - start
        with open(cache, "wb") as f:
            f.write(module.serialize())
    else:
        start = time.perf_counter_ns()
        module = wasmtime.Module.deserialize_file(engine, cache)
        elapsed = time.perf_counter_ns() - start
    print(json.dumps({"ns": elapsed, "exports": len(module.exports)}))
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(wasm_sandbox.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def run_child(mode: str, source: Path, cache: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(source), str(cache)],
        capture_output=True, text=True, env=child_env(), timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({proc.returncode}):\n{proc.stderr}")
    if mode == "ours-profile":
        print(proc.stderr)
    reply: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return reply


def bench_disk(s: Settings, workdir: Path) -> Result:
    started = time.perf_counter()
    wat = big_module_wat(s.big_funcs)
    wasm = bytes(wasmtime.wat2wasm(wat))
    generated = time.perf_counter() - started
    source = workdir / "big.wasm"
    source.write_bytes(wasm)
    code = code_section_size(wasm)
    print(
        f"  generated module: {s.big_funcs} functions, {len(wasm):,} bytes wasm "
        f"({len(wasm) / 2**20:.2f} MiB), code section {code:,} bytes "
        f"({code / 2**20:.2f} MiB), in {generated:.2f} s"
    )
    first = Sample("first build (empty cache)", note="fresh process, empty cache dir")
    second = Sample("second build (warm cache)", note="fresh process, same cache dir")
    raw_compile = Sample("raw wasmtime compile", note="fresh process, Module(engine, bytes)")
    raw_load = Sample("raw wasmtime deserialize", note="fresh process, Module.deserialize_file")
    result = Result(
        "disk_cache",
        "disk cache: build of a big module",
        second,
        first,
        [raw_compile, raw_load],
        target=20.0,
        higher_is_better=True,
    )
    result.notes.append(
        f"module: {len(wasm)} bytes, code section {code} bytes, {s.big_funcs} functions"
    )
    for rep in range(s.disk_reps):
        cache = workdir / f"cache-{rep}"
        cache.mkdir()
        a = run_child("ours", source, cache)
        artifacts = sorted(p.name for p in cache.iterdir())
        b = run_child("ours", source, cache)
        first.per_op_ns.append(a["ns"])
        second.per_op_ns.append(b["ns"])
        if a["from_cache"]:
            result.failed_checks.append(f"rep {rep}: first build reported from_cache=True")
        if not b["from_cache"]:
            result.failed_checks.append(f"rep {rep}: second build reported from_cache=False")
        if not any(name.endswith(".cwasm") for name in artifacts):
            result.failed_checks.append(f"rep {rep}: no .cwasm artifact written: {artifacts}")
        if a["exports"] != s.big_funcs or b["exports"] != s.big_funcs:
            result.failed_checks.append(f"rep {rep}: expected {s.big_funcs} exported functions")
        artifact = workdir / f"raw-{rep}.cwasm"
        raw_compile.per_op_ns.append(run_child("raw-compile", source, artifact)["ns"])
        raw_load.per_op_ns.append(run_child("raw-deserialize", source, artifact)["ns"])
        print(
            f"  rep {rep + 1}/{s.disk_reps}: first {fmt_ns(a['ns'])}, second {fmt_ns(b['ns'])}"
            f" (x{a['ns'] / b['ns']:.1f}); raw compile {fmt_ns(raw_compile.per_op_ns[-1])},"
            f" raw deserialize {fmt_ns(raw_load.per_op_ns[-1])}"
        )
    if len(wasm) < 2**20 or code < 10**6:
        result.failed_checks.append(f"module too small: {len(wasm)} bytes, code {code} bytes")
    return result


# --------------------------------------------------------------------------------------
# Profiling (--profile)


def profile_calls(label: str, fn: Callable[[], Any], seconds: float) -> None:
    prof = cProfile.Profile()
    deadline = time.perf_counter() + seconds
    calls = 0
    prof.enable()
    while time.perf_counter() < deadline:
        fn()
        calls += 1
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(20)
    print(f"\n===== cProfile: {label} ({calls} calls) =====")
    print(out.getvalue())


# --------------------------------------------------------------------------------------
# Report


def print_table(results: list[Result]) -> None:
    headers = ["benchmark", "variant", "median/op", "min/op", "ratio med", "ratio min",
               "paired", "target", "result"]  # fmt: skip
    rows: list[list[str]] = []
    for r in results:
        ours_first = not r.higher_is_better
        main = [r.ours, r.baseline] if ours_first else [r.baseline, r.ours]
        for i, sample in enumerate([*main, *r.info]):
            name = r.title if i == 0 else ""
            row = [name, sample.name, fmt_ns(sample.median), fmt_ns(sample.min)]
            if i == 0:
                row += [f"{r.ratio:.2f}x", f"{r.ratio_min:.2f}x", f"{r.paired_ratio:.2f}x",
                        r.target_text, "PASS" if r.passed else "FAIL"]  # fmt: skip
            elif sample in r.info and not r.higher_is_better:
                row += [f"({r.ours.median / sample.median:.2f}x)", "", "", "info", ""]
            elif sample in r.info:
                row += ["", "", "", "info", ""]
            else:
                row += ["", "", "", "", ""]
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
        "ratio med = ours/baseline of median per-op times (disk cache: first/second);"
        " ratio min = same with minimums;\npaired = median over rounds of the in-round ratio;"
        " PASS/FAIL uses 'ratio med'. (x) on info rows = ours / that row."
    )
    for r in results:
        for check in r.failed_checks:
            print(f"!! {r.title}: {check}")


def environment(s: Settings) -> dict[str, Any]:
    try:
        wasmtime_version = metadata.version("wasmtime")
    except metadata.PackageNotFoundError:
        wasmtime_version = "unknown"
    return {
        "quick": s.quick,
        "settings": s.__dict__,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "wasmtime": wasmtime_version,
        "wasm_sandbox": getattr(wasm_sandbox, "__version__", "unknown"),
        "wasm_sandbox_path": str(Path(wasm_sandbox.__file__).resolve().parent),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile our side of each benchmark"
    )
    parser.add_argument(
        "--only", action="append", choices=["kept", "fresh", "fib", "disk"],
        help="run only these benchmarks (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--json", type=Path, default=HERE / "results" / "core.json", help="where to write results"
    )
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    selected = args.only or ["kept", "fresh", "fib", "disk"]
    wall = time.perf_counter()
    print(f"wasm_sandbox core benchmarks ({'quick' if s.quick else 'full'} run)")
    print(f"  python {sys.version.split()[0]}, wasmtime {environment(s)['wasmtime']},"
          f" {os.cpu_count()} CPUs, {platform.platform()}")  # fmt: skip

    results: list[Result] = []
    ours_fns: dict[str, Callable[[], Any]] = {}
    for key, title, bench in (
        ("kept", "1. kept-instance call", bench_kept),
        ("fresh", "2. fresh isolated call", bench_fresh),
        ("fib", f"3. metering overhead fib({FIB_N})", bench_fib),
    ):
        if key in selected:
            print(f"{title} ...", flush=True)
            result, fn = bench(s)
            results.append(result)
            ours_fns[title] = fn
    if "disk" in selected:
        print("4. disk cache ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="wsbx-bench-") as tmp:
            results.append(bench_disk(s, Path(tmp)))
            if args.profile:
                cache = Path(tmp) / "cache-0"
                print("\n===== cProfile: second (warm-cache) build, in a child process =====")
                run_child("ours-profile", Path(tmp) / "big.wasm", cache)

    elapsed = time.perf_counter() - wall
    print()
    print_table(results)
    print(f"\ntotal time {elapsed:.1f} s")

    payload = {
        "environment": environment(s),
        "elapsed_s": round(elapsed, 2),
        "all_passed": all(r.passed for r in results),
        "benchmarks": {r.key: r.to_dict() for r in results},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {args.json}")

    if args.profile:
        for title, fn in ours_fns.items():
            profile_calls(title, fn, 1.0 if s.quick else 3.0)

    if args.check and not payload["all_passed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""First use of the Python runtime: what a newcomer waits for, and what preparing saves.

    PYTHONPATH=src .venv/bin/python bench/bench_prepare.py [--quick] [--json FILE]

Figures, each in fresh processes (a first use is once per process):

1. **First Python call on an empty cache** (skipped with ``--quick``: it is a full compile of
   the 100 MB runtime): wall time, peak RSS of the calling process (target <= 300 MB: the
   compile runs in a child) and of the compiling child.
2. **First execution after ``prepare``**: ``import wasm_sandbox``, build and the first
   ``run()`` of ``print('hi')`` (target <= 100 ms for build + run), against the same with the
   loading path before prepared artifacts (the runtime read and hashed, the artifact
   re-hashed: emulated by removing the stamp and module info of a copy of the cache), and
   pyeryx's first execution when its peer venv exists (``bench/peers``).
3. **One artifact per runtime**: the 2M-iteration Python loop on the metered artifact with no
   fuel limit, against the unmetered artifact (target <= 1.15x), same run, alternated.
4. **Disk used by the prepared runtimes** (one Python artifact, one JavaScript artifact).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))

import wasm_sandbox as ws  # noqa: E402

PYERYX = Path.home() / ".cache" / "wasm-sandbox" / "bench-peers" / "pyeryx" / "bin" / "python"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}

FIRST_USE = """
import sys, time, json, resource
t0 = time.perf_counter()
import wasm_sandbox as ws
t1 = time.perf_counter()
box = ws.WasmSandbox.builder().source("print('hi')").language("python")
box = box.cache_dir(sys.argv[1]).max_fuel(None).build()
t2 = time.perf_counter()
assert box.run().stdout == b"hi\\n"
t3 = time.perf_counter()
kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "run": t3 - t2,
                  "rss_mib": kib / 1024, "child_rss_mib": child / 1024}))
"""

PYERYX_FIRST = """
import time, json
t0 = time.perf_counter()
import eryx
t1 = time.perf_counter()
eryx.Sandbox().execute("print('hi')")
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first": t2 - t1}))
"""

LOOP = """
import sys, time, json
import wasm_sandbox as ws
import wasm_sandbox._sandbox as sandbox_module
if sys.argv[2] == "unmetered":  # the artifact before issue 12: an unmetered engine
    get = sandbox_module.get_engine
    sandbox_module.get_engine = lambda level, debug, metered: get(level, debug, False)
code = "total = 0\\nfor i in range(2_000_000):\\n    total += i\\nprint(total)"
box = ws.WasmSandbox.builder().source(code).language("python").cache_dir(sys.argv[1])
box = box.max_fuel(None).timeout_duration(600).build()
box.run()
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); box.run(); times.append(time.perf_counter() - t)
print(json.dumps(min(times)))
"""


def _json(command: list[str], env: dict[str, str] | None = None) -> object:
    done = subprocess.run(command, capture_output=True, text=True, env=env or ENV, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _first_use(cache: Path) -> dict[str, float]:
    value = _json([sys.executable, "-c", FIRST_USE, str(cache)])
    assert isinstance(value, dict)
    return value


def _copy_without_stamps(prepared: Path, target: Path) -> None:
    """A copy of the prepared cache as the loading path before stamps and module info."""
    target.mkdir(parents=True, exist_ok=True)
    for source in prepared.iterdir():
        if source.suffix in (".cwasm", ".sha256"):
            os.link(source, target / source.name)
        elif source.is_dir():
            shutil.copytree(source, target / source.name, copy_function=os.link)


def _seed(prepared: Path) -> None:
    """Link the user's prepared runtimes (``./tasks.sh setup`` made them) into ``prepared``,
    so the figures after ``prepare`` do not pay a compile here."""
    prepared.mkdir(parents=True, exist_ok=True)
    source = ws.default_cache_dir()
    if source.is_dir():
        for entry in source.iterdir():
            if entry.suffix in (".cwasm", ".sha256", ".stamp", ".info"):
                os.link(entry, prepared / entry.name)


def _cold(work: Path, results: dict[str, object]) -> None:
    started = time.monotonic()
    cold = _first_use(work / "empty")
    cold["wall"] = time.monotonic() - started
    results["empty_cache"] = cold
    print(
        f"1. first Python call, empty cache: {cold['wall']:.1f} s wall; peak RSS "
        f"{cold['rss_mib']:.0f} MiB (caller, target <= 300), "
        f"{cold['child_rss_mib']:.0f} MiB (compiling child)"
    )


def _warm(work: Path, prepared: Path, rounds: int, results: dict[str, object]) -> None:
    warm = [_first_use(prepared) for _ in range(rounds)]
    old_path = []
    for index in range(rounds):
        copy = work / f"unstamped-{index}"
        _copy_without_stamps(prepared, copy)
        old_path.append(_first_use(copy))
    figure: dict[str, dict[str, float]] = {}
    for name, runs in (("prepared", warm), ("before", old_path)):
        figure[name] = {
            key: statistics.median(r[key] for r in runs) for key in ("import", "build", "run")
        }
    ours, before = figure["prepared"], figure["before"]
    print(
        f"2. first execution after prepare (median of {rounds} fresh processes): build "
        f"{ours['build'] * 1e3:.0f} ms + run {ours['run'] * 1e3:.0f} ms = "
        f"{(ours['build'] + ours['run']) * 1e3:.0f} ms (target <= 100); before: "
        f"{(before['build'] + before['run']) * 1e3:.0f} ms; import wasm_sandbox "
        f"{ours['import'] * 1e3:.0f} ms"
    )
    if PYERYX.is_file():
        env = dict(os.environ)
        eryx = [_json([str(PYERYX), "-c", PYERYX_FIRST], env) for _ in range(rounds)]
        figure["pyeryx"] = {
            key: statistics.median(r[key] for r in eryx)  # type: ignore[index]
            for key in ("import", "first")
        }
        print(
            f"   pyeryx: import {figure['pyeryx']['import'] * 1e3:.0f} ms, first execution "
            f"{figure['pyeryx']['first'] * 1e3:.0f} ms"
        )
    else:
        print("   pyeryx: no peer venv (python bench/peers/setup_peers.py), not measured")
    results["first_execution"] = figure


def _loop(prepared: Path, rounds: int, results: dict[str, object]) -> None:
    loops: dict[str, list[float]] = {"metered": [], "unmetered": []}
    for _ in range(rounds):
        for variant in ("metered", "unmetered"):  # alternated: noise hits both
            value = _json([sys.executable, "-c", LOOP, str(prepared), variant, "3"])
            assert isinstance(value, float)
            loops[variant].append(value)
    ratio = min(loops["metered"]) / min(loops["unmetered"])
    results["loop"] = {**{k: min(v) for k, v in loops.items()}, "ratio": ratio}
    print(
        f"3. Python loop, metered artifact with no fuel limit: {min(loops['metered']):.3f} s "
        f"vs unmetered {min(loops['unmetered']):.3f} s = {ratio:.2f}x (target <= 1.15)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no empty-cache compile, fewer rounds")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "prepare.json")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    results: dict[str, object] = {"quick": args.quick}
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        if not args.quick:
            _cold(work, results)
        prepared = work / "prepared"
        _seed(prepared)
        ready = ws.prepare("python", "javascript", cache_dir=prepared, progress=False)
        _warm(work, prepared, rounds, results)
        _loop(prepared, 2 if args.quick else 4, results)
        sizes = {r.name: r.size_bytes for r in ready}
        results["disk_bytes"] = sizes
        print(
            "4. prepared cache on disk: "
            + ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in sizes.items())
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Compare the benchmarks of two revisions, measured in the same run, interleaved.

    .venv/bin/python bench/compare_revisions.py [BASELINE] [--candidate REV] [--quick]
        [--rounds N] [--aggregate median|best] [--only NAME] [--threshold PCT] [--check]
        [-- ARGS PASSED TO EVERY SCRIPT]

BASELINE (default 84315e7, ``main`` before issue 11) is checked out with ``git worktree add
--detach`` in a temporary directory, removed at the end (also on an error or Ctrl-C). The
candidate is the working tree this script lives in (uncommitted changes included), or
``--candidate REV`` in a second temporary worktree.

Every script of ``./tasks.sh bench`` (the list is read from tasks.sh's ``bench)`` case) runs
once per side, alternating: baseline A, candidate A, baseline B, candidate B, ... (every other
round the candidate goes first), so a busy machine slows both sides alike. Each side runs its
own copy of the script from its own tree with ``PYTHONPATH=<tree>/src``, so it writes its
JSON into its own ``bench/results/``; that file is read (and copied to
``bench/results/compare-runs/``) right after the run. A script the baseline lacks is
reported as "new, no baseline". ``--rounds N`` repeats the whole alternation N times and
takes the median (or, ``--aggregate best``, the best) of each figure over the rounds; the
table also says in how many rounds the candidate was worse than the baseline of the same round.
``--report-only`` runs nothing and rebuilds the table from the last run's kept JSON.

The figures compared are our side's (wasm_sandbox's), two kinds:

* ``ratio``: ours against a reference measured in the same process (raw wasmtime, native
  CPython, one worker, the unbuffered run...), e.g. bench_core's "ours / raw". Its change
  between the sides is a ratio of ratios, the least sensitive to machine noise.
* ``abs``: our own time, throughput, memory or count.

Each figure knows whether lower or higher is better; one more than ``--threshold`` percent
(default 5) worse is flagged (changes smaller than a figure's noise floor, e.g. 1 MiB of peak
RSS, are not). Writes ``bench/results/compare.md`` and ``compare.json``; exits 1 with
``--check`` if a figure is flagged or a script failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BASELINE = "84315e7"  # main before issue 11
MiB = 1 << 20


# --- figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One number a benchmark script reported, with what "better" means for it."""

    key: str  # unique within its script, e.g. "kept_instance_call: ours / raw"
    value: float
    unit: str  # ns, ms, s, us, x, jobs/s, MiB, bytes, writes
    lower_is_better: bool = True
    kind: str = "abs"  # "ratio" (against a same-run reference) or "abs"
    floor: float = 0.0  # a difference this small (in the figure's unit) is never flagged
    info: str = ""  # set: shown with this reason, never flagged


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def figures_core_io(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_core.py and bench_io.py: ``benchmarks: {key: {ratio, target, ours, baseline}}``;
    the target says which way the ratio should go (``<= 1.3x`` or ``>= 0.5x``)."""
    for key, bench in data.get("benchmarks", {}).items():
        ratio = _num(bench.get("ratio"))
        if ratio is not None:
            higher = str(bench.get("target", "")).strip().startswith(">")
            label = str(bench.get("ratio_definition", "ratio")).removesuffix(" (medians)")
            # first / second build: a faster first build lowers it; the two times are compared
            info = "info: both builds are ours" if key == "disk_cache" else ""
            yield Figure(f"{key}: {label}", ratio, "x", not higher, "ratio", info=info)
        samples = [bench.get("ours")]
        if key == "disk_cache":  # both builds are ours: first (cold) / second (warm cache)
            samples.append(bench.get("baseline"))
        for sample in samples:
            if isinstance(sample, dict) and _num(sample.get("median_ns")) is not None:
                name = sample.get("name", "ours")
                yield Figure(f"{key}: {name} median", float(sample["median_ns"]), "ns")


def figures_python(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_python.py: ``ours: {fresh_print_ms: {median, min}, ..., native_loop_ms}``; the
    native loop is CPython itself (the reference), not ours."""
    ours = data.get("ours", {})
    for key, value in ours.items():
        if key != "native_loop_ms" and isinstance(value, dict) and "median" in value:
            yield Figure(f"{key.removesuffix('_ms')} median", float(value["median"]), "ms")
    big = ours.get("big_output", {})
    if _num(big.get("ms")) is not None:
        yield Figure("big_output (100 MiB stdout)", float(big["ms"]), "ms")
    loop, native = ours.get("loop_ms", {}), ours.get("native_loop_ms", {})
    if _num(loop.get("median")) and _num(native.get("median")):
        yield Figure(
            "loop: ours / native CPython", loop["median"] / native["median"], "x", kind="ratio"
        )


def figures_balancer(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_balancer.py: jobs/s with one and two workers and their ratio (the latencies
    follow from the throughput; the RSS growth is a fraction of a percent, left out)."""
    for side in ("one", "two"):
        rate = _num(data.get(side, {}).get("jobs_per_s"))
        if rate is not None:
            yield Figure(f"{side} worker(s): jobs/s", rate, "jobs/s", lower_is_better=False)
    if _num(data.get("ratio")) is not None:
        yield Figure("two / one worker", data["ratio"], "x", lower_is_better=False, kind="ratio")


def figures_buffering(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_buffering.py: ``rows: {variant: {median_s, ratio (vs unbuffered), host_writes}}``."""
    for name, row in data.get("rows", {}).items():
        yield Figure(f"{name}: median", float(row["median_s"]), "s")
        if name != "unbuffered":
            yield Figure(f"{name}: vs unbuffered", float(row["ratio"]), "x", kind="ratio")
        yield Figure(f"{name}: host writes", float(row["host_writes"]), "writes", floor=2)


def figures_build(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_build.py: ``results: {variant: {seconds, peak_rss_mib, child_peak_rss_mib}}``."""
    for name, row in data.get("results", {}).items():
        yield Figure(f"{name}: time", float(row["seconds"]), "s", floor=0.02)
        yield Figure(f"{name}: peak RSS", float(row["peak_rss_mib"]), "MiB", floor=4)
        if row.get("child_peak_rss_mib"):
            yield Figure(
                f"{name}: child peak RSS", float(row["child_peak_rss_mib"]), "MiB", floor=4
            )


def figures_amplification(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_amplification.py: per attack, the host's peak-RSS growth and the time."""
    for row in data.get("attacks", []):
        name = row["scenario"]
        yield Figure(f"{name}: peak RSS growth", float(row["growth_bytes"]), "bytes", floor=MiB)
        yield Figure(f"{name}: time", float(row["seconds"]), "s", floor=0.01)


def figures_descriptors(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_descriptors.py: µs per open() at N open files, ours and wasmtime's."""
    for count, row in data.get("per_open", {}).items():
        yield Figure(f"N={count}: ours per open", float(row["ours_us"]), "us")
        yield Figure(
            f"N={count}: ours / wasmtime", row["ours_us"] / row["wasmtime_us"], "x", kind="ratio"
        )
    if _num(data.get("growth")) is not None:
        yield Figure("growth: last N / first N", data["growth"], "x", kind="ratio")


def figures_preinit(data: dict[str, Any]) -> Iterator[Figure]:
    """bench_preinit.py: ``figures: {name_ms: {median, min} or a number}``, and the fresh
    call with preinitialize against the same call without it."""
    figures = data.get("figures", {})
    for key, value in figures.items():
        median = _num(value.get("median")) if isinstance(value, dict) else _num(value)
        if median is not None:
            yield Figure(f"{key.removesuffix('_ms')} median", median, "ms")
    ready = figures.get("fresh_call_preinit_ms", {}).get("median")
    plain = figures.get("fresh_call_plain_ms", {}).get("median")
    if _num(ready) and _num(plain):
        yield Figure("fresh call: preinit / plain", ready / plain, "x", kind="ratio")


EXTRACTORS: dict[str, Callable[[dict[str, Any]], Iterator[Figure]]] = {
    "core": figures_core_io,
    "io": figures_core_io,
    "python": figures_python,
    "balancer": figures_balancer,
    "buffering": figures_buffering,
    "build": figures_build,
    "amplification": figures_amplification,
    "descriptors": figures_descriptors,
    "preinit": figures_preinit,
}


# --- revisions and runs --------------------------------------------------------------------


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def bench_scripts(tree: Path) -> list[str]:
    """The scripts ``./tasks.sh bench`` runs, in its order, from the tree's tasks.sh."""
    text = (tree / "tasks.sh").read_text()
    case = re.search(r"^\s*bench\)\n(.*?);;", text, re.MULTILINE | re.DOTALL)
    return re.findall(r"bench/(bench_\w+\.py)", case.group(1)) if case else []


@dataclass
class Side:
    """One revision under test: its tree and what its runs produced."""

    name: str  # "baseline" or "candidate"
    label: str  # what it is, for the report
    tree: Path
    scripts: list[str] = field(default_factory=list)
    runs: dict[str, dict[int, list[Figure]]] = field(default_factory=dict)  # script, round
    failures: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.tree / "src")}


def describe_worktree(tree: Path) -> str:
    sha = git("rev-parse", "--short", "HEAD", cwd=tree)
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=tree)
    return f"{sha} working tree" + (" (uncommitted changes)" if dirty else "")


def check_import(python: str, side: Side) -> None:
    """The side's interpreter must import wasm_sandbox from the side's own src/."""
    where = subprocess.run(
        [python, "-c", "import wasm_sandbox; print(wasm_sandbox.__file__)"],
        cwd=side.tree,
        env=side.env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to((side.tree / "src").resolve()):
        raise SystemExit(f"{side.name}: wasm_sandbox is imported from {where}, not {side.tree}")


def run_script(python: str, side: Side, script: str, args: list[str], log: Path) -> Path:
    """Run one benchmark script of ``side`` in its own process group (killed as a whole if we
    are interrupted); return its fresh JSON result. Raises RuntimeError on a failure."""
    result = side.tree / "bench" / "results" / f"{script.removeprefix('bench_')[:-3]}.json"
    before = result.stat().st_mtime_ns if result.exists() else None
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, f"bench/{script}", *args],
            cwd=side.tree,
            env=side.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            status = proc.wait()
        except BaseException:
            stop_group(proc)
            raise
    if status != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"exit status {status}; end of {log}:\n    " + "\n    ".join(tail))
    if not result.exists() or result.stat().st_mtime_ns == before:
        raise RuntimeError(f"{result} was not written")
    return result


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the process group we started for one script (its children included)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def measure(
    python: str,
    sides: list[Side],
    scripts: list[str],
    opts: argparse.Namespace,
    args: list[str],
    runs_dir: Path,
) -> None:
    for round_ in range(1, opts.rounds + 1):
        order = sides if round_ % 2 else sides[::-1]
        for script in scripts:
            for side in order:
                if script not in side.scripts:
                    continue
                print(
                    f"[round {round_}/{opts.rounds}] {side.name:<9} {script} ", end="", flush=True
                )
                log = runs_dir / f"{round_}-{side.name}-{script[:-3]}.log"
                started = time.perf_counter()
                try:
                    result = run_script(python, side, script, args, log)
                except RuntimeError as error:
                    print(f"FAILED ({error})")
                    side.failures.setdefault(script, []).append(f"round {round_}: {error}")
                    continue
                elapsed = time.perf_counter() - started
                side.seconds.setdefault(script, []).append(elapsed)
                kept = runs_dir / f"{round_}-{side.name}-{result.name}"
                shutil.copyfile(result, kept)
                found = side.runs.setdefault(script, {})[round_] = extract(script, kept)
                print(f"{elapsed:.1f} s, {len(found)} figures")


def extract(script: str, result: Path) -> list[Figure]:
    """The figures of one run of ``script`` from its JSON (none for a script we cannot read)."""
    figures = EXTRACTORS.get(script.removeprefix("bench_").removesuffix(".py"))
    return list(figures(json.loads(result.read_text()))) if figures else []


def reload(runs_dir: Path, previous: dict[str, Any]) -> tuple[Side, Side]:
    """Both sides as the last run left them in ``runs_dir`` (``--report-only``): the JSON of
    every run, re-read (so a changed extractor applies), and the failures its compare.json
    recorded. A script a side ran (or failed) is one it has."""
    sides = {n: Side(n, previous.get(n, n), ROOT) for n in ("baseline", "candidate")}
    for name, side in sides.items():
        side.failures = previous.get("failures", {}).get(name, {})
        side.scripts = list(side.failures)
        side.seconds = previous.get("script_seconds", {}).get(name, {})
    for result in sorted(runs_dir.glob("*-*-*.json")):
        round_, name, stem = result.stem.split("-", 2)
        script = f"bench_{stem}.py"
        side = sides[name]
        side.runs.setdefault(script, {})[int(round_)] = extract(script, result)
        if script not in side.scripts:
            side.scripts.append(script)
    return sides["baseline"], sides["candidate"]


# --- comparison ----------------------------------------------------------------------------


@dataclass
class Row:
    script: str
    figure: str
    unit: str
    kind: str
    lower_is_better: bool
    baseline: float | None
    candidate: float | None
    change_pct: float | None  # candidate against baseline, signed
    verdict: str
    rounds_worse: str = "-"  # "2/3": rounds whose candidate was worse than their baseline


def aggregate(figures: list[Figure], how: str) -> float:
    values = [f.value for f in figures]
    if how == "best":
        return min(values) if figures[0].lower_is_better else max(values)
    return statistics.median(values)


def per_key(rounds: dict[int, list[Figure]]) -> dict[str, dict[int, Figure]]:
    keyed: dict[str, dict[int, Figure]] = {}
    for round_, figures in sorted(rounds.items()):
        for figure in figures:
            keyed.setdefault(figure.key, {})[round_] = figure
    return keyed


def change_pct(b: float, c: float) -> float:
    return (c - b) / abs(b) * 100 if b else (0.0 if c == b else math.inf)


def judge(b: float, c: float, figure: Figure, threshold: float) -> str:
    """ "worse", "better" or "same": past the threshold (percent) and the figure's floor."""
    worse = change_pct(b, c) * (1 if figure.lower_is_better else -1)
    if abs(c - b) <= figure.floor or abs(worse) <= threshold:
        return "same"
    return "worse" if worse > 0 else "better"


def compare(base: Side, cand: Side, scripts: list[str], how: str, threshold: float) -> list[Row]:
    rows: list[Row] = []
    for script in scripts:
        b_runs, c_runs = base.runs.get(script, {}), cand.runs.get(script, {})
        failed = [s.name for s in (base, cand) if script in s.failures]
        if failed:
            verdict = f"FAILED ({' and '.join(failed)}, see compare.json)"
            rows.append(Row(script, "(script)", "", "", True, None, None, None, verdict))
        elif not any(b_runs.values()) and not any(c_runs.values()):
            verdict = "no figures read (no extractor for this script's JSON?)"
            rows.append(Row(script, "(script)", "", "", True, None, None, None, verdict))
        missing = {
            "baseline": "new, no baseline" if script not in base.scripts
            else "baseline failed" if not b_runs else "new figure",
            "candidate": "gone in candidate" if script not in cand.scripts
            else "candidate failed" if not c_runs else "figure gone",
        }  # fmt: skip
        b_figs, c_figs = per_key(b_runs), per_key(c_runs)
        for key in [*c_figs, *(k for k in b_figs if k not in c_figs)]:
            sample = next(iter((c_figs.get(key) or b_figs[key]).values()))
            row = Row(script, key, sample.unit, sample.kind, sample.lower_is_better,
                      None, None, None, "")  # fmt: skip
            if key in b_figs:
                row.baseline = aggregate(list(b_figs[key].values()), how)
            if key in c_figs:
                row.candidate = aggregate(list(c_figs[key].values()), how)
            if row.baseline is None or row.candidate is None:
                row.verdict = missing["baseline" if row.baseline is None else "candidate"]
                rows.append(row)
                continue
            row.change_pct = change_pct(row.baseline, row.candidate)
            row.verdict = (
                sample.info
                or {"worse": f"WORSE > {threshold:g}%", "better": "better", "same": "same"}[
                    judge(row.baseline, row.candidate, sample, threshold)
                ]
            )
            paired = [(b_figs[key][r].value, c_figs[key][r].value)
                      for r in b_figs[key] if r in c_figs[key]]  # fmt: skip
            worse = sum(judge(b, c, sample, threshold) == "worse" for b, c in paired)
            row.rounds_worse = f"{worse}/{len(paired)}"
            rows.append(row)
    return rows


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ns", "us", "ms", "s"):
        seconds = value * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
        if seconds >= 100:
            return f"{seconds:.1f} s"
        if seconds >= 1:
            return f"{seconds:.3g} s"
        return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"
    if unit == "bytes":
        return f"{value / MiB:.2f} MiB"
    if unit == "x":
        return f"{value:.3f}x"
    if unit in ("writes", "jobs/s"):
        return f"{value:,.0f} {unit}"
    return f"{value:g} {unit}"


def table(rows: list[Row]) -> list[list[str]]:
    lines = []
    for r in rows:
        change = "-" if r.change_pct is None else f"{r.change_pct:+.1f}%"
        better = "" if not r.unit else ("lower" if r.lower_is_better else "higher")
        lines.append([r.script.removesuffix(".py"), r.figure, r.kind, better,
                      fmt(r.baseline, r.unit), fmt(r.candidate, r.unit), change,
                      r.rounds_worse, r.verdict])  # fmt: skip
    return lines


HEAD = ["script", "figure", "kind", "better", "baseline", "candidate", "change",
        "rounds worse", "verdict"]  # fmt: skip


def print_table(lines: list[list[str]]) -> None:
    widths = [max(len(x) for x in col) for col in zip(HEAD, *lines, strict=False)]
    print("  ".join(h.ljust(w) for h, w in zip(HEAD, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


def markdown(meta: dict[str, Any], lines: list[list[str]], flagged: list[Row]) -> str:
    out = [
        "# Benchmarks: baseline against candidate, same run",
        "",
        f"* baseline: `{meta['baseline']}`",
        f"* candidate: `{meta['candidate']}`",
        f"* {meta['date']}, {meta['cpus']} CPUs, load average before the run "
        f"{meta['load_before']}; script arguments: `{' '.join(meta['script_args']) or '(none)'}`",
        f"* {meta['rounds']} round(s), interleaved per script; {meta['aggregate']} per figure "
        f"over the rounds; flagged: more than {meta['threshold']:g}% worse (and past the "
        "figure's noise floor)",
        "* rounds worse: in how many rounds the candidate's figure was more than the threshold "
        "worse than the baseline's of the same round (a flag in every round is not noise)",
        "* kind `ratio`: ours against a reference measured in the same process (its change is a "
        "ratio of ratios, robust to machine noise); `abs`: our own time, rate, memory or count",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "|".join("---" for _ in HEAD) + "|",
    ]
    out += ["| " + " | ".join(x.replace("|", "\\|") for x in line) + " |" for line in lines]
    out += ["", f"**{len(flagged)} figure(s) more than {meta['threshold']:g}% worse**"]
    out += [f"* {r.script} {r.figure}: {r.change_pct:+.1f}%" for r in flagged if r.change_pct]
    return "\n".join(out) + "\n"


# --- main ----------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def _on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the arguments for every script (--quick, and what follows ``--``)."""
    argv = sys.argv[1:]
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", nargs="?", default=DEFAULT_BASELINE, help="git revision")
    parser.add_argument("--candidate", help="git revision (default: this working tree)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the alternation N times")
    parser.add_argument("--aggregate", choices=("median", "best"), default="median")
    parser.add_argument("--only", action="append", help="a script (core, io...), repeatable")
    parser.add_argument("--threshold", type=float, default=5.0, help="percent (default 5)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure is flagged")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the scripts")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="compare.md/.json")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no benchmark run: the table again from the last run's OUT/compare-runs/ "
        "(e.g. with another --threshold or --aggregate)",
    )
    opts = parser.parse_args(argv)
    return opts, (["--quick"] if opts.quick else []) + passthrough


def prepare(opts: argparse.Namespace, temp: Path, worktrees: list[Path]) -> tuple[Side, Side]:
    """The two sides: a detached worktree under ``temp`` for each revision given (appended to
    ``worktrees`` for the clean-up), this working tree for a candidate not given."""
    sides = []
    for name, rev in (("baseline", opts.baseline), ("candidate", opts.candidate)):
        if rev is None:
            side = Side(name, describe_worktree(ROOT), ROOT)
        else:
            sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
            tree = temp / name
            worktrees.append(tree)
            git("worktree", "add", "--detach", "--quiet", str(tree), sha)
            commit = git("log", "-1", "--format=%h %s", sha)[:80]
            side = Side(name, commit if sha.startswith(rev) else f"{rev} = {commit}", tree)
        side.scripts = [s for s in bench_scripts(side.tree) if (side.tree / "bench" / s).exists()]
        check_import(opts.python, side)
        sides.append(side)
    return sides[0], sides[1]


def write_report(
    opts: argparse.Namespace, meta: dict[str, Any], base: Side, cand: Side, rows: list[Row]
) -> int:
    """Print the table, write compare.md and compare.json; the exit status."""
    lines = table(rows)
    print()
    print_table(lines)
    flagged = [r for r in rows if r.verdict.startswith("WORSE")]
    failed = [r for r in rows if r.verdict.startswith("FAILED")]
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "compare.md").write_text(markdown(meta, lines, flagged))
    report = {
        **meta,
        "script_seconds": {s.name: s.seconds for s in (base, cand)},
        "failures": {s.name: s.failures for s in (base, cand)},
        "rows": [r.__dict__ for r in rows],
        "values_per_round": {
            s.name: {
                script: {k: {r: f.value for r, f in v.items()} for k, v in per_key(runs).items()}
                for script, runs in s.runs.items()
            }
            for s in (base, cand)
        },
    }
    (opts.out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{len(flagged)} figure(s) more than {opts.threshold:g}% worse, "
        f"{len(failed)} script failure(s); {meta['elapsed_s']:.0f} s"
    )
    print(f"written {opts.out / 'compare.md'}, {opts.out / 'compare.json'}")
    return 1 if opts.check and (flagged or failed) else 0


def report_only(opts: argparse.Namespace) -> int:
    """The table again from the JSON the last run kept in OUT/compare-runs/."""
    runs_dir = opts.out / "compare-runs"
    if not runs_dir.is_dir():
        raise SystemExit(f"{runs_dir}: no run to report (run without --report-only first)")
    meta = json.loads((opts.out / "compare.json").read_text())
    base, cand = reload(runs_dir, meta)
    scripts = bench_scripts(ROOT)
    scripts += [s for s in [*cand.scripts, *base.scripts] if s not in scripts]
    scripts = [s for s in scripts if s in base.scripts or s in cand.scripts]
    meta = {k: v for k, v in meta.items() if k not in ("rows", "values_per_round")}
    meta |= {"aggregate": opts.aggregate, "threshold": opts.threshold}
    return write_report(opts, meta, base, cand, compare(base, cand, scripts, opts.aggregate,
                                                         opts.threshold))  # fmt: skip


def main() -> int:
    opts, script_args = parse_args()
    if opts.report_only:
        return report_only(opts)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    temp = Path(tempfile.mkdtemp(prefix="wasm-sandbox-compare-"))
    worktrees: list[Path] = []
    try:
        base, cand = prepare(opts, temp, worktrees)
        scripts = cand.scripts + [s for s in base.scripts if s not in cand.scripts]
        if opts.only:
            wanted = {f"bench_{o.removeprefix('bench_').removesuffix('.py')}.py" for o in opts.only}
            scripts = [s for s in scripts if s in wanted]
        if not scripts:
            raise SystemExit("no benchmark script to run (tasks.sh's bench) case, --only)")
        print(f"baseline:  {base.label}\ncandidate: {cand.label}")
        print(f"scripts:   {' '.join(scripts)}; arguments: {' '.join(script_args) or '(none)'}")
        runs_dir = opts.out / "compare-runs"
        shutil.rmtree(runs_dir, ignore_errors=True)
        runs_dir.mkdir(parents=True)
        meta: dict[str, Any] = {
            "baseline": base.label,
            "candidate": cand.label,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpus": os.cpu_count(),
            "load_before": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
            "script_args": script_args,
            "rounds": opts.rounds,
            "aggregate": opts.aggregate,
            "threshold": opts.threshold,
        }
        started = time.perf_counter()
        measure(opts.python, [base, cand], scripts, opts, script_args, runs_dir)
        meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    except (KeyboardInterrupt, Interrupted) as stop:
        print(f"\ninterrupted ({stop or 'SIGINT'}); removing the temporary worktrees")
        return 130
    except subprocess.CalledProcessError as error:
        print(f"{' '.join(error.cmd)}: {(error.stderr or '').strip()}", file=sys.stderr)
        return 2
    finally:
        for tree in worktrees:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
        shutil.rmtree(temp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True, check=False)
    rows = compare(base, cand, scripts, opts.aggregate, opts.threshold)
    return write_report(opts, meta, base, cand, rows)


if __name__ == "__main__":
    raise SystemExit(main())

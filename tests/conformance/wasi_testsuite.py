"""The official WASI preview1 test suite (``../shared/wasi-testsuite``) run through
wasm-sandbox and through wasmtime-py's own WASI, the same way: each test's ``root`` copied to
a scratch directory and mounted read-write at ``/``, its ``args`` and ``env`` passed, exit code
and stdout compared with the test's specification.

Run as a script for a table: ``python -m tests.conformance.wasi_testsuite [--reference]``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

import wasm_sandbox as ws

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = (
    ROOT.parent / "shared" / "wasi-testsuite",
    Path("/work/shared/wasi-testsuite"),
)


def suite_dir() -> Path | None:
    """Where the suite is: ``$WASI_TESTSUITE``, else ``../shared/wasi-testsuite`` next to
    the project (a user's own clone has none: the tests then skip)."""
    configured = os.environ.get("WASI_TESTSUITE")
    if configured:
        return Path(configured) if Path(configured, "tests").is_dir() else None
    return next((c for c in CANDIDATES if (c / "tests").is_dir()), None)


@dataclass(frozen=True, kw_only=True)
class Case:
    """One preview1 test program and its specification."""

    name: str
    wasm: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    exit_code: int = 0
    stdout: str | None = None


def cases(suite: Path) -> Iterator[Case]:
    """Every ``tests/*/testsuite/wasm32-wasip1/*.wasm``, sorted, with its JSON."""
    for wasm in sorted(suite.glob("tests/*/testsuite/wasm32-wasip1/*.wasm")):
        spec_file = wasm.with_suffix(".json")
        spec = json.loads(spec_file.read_text()) if spec_file.exists() else {}
        root = spec.get("root")
        yield Case(
            name=f"{wasm.parents[2].name}/{wasm.stem}",
            wasm=wasm,
            args=tuple(spec.get("args", ())),
            env=dict(spec.get("env", {})),
            root=wasm.parent / root if root is not None else None,
            exit_code=int(spec.get("exit_code", 0)),
            stdout=spec.get("stdout"),
        )


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    def failure(self, case: Case) -> str | None:
        """Why this outcome fails ``case``, or None when it passes."""
        problems = []
        if self.exit_code != case.exit_code:
            problems.append(f"exit code {self.exit_code}, expected {case.exit_code}")
        if case.stdout is not None and self.stdout != case.stdout:
            problems.append(f"stdout {self.stdout!r}, expected {case.stdout!r}")
        if not problems:
            return None
        tail = self.stderr.strip()[-600:]
        return "; ".join(problems) + (f"\nstderr: {tail}" if tail else "")


def scratch_root(case: Case, into: Path) -> Path:
    """A writable copy of the test's root (an absent root is an empty directory)."""
    target = into / "root"
    if case.root is not None and case.root.is_dir():
        shutil.copytree(case.root, target, symlinks=True)
        for dirpath, _dirs, files in os.walk(target):
            os.chmod(dirpath, 0o755)
            for name in files:
                path = Path(dirpath, name)
                if not path.is_symlink():
                    os.chmod(path, 0o644)
    else:
        target.mkdir()
    return target


def run_ours(case: Case) -> Outcome:
    """Run ``case`` in wasm-sandbox, with no limits beyond the defaults' memory."""
    with tempfile.TemporaryDirectory(prefix="wasi-conf-") as tmp:
        builder = ws.WasmSandbox.builder().source(case.wasm).max_fuel(None)
        if case.root is not None:
            builder.mount_directory(scratch_root(case, Path(tmp)), "/", read_only=False)
        with builder.build() as sandbox:
            try:
                result = sandbox.run(list(case.args), env=case.env)
            except ws.ExecutionError as error:  # a trap: the guest's stderr says why
                return Outcome(
                    -1,
                    error.stdout.decode("utf-8", "replace"),
                    error.stderr.decode("utf-8", "replace") + f"\n{type(error).__name__}: {error}",
                )
        return Outcome(
            result.exit_code,
            result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"),
        )


_ENGINE: wasmtime.Engine | None = None


def run_reference(case: Case) -> Outcome:
    """Run ``case`` under wasmtime-py's built-in WASI, the same way."""
    global _ENGINE  # noqa: PLW0603 - one engine for the whole table
    if _ENGINE is None:
        _ENGINE = wasmtime.Engine()
    engine = _ENGINE
    with tempfile.TemporaryDirectory(prefix="wasi-ref-") as tmp:
        config = wasmtime.WasiConfig()
        config.argv = [case.wasm.name, *case.args]
        config.env = list(case.env.items())
        if case.root is not None:
            config.preopen_dir(str(scratch_root(case, Path(tmp))), "/")
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        config.stdout_file = str(out)
        config.stderr_file = str(err)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        store = wasmtime.Store(engine)
        store.set_wasi(config)
        instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(case.wasm)))
        start = instance.exports(store)["_start"]
        if not isinstance(start, wasmtime.Func):
            raise TypeError(f"{case.name}: _start is not a function")
        try:
            start(store)
            code = 0
        except wasmtime.ExitTrap as exit_:
            code = exit_.code
        except wasmtime.Trap as trap:
            code, err_text = -1, str(trap)
            return Outcome(code, out.read_text("utf-8", "replace"), err_text)
        del start, instance, store
        return Outcome(code, out.read_text("utf-8", "replace"), err.read_text("utf-8", "replace"))


def main(argv: list[str]) -> int:
    suite = suite_dir()
    if suite is None:
        print("wasi-testsuite not found (set WASI_TESTSUITE)", file=sys.stderr)
        return 2
    runner = run_reference if "--reference" in argv else run_ours
    only = [a for a in argv if not a.startswith("--")]
    passed = failed = 0
    for case in cases(suite):
        if only and not any(o in case.name for o in only):
            continue
        try:
            why = runner(case).failure(case)
        except Exception as error:  # a table of outcomes: one failure must not end it
            why = f"raised {type(error).__name__}: {error}"
        if why is None:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {case.name}: {why}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

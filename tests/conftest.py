"""Shared fixtures: WAT helpers, C guests compiled from source with Debian's clang + wasi-libc
(cached for the run), and an isolated compiled-module cache directory per test session."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import wasm_sandbox as ws

GUESTS = Path(__file__).parent / "guests"
SHIPPED_GLUE = Path(ws.__file__).parent / "guest"  # the headers the package ships
CLANG = shutil.which("clang-14") or shutil.which("clang")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test run gets its own compiled-module cache, shared by the run's tests.
    ``WASM_SANDBOX_TEST_CACHE`` names a directory to reuse across runs instead (a developer
    iterating on one test file need not recompile the CPython runtime every run)."""
    reused = os.environ.get("WASM_SANDBOX_TEST_CACHE")
    path = Path(reused) if reused else tmp_path_factory.mktemp("module-cache")
    path.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("WASM_SANDBOX_CACHE_DIR")
    os.environ["WASM_SANDBOX_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("WASM_SANDBOX_CACHE_DIR", None)
    else:
        os.environ["WASM_SANDBOX_CACHE_DIR"] = old


def compile_c(source: Path, out_dir: Path) -> Path:
    """Compile one C file to a WASI command module (cached by source hash)."""
    if CLANG is None:
        pytest.fail("clang-14 is missing: install Debian's clang-14 lld-14 wasi-libc (see README)")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = out_dir / f"{source.stem}-{digest}.wasm"
    if not out.exists():
        subprocess.run(
            [
                CLANG,
                "--target=wasm32-wasi",
                "-O2",
                f"-I{SHIPPED_GLUE}",
                "-o",
                str(out),
                str(source),
            ],
            check=True,
            capture_output=True,
        )
    return out


@pytest.fixture(scope="session")
def c_guest(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``c_guest("name")`` compiles tests/guests/name.c once per run and returns the .wasm."""
    out_dir = tmp_path_factory.mktemp("c-guests")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = compile_c(GUESTS / f"{name}.c", out_dir)
        return built[name]

    return get


def script_sandbox(source: str | Path, language: str, **options: object) -> ws.WasmSandbox:
    """A Python or JavaScript sandbox from a path or source text (builder options as
    keywords); unmetered (no fuel limit) unless ``max_fuel`` is given: metering a CPython
    compiles the runtime a second time."""
    builder = ws.WasmSandbox.builder().source(source)
    if isinstance(source, str):
        builder.language(language)
    options.setdefault("max_fuel", None)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def sandbox(source: ws.SandboxBuilder | bytes | str | Path, **limits: object) -> ws.WasmSandbox:
    """Build a sandbox from WAT/wasm bytes or a path, with builder options as keywords."""
    builder = ws.WasmSandbox.builder().source(source)  # type: ignore[arg-type]
    for name, value in limits.items():
        getattr(builder, name)(value)
    return builder.build()

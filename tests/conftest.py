"""Shared fixtures: WAT helpers, C guests compiled from source with Debian's clang + wasi-libc
(or zig, see ``compile_c``; cached for the run), and an isolated compiled-module cache
directory per test session."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

import wasm_sandbox as ws
from wasm_sandbox._guests import _compile

GUESTS = Path(__file__).parent / "guests"
SHIPPED_GLUE = Path(ws.__file__).parent / "guest"  # the headers the package ships
CLANG = shutil.which("clang-14") or shutil.which("clang")


_CACHE = pytest.StashKey[tuple[Path, bool, "str | None"]]()
_PREPARED = pytest.StashKey[Path]()
_SCRIPT_MARKERS = ('"python"', "'python'")
"""Text in a test file that means it runs Python guests (their runtime is prepared first)."""


def pytest_configure(config: pytest.Config) -> None:
    """Every test run gets its own compiled-module cache, shared by the run's tests.
    ``WASM_SANDBOX_TEST_CACHE`` names a directory to reuse across runs instead (a developer
    iterating on one test file need not recompile the CPython runtime every run)."""
    reused = os.environ.get("WASM_SANDBOX_TEST_CACHE")
    path = Path(reused) if reused else Path(tempfile.mkdtemp(prefix="wasm-sandbox-tests-"))
    path.mkdir(parents=True, exist_ok=True)
    config.stash[_CACHE] = (path, not reused, os.environ.get("WASM_SANDBOX_CACHE_DIR"))
    config.stash[_PREPARED] = ws.default_cache_dir()  # where ./tasks.sh setup prepared them
    os.environ["WASM_SANDBOX_CACHE_DIR"] = str(path)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Have the script runtimes ready in the run's cache before the first test, when a
    collected test runs Python guests: a first compile takes minutes on a loaded machine,
    which must not count against one test's timeout. The runtimes ``./tasks.sh setup``
    prepared in the user's cache are linked in (no compile); otherwise they are prepared
    here, once, before any test starts."""
    files = {Path(str(item.fspath)) for item in session.items}
    if not any(any(m in f.read_text() for m in _SCRIPT_MARKERS) for f in files if f.exists()):
        return
    cache = session.config.stash[_CACHE][0]
    linked = _link_prepared(session.config.stash[_PREPARED], cache)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for runtime in ws.prepare("python", "javascript", cache_dir=cache, progress=False):
        how = f"compiled in {runtime.seconds:.1f} s" if runtime.compiled else "prepared"
        if reporter is not None:
            reporter.write_line(f"{runtime.name} runtime ready ({how}; {linked} files linked)")


def _link_prepared(prepared: Path, cache: Path) -> int:
    """Hard-link (else copy) every compiled-module cache entry of ``prepared`` into
    ``cache``; returns how many files. A link keeps the artifact's stamp valid."""
    if not prepared.is_dir() or prepared.resolve() == cache.resolve():
        return 0
    count = 0
    for source in prepared.iterdir():
        target = cache / source.name
        if source.suffix not in (".cwasm", ".sha256", ".stamp", ".info") or target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        count += 1
    return count


def pytest_unconfigure(config: pytest.Config) -> None:
    path, temporary, old = config.stash[_CACHE]
    if old is None:
        os.environ.pop("WASM_SANDBOX_CACHE_DIR", None)
    else:
        os.environ["WASM_SANDBOX_CACHE_DIR"] = old
    if temporary:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def _isolated_cache(pytestconfig: pytest.Config) -> Path:
    """The run's compiled-module cache directory (see ``pytest_configure``)."""
    return pytestconfig.stash[_CACHE][0]


def compile_c(source: Path, out_dir: Path) -> Path:
    """Compile one C file to a WASI command module (cached by source hash), with the C
    compiler the package would choose (clang-14 + wasi-libc; ``WASM_SANDBOX_C_TOOLCHAIN=zig``
    runs the C guest tests on zig)."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = out_dir / f"{source.stem}-{digest}.wasm"
    if not out.exists():
        toolchain = _compile.find_toolchain("c")
        subprocess.run(
            [
                *toolchain.command,
                "--target=wasm32-wasi",
                "-O2",
                f"-I{SHIPPED_GLUE}",
                "-o",
                str(out),
                str(source),
                *toolchain.flags,
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

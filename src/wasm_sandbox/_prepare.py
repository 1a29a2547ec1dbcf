"""Preparing the script runtimes ahead of time: ``prepare("python", "javascript")`` compiles
each runtime's module once (in a child process, with a progress line on a terminal) into the
compiled-module cache, so a program's first Python or JavaScript sandbox starts in
milliseconds instead of waiting a minute or more for that compile.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._config._limits import OptimizationLevel
from ._config._mounts import Mount
from ._errors import ConfigurationError
from ._guests._javascript import find_javascript_runtime, runtime_digest
from ._guests._python import find_python_runtime
from ._runtime._engine import EngineHandle, default_cache_dir, get_engine
from ._units import format_duration, format_size

__all__ = [
    "RUNTIMES",
    "PreparedRuntime",
    "compile_progress",
    "prepare",
    "runtime_engine",
    "runtime_module",
]

RUNTIMES = ("python", "javascript")
COMPILE_SECONDS_PER_MB = 0.8  # a first compile on this project's 2-core reference machine


@dataclass(frozen=True, slots=True)
class PreparedRuntime:
    """One runtime ready in the compiled-module cache."""

    name: str
    """``"python"`` or ``"javascript"``."""
    artifact: Path
    """The compiled artifact (the cache also keeps its checksum, stamp and module info)."""
    size_bytes: int
    """The artifact's size on disk."""
    seconds: float
    """How long preparing it took now."""
    compiled: bool
    """True when it was compiled now; False when it was prepared already (or imported)."""
    digest: str
    """The SHA-256 of the runtime's module: its identity in the cache."""
    imported: bool = False
    """True when it was installed now from an artifact bundle (``import_prepared``)."""


def runtime_module(name: str, cache_dir: Path) -> tuple[Path, str, tuple[Mount, ...]]:
    """The module file of the runtime ``name``, its SHA-256 (as its package recorded it for
    Python; hashed, 1.5 MB, for JavaScript) and the mounts it needs (Python's standard
    library and matplotlib's data). ``ToolchainNotFound`` names the package to install."""
    if name == "python":
        runtime = find_python_runtime(cache_dir)
        return runtime.wasm_path, runtime.wasm_digest, runtime.mounts
    if name == "javascript":
        path = find_javascript_runtime()
        return path, runtime_digest(path), ()
    raise ConfigurationError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")


def runtime_engine() -> EngineHandle:
    """The engine every Python and JavaScript sandbox uses: the default optimisation level,
    no debug info, fuel metering on (one artifact per runtime)."""
    return get_engine(OptimizationLevel.SPEED, False, True)


def compile_progress(size: int) -> Callable[[str, float], None]:
    """A progress line on stderr for the first compile of a ``size``-byte module: elapsed
    time and an estimate from its size."""
    estimate = max(1.0, size / 1e6 * COMPILE_SECONDS_PER_MB)

    def show(phase: str, seconds: float) -> None:
        if phase == "compiled":
            line = f"compiled {format_size(size)} in {format_duration(seconds)}\n"
        else:
            line = (
                f"compiling {format_size(size)}: {seconds:5.1f} s of ~{estimate:.0f} s "
                "(first use only; 'wasm-sandbox prepare' does it ahead of time) "
            )
        sys.stderr.write(f"\rwasm-sandbox: {line}")
        sys.stderr.flush()

    return show


def prepare(
    *runtimes: str,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> list[PreparedRuntime]:
    """Compile the script runtimes named (``"python"``, ``"javascript"``; none: both) into
    the compiled-module cache (``cache_dir``, default ``default_cache_dir()``), so the first
    sandbox of each starts fast. ``progress``: a line on stderr while compiling (default:
    when stderr is a terminal). Returns what was prepared, where and how large."""
    names = runtimes or RUNTIMES
    for name in names:
        if not isinstance(name, str) or name not in RUNTIMES:
            raise ConfigurationError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    show = sys.stderr.isatty() if progress is None else bool(progress)
    handle = runtime_engine()
    prepared = []
    for name in dict.fromkeys(names):
        path, digest, _ = runtime_module(name, root)
        started = time.monotonic()
        ready = handle.artifact(digest, root) is not None
        report = compile_progress(path.stat().st_size) if show and not ready else None
        module = handle.load_file(path, digest, root, report)
        artifact = handle.artifact(digest, root)
        if artifact is None:
            raise ConfigurationError(
                f"the compiled {name} runtime could not be written to {root} (is it writable?)"
            )
        prepared.append(
            PreparedRuntime(
                name=name,
                artifact=artifact,
                size_bytes=artifact.stat().st_size,
                seconds=time.monotonic() - started,
                compiled=not ready and not module.from_cache,
                digest=digest,
            )
        )
    return prepared

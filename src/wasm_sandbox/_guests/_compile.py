"""Compiles C (Debian's clang-14 + wasi-libc, else zig from the ``ziglang`` PyPI package) and
Rust (Debian's rustc with the wasm32-wasi standard library) sources to WebAssembly, caching
the result on disk, keyed by the compiler and its version among the rest.

A source with a ``main`` becomes a WASI command (``run()``), with its other functions exported
too; one without becomes a reactor library whose exported functions ``call()`` can reach.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._errors import CompilationError, ToolchainNotFound
from .._runtime._cache import write_atomically
from ._toolversion import compiler_version

__all__ = ["LANGUAGES", "compile_source"]

COMPILE_TIMEOUT = 300.0
_C_MAIN = re.compile(rb"\bint\s+main\s*\(")
_RUST_MAIN = re.compile(rb"\bfn\s+main\s*\(")


LANGUAGES = {".c": "c", ".rs": "rust"}
_PACKAGES = {
    "c": "clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32",
    "rust": "rustc libstd-rust-dev-wasm32",
}
_ZIG_HINT = "pip install 'wasm-sandbox[c]'"
_C_TOOLCHAINS = ("clang", "zig")
_STACK_BYTES = 65536
# Where Debian's wasi-libc (and a wasi-sdk style sysroot) put the C library clang links.
_WASI_LIBC = (
    Path("/usr/lib/wasm32-wasi/libc.a"),
    Path("/usr/share/wasi-sysroot/lib/wasm32-wasi/libc.a"),
)


@dataclass(frozen=True, slots=True)
class Toolchain:
    """A compiler found for one source: the command before its flags, and the version line
    that goes into the compiled module's cache key."""

    kind: str
    """``clang``, ``zig`` or ``rustc``."""
    command: tuple[str, ...]
    """``("/usr/bin/clang-14",)``, ``("/…/ziglang/zig", "cc")`` or ``("/usr/bin/rustc",)``."""
    version: str
    """The compiler's first ``--version`` line (``zig 0.17.1`` for zig)."""
    flags: tuple[str, ...] = ()
    """What this compiler needs, after the common flags, to build what clang-14 builds."""


def find_toolchain(language: str, cache_dir: Path | None = None) -> Toolchain:
    """The compiler for ``language``, or ToolchainNotFound saying what to install. C: the
    explicit choice (``WASM_SANDBOX_C_TOOLCHAIN=clang|zig``, or a ``WASM_SANDBOX_CLANG``
    path), else clang-14 with wasi-libc, else zig (``ziglang``), else clang-14 without it.
    Versions are remembered per compiler file (``_toolversion``, on disk under
    ``cache_dir``): a build whose module is cached starts no compiler."""
    if language != "c":
        rustc = os.environ.get("WASM_SANDBOX_RUSTC") or "/usr/bin/rustc"
        version = _version(rustc, language, cache_dir)
        return Toolchain(kind="rustc", command=(rustc,), version=version)
    choice = os.environ.get("WASM_SANDBOX_C_TOOLCHAIN", "")
    if choice and choice not in _C_TOOLCHAINS:
        raise ToolchainNotFound(f"WASM_SANDBOX_C_TOOLCHAIN must be clang or zig, got {choice!r}")
    explicit_clang = os.environ.get("WASM_SANDBOX_CLANG")
    if choice == "clang" or (explicit_clang and choice != "zig"):
        return _clang(explicit_clang or shutil.which("clang-14") or "clang-14", cache_dir)
    zig = _zig_executable()
    if choice == "zig":
        if zig is None:
            raise ToolchainNotFound(
                f"WASM_SANDBOX_C_TOOLCHAIN=zig, but zig is missing: {_ZIG_HINT}"
            )
        return _zig(zig, cache_dir)
    clang = shutil.which("clang-14")
    if clang is not None and (zig is None or any(p.is_file() for p in _WASI_LIBC)):
        return _clang(clang, cache_dir)  # without wasi-libc its compile says what to install
    if zig is not None:
        return _zig(zig, cache_dir)
    raise ToolchainNotFound(
        "compiling C to WebAssembly needs clang-14 with wasi-libc "
        f"(apt-get install {_PACKAGES['c']}) or zig ({_ZIG_HINT}); neither is installed"
    )


def _clang(clang: str, cache_dir: Path | None) -> Toolchain:
    return Toolchain(kind="clang", command=(clang,), version=_version(clang, "c", cache_dir))


def _zig(zig: str, cache_dir: Path | None) -> Toolchain:
    def broken() -> ToolchainNotFound:
        return ToolchainNotFound(f"{zig} does not run (zig version failed): {_ZIG_HINT}")

    version = compiler_version(zig, cache_dir, broken, option="version")
    if version == zig:  # it printed nothing
        raise broken()
    # zig's default stack (16 MiB) would all be initial memory: clang's (wasm-ld's) 64 KiB.
    return Toolchain(
        kind="zig",
        command=(zig, "cc"),
        version=f"zig {version}",
        flags=(f"-Wl,-z,stack-size={_STACK_BYTES}",),
    )


def _zig_executable() -> str | None:
    """The ``zig`` of the ``ziglang`` package (``wasm-sandbox[c]``), else one on PATH."""
    spec = importlib.util.find_spec("ziglang")
    if spec is not None and spec.origin is not None:
        packaged = Path(spec.origin).parent / "zig"
        if packaged.is_file() and os.access(packaged, os.X_OK):
            return str(packaged)
    return shutil.which("zig")


HELPERS = Path(__file__).resolve().parent.parent / "guest"  # the glue we ship for guests


def _helper_files() -> list[Path]:
    """Every guest-side glue file we ship (``wasm_sandbox.h``/``.rs``, the data ABI, and
    ``wasm_sandbox_net.h``/``.rs``, the network): each compile finds them next to its source
    (``#include "wasm_sandbox_net.h"``, ``include!("wasm_sandbox_net.rs")``,
    ``mod wasm_sandbox_net;``), and they are part of the compiled guest's cache key."""
    return sorted(p for p in HELPERS.iterdir() if p.suffix in (".h", ".rs"))


def compile_source(source: bytes, language: str, cache_dir: Path | None, name: str) -> bytes:
    """The wasm module for ``source`` (C or Rust), from the cache or freshly compiled."""
    toolchain = find_toolchain(language, cache_dir)
    command = _is_command(source, language)
    helpers = b"".join(p.read_bytes() for p in _helper_files())
    # The version line names the compiler too ("Debian clang version 14.0.6", "zig 0.17.1"):
    # a module built by one compiler is never taken for another's.
    key = hashlib.sha256(
        b"\0".join(
            [
                language.encode(),
                toolchain.version.encode(),
                b"cmd" if command else b"lib",
                helpers,
                source,
            ]
        )
    ).hexdigest()
    cached = cache_dir / "guests" / f"{key}.wasm" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    wasm = _compile(toolchain, source, language, command, name)
    if cached is not None:
        _store(cached, wasm)
    return wasm


def _version(compiler: str, language: str, cache_dir: Path | None = None) -> str:
    """``compiler --version``'s first line, remembered per compiler file (``_toolversion``)."""
    return compiler_version(compiler, cache_dir, lambda: _missing(language, compiler))


def _missing(language: str, compiler: str) -> ToolchainNotFound:
    what = "C" if language == "c" else "Rust"
    zig = f" (or zig: {_ZIG_HINT})" if language == "c" else ""
    return ToolchainNotFound(
        f"compiling {what} to WebAssembly needs {compiler}, which is not installed: "
        f"apt-get install {_PACKAGES[language]}{zig}"
    )


def _is_command(source: bytes, language: str) -> bool:
    return bool((_C_MAIN if language == "c" else _RUST_MAIN).search(source))


def _compile(toolchain: Toolchain, source: bytes, language: str, command: bool, name: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="wasm-sandbox-build-") as work:
        src = Path(work) / ("guest.c" if language == "c" else "guest.rs")
        out = Path(work) / "guest.wasm"
        src.write_bytes(source)
        for helper in _helper_files():
            shutil.copyfile(helper, Path(work) / helper.name)
        argv = _argv(toolchain, language, command, src, out)
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False, cwd=work
            )
        except subprocess.TimeoutExpired:
            raise CompilationError(
                f"compiling {name} took longer than {COMPILE_TIMEOUT:g} s"
            ) from None
        diagnostics = (done.stderr + done.stdout).replace(str(src), name).strip()
        if done.returncode != 0 or not out.is_file():
            if language == "rust" and "can't find crate for `std`" in diagnostics:
                raise ToolchainNotFound(
                    f"{toolchain.command[0]} has no wasm32-wasi standard library: "
                    f"apt-get install {_PACKAGES['rust']}",
                    diagnostics,
                )
            if toolchain.kind == "clang" and "wasi" in diagnostics and "not found" in diagnostics:
                raise ToolchainNotFound(
                    f"clang cannot find wasi-libc: apt-get install {_PACKAGES['c']} "
                    f"(or use zig: {_ZIG_HINT})",
                    diagnostics,
                )
            first = next((line for line in diagnostics.splitlines() if "error" in line), "")
            raise CompilationError(f"{name} failed to compile: {first}".rstrip(": "), diagnostics)
        return out.read_bytes()


def _argv(toolchain: Toolchain, language: str, command: bool, src: Path, out: Path) -> list[str]:
    compiler = toolchain.command
    if language == "c":  # zig cc takes clang's flags; it brings its own wasi-libc
        argv = [*compiler, "--target=wasm32-wasi", "-O2", "-o", str(out), str(src)]
        # wasm32 defaults to hidden visibility: make the source's functions exportable.
        argv += ["-fvisibility=default", "-Wl,--export-dynamic"]
        if not command:
            argv += ["-mexec-model=reactor"]
        return argv + list(toolchain.flags)
    crate = "bin" if command else "cdylib"
    return [*compiler, "--target", "wasm32-wasi", "-O", "-C", "strip=symbols", "--crate-type",
            crate, "--crate-name", "guest", "-o", str(out), str(src)]  # fmt: skip


def _store(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, data)
    except OSError:
        pass  # an unwritable cache only costs a recompile

"""Compiles C (Debian's clang-14 + wasi-libc) and Rust (Debian's rustc with the wasm32-wasi
standard library) sources to WebAssembly, caching the result on disk.

A source with a ``main`` becomes a WASI command (``run()``), with its other functions exported
too; one without becomes a reactor library whose exported functions ``call()`` can reach.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .._errors import CompilationError, ToolchainNotFound
from .._runtime._cache import write_atomically
from ._toolversion import compiler_version

__all__ = ["LANGUAGES", "compile_source"]

COMPILE_TIMEOUT = 300.0
_C_MAIN = re.compile(rb"\bint\s+main\s*\(")
_RUST_MAIN = re.compile(rb"\bfn\s+main\s*\(")


def _clang() -> str:
    return os.environ.get("WASM_SANDBOX_CLANG") or shutil.which("clang-14") or "clang-14"


def _rustc() -> str:
    return os.environ.get("WASM_SANDBOX_RUSTC") or "/usr/bin/rustc"


LANGUAGES = {".c": "c", ".rs": "rust"}
_PACKAGES = {
    "c": "clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32",
    "rust": "rustc libstd-rust-dev-wasm32",
}


HELPERS = Path(__file__).resolve().parent.parent / "guest"  # the glue we ship for guests


def _helper_files() -> list[Path]:
    """Every guest-side glue file we ship (``wasm_sandbox.h``/``.rs``, the data ABI, and
    ``wasm_sandbox_net.h``/``.rs``, the network): each compile finds them next to its source
    (``#include "wasm_sandbox_net.h"``, ``include!("wasm_sandbox_net.rs")``,
    ``mod wasm_sandbox_net;``), and they are part of the compiled guest's cache key."""
    return sorted(p for p in HELPERS.iterdir() if p.suffix in (".h", ".rs"))


def compile_source(source: bytes, language: str, cache_dir: Path | None, name: str) -> bytes:
    """The wasm module for ``source`` (C or Rust), from the cache or freshly compiled."""
    compiler = _clang() if language == "c" else _rustc()
    version = _version(compiler, language, cache_dir)
    command = _is_command(source, language)
    helpers = b"".join(p.read_bytes() for p in _helper_files())
    key = hashlib.sha256(
        b"\0".join(
            [language.encode(), version.encode(), b"cmd" if command else b"lib", helpers, source]
        )
    ).hexdigest()
    cached = cache_dir / "guests" / f"{key}.wasm" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    wasm = _compile(compiler, source, language, command, name)
    if cached is not None:
        _store(cached, wasm)
    return wasm


def _version(compiler: str, language: str, cache_dir: Path | None = None) -> str:
    """``compiler --version``'s first line, remembered per compiler file (``_toolversion``)."""
    return compiler_version(compiler, cache_dir, lambda: _missing(language, compiler))


def _missing(language: str, compiler: str) -> ToolchainNotFound:
    what = "C" if language == "c" else "Rust"
    return ToolchainNotFound(
        f"compiling {what} to WebAssembly needs {compiler}, which is not installed: "
        f"apt-get install {_PACKAGES[language]}"
    )


def _is_command(source: bytes, language: str) -> bool:
    return bool((_C_MAIN if language == "c" else _RUST_MAIN).search(source))


def _compile(compiler: str, source: bytes, language: str, command: bool, name: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="wasm-sandbox-build-") as work:
        src = Path(work) / ("guest.c" if language == "c" else "guest.rs")
        out = Path(work) / "guest.wasm"
        src.write_bytes(source)
        for helper in _helper_files():
            shutil.copyfile(helper, Path(work) / helper.name)
        argv = _argv(compiler, language, command, src, out)
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
                    f"{compiler} has no wasm32-wasi standard library: "
                    f"apt-get install {_PACKAGES['rust']}",
                    diagnostics,
                )
            if language == "c" and "wasi" in diagnostics and "not found" in diagnostics:
                raise ToolchainNotFound(
                    f"clang cannot find wasi-libc: apt-get install {_PACKAGES['c']}", diagnostics
                )
            first = next((line for line in diagnostics.splitlines() if "error" in line), "")
            raise CompilationError(f"{name} failed to compile: {first}".rstrip(": "), diagnostics)
        return out.read_bytes()


def _argv(compiler: str, language: str, command: bool, src: Path, out: Path) -> list[str]:
    if language == "c":
        argv = [compiler, "--target=wasm32-wasi", "-O2", "-o", str(out), str(src)]
        # wasm32 defaults to hidden visibility: make the source's functions exportable.
        argv += ["-fvisibility=default", "-Wl,--export-dynamic"]
        if not command:
            argv += ["-mexec-model=reactor"]
        return argv
    crate = "bin" if command else "cdylib"
    return [compiler, "--target", "wasm32-wasi", "-O", "-C", "strip=symbols", "--crate-type",
            crate, "--crate-name", "guest", "-o", str(out), str(src)]  # fmt: skip


def _store(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, data)
    except OSError:
        pass  # an unwritable cache only costs a recompile

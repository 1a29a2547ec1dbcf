"""C and Rust sources compiled to WebAssembly (Debian's clang-14 + wasi-libc, Debian's rustc
with the wasm32-wasi std): libraries and commands, errors with diagnostics, missing
toolchains, the compile cache, and the same limits as any guest."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

import wasm_sandbox as ws
from wasm_sandbox._guests import _compile, _toolversion

CALC_RS = """
#[no_mangle]
pub extern "C" fn add(a: i32, b: i32) -> i32 { a.wrapping_add(b) }
#[no_mangle]
pub extern "C" fn spin() {
    let mut x = 0u64;
    loop { x = x.wrapping_add(1); unsafe { std::ptr::write_volatile(&mut x, x) } }
}
"""
CALC_C = """
int add(int a, int b) { return a + b; }
long long mul64(long long a, long long b) { return a * b; }
"""


def test_rust_library_functions_are_callable(tmp_path: Path) -> None:
    """A .rs file without main becomes a library whose #[no_mangle] functions call() reaches."""
    path = tmp_path / "calculator.rs"
    path.write_text(CALC_RS)
    sb = ws.WasmSandbox.builder().source(path).build()
    assert sb.call("add", 5, 3) == 8
    assert sb.exports["add"] == (("i32", "i32"), ("i32",))


def test_c_library_functions_are_callable(tmp_path: Path) -> None:
    """A .c file without main becomes a reactor library; its functions are exported."""
    path = tmp_path / "tool.c"
    path.write_text(CALC_C)
    sb = ws.WasmSandbox.builder().source(str(path)).build()
    assert sb.call("add", 40, 2) == 42
    assert sb.call("mul64", 2**33, 3) == 3 * 2**33


def test_commands_run_with_args_and_exit_codes() -> None:
    """Sources with main are WASI commands: run() gives their output and exit code."""
    c = (
        ws.WasmSandbox.builder()
        .source(
            '#include <stdio.h>\nint main(int c, char **v) { printf("%s\\n", v[1]); return 4; }'
        )
        .language("c")
        .build()
    )
    assert (c.run(["hi"]).stdout, c.run(["hi"]).exit_code) == (b"hi\n", 4)
    rust = (
        ws.WasmSandbox.builder()
        .source(
            'fn main() { let a: Vec<String> = std::env::args().collect(); println!("{}", a[1]); }'
        )
        .language("rust")
        .build()
    )
    assert rust.run(["there"]).stdout == b"there\n"


def test_limits_apply_to_compiled_guests(tmp_path: Path) -> None:
    """A Rust guest's infinite loop is stopped by fuel and by the timeout, like any guest."""
    path = tmp_path / "spin.rs"
    path.write_text(CALC_RS)
    with pytest.raises(ws.FuelExhausted):
        ws.WasmSandbox.builder().source(path).max_fuel(1_000_000).build().call("spin")
    with pytest.raises(ws.ExecutionTimeout):
        ws.WasmSandbox.builder().source(path).max_fuel(None).timeout_duration(0.2).build().call(
            "spin"
        )


def test_rust_panic_is_a_trap() -> None:
    """A Rust panic ends in the unreachable trap."""
    src = '#[no_mangle] pub extern "C" fn boom() { panic!("no"); }'
    with pytest.raises(ws.UnreachableExecuted):
        ws.WasmSandbox.builder().source(src).language("rust").build().call("boom")


@pytest.mark.parametrize(
    ("language", "source", "needle"),
    [
        ("c", "int main(void) { return missing; }", "undeclared identifier 'missing'"),
        ("rust", 'fn main() { let x: i32 = "no"; }', "mismatched types"),
    ],
)
def test_compile_errors_carry_the_diagnostics(language: str, source: str, needle: str) -> None:
    """CompilationError says what failed; .diagnostics has the compiler's full output."""
    with pytest.raises(ws.CompilationError, match="failed to compile") as info:
        ws.WasmSandbox.builder().source(source).language(language).build()
    assert needle in info.value.diagnostics


@pytest.mark.parametrize(
    ("variable", "language", "packages"),
    [
        ("WASM_SANDBOX_CLANG", "c", "clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32"),
        ("WASM_SANDBOX_RUSTC", "rust", "rustc libstd-rust-dev-wasm32"),
    ],
)
def test_missing_toolchain_names_the_debian_packages(
    monkeypatch: pytest.MonkeyPatch, variable: str, language: str, packages: str
) -> None:
    """Without the compiler, the error says which Debian packages to install. (The compiler
    is pointed at a path that does not exist: uninstalling it here is not an option.)"""
    monkeypatch.setenv(variable, "/nonexistent/compiler")
    with pytest.raises(ws.CompilationError, match=f"apt-get install {packages}"):
        ws.WasmSandbox.builder().source("int main(){}").language(language).cache_dir(None).build()


def test_compiled_output_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build of the same source does not run the compiler again."""
    cache = tmp_path / "cache"
    source = "int add(int a, int b) { return a - b + 2 * b; }"
    first = ws.WasmSandbox.builder().source(source).language("c").cache_dir(cache).build()
    assert list((cache / "guests").glob("*.wasm"))
    # A "compiler" that reports clang's version but fails to compile anything: only the
    # cache can provide the module now.
    fake = tmp_path / "fake-clang"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then exec clang-14 --version; fi\nexit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("WASM_SANDBOX_CLANG", str(fake))
    second = ws.WasmSandbox.builder().source(source).language("c").cache_dir(cache).build()
    assert first.call("add", 2, 3) == second.call("add", 2, 3) == 5


@pytest.mark.parametrize("glue", ["wasm_sandbox.h", "wasm_sandbox_net.h"])
def test_compile_cache_key_covers_every_shipped_glue_file(
    glue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change in any shipped glue file (the data ABI's or the network's) compiles the same
    source again instead of reusing the module built against the old file."""
    glue_dir = tmp_path / "guest"
    shutil.copytree(_compile.HELPERS, glue_dir)
    monkeypatch.setattr(_compile, "HELPERS", glue_dir)
    source = f"""
    #include "{glue}"
    int version(void) {{
    #ifdef WSBX_TEST_GLUE_VERSION
        return WSBX_TEST_GLUE_VERSION;
    #else
        return 1;
    #endif
    }}"""

    def build() -> ws.WasmSandbox:
        return ws.WasmSandbox.builder().source(source).language("c").cache_dir(tmp_path).build()

    assert build().call("version") == 1
    with (glue_dir / glue).open("a") as header:
        header.write("\n#define WSBX_TEST_GLUE_VERSION 2\n")
    assert build().call("version") == 2
    assert len(list((tmp_path / "guests").glob("*.wasm"))) == 2


def test_unknown_language_is_refused() -> None:
    """language() only takes languages the sandbox knows."""
    with pytest.raises(ws.UnsupportedSource, match="unknown language 'cobol'"):
        ws.WasmSandbox.builder().source("x").language("cobol").build()


def test_one_liners(tmp_path: Path) -> None:
    """wasm_sandbox.run / run_with_timeout and their asyncio twins build and call in one go."""
    path = tmp_path / "calculator.rs"
    path.write_text(CALC_RS)
    assert ws.run(path, "add", 5, 3) == 8
    assert ws.run_with_timeout(path, "add", 1, 2, timedelta(seconds=30)) == 3
    with pytest.raises(ws.ExecutionTimeout, match=r"after 0\.2 seconds"):
        ws.run_with_timeout(path, "spin", 0.2)
    assert asyncio.run(ws.run_async(path, "add", 2, 2)) == 4
    assert asyncio.run(ws.run_with_timeout_async(path, "add", 3, 3, 10.0)) == 6
    with pytest.raises(TypeError, match="timeout"):
        ws.run_with_timeout(path, "add")


def test_compiler_version_is_asked_once_per_compiler_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``<compiler> --version`` (part of the cache key) runs once per compiler file: later
    builds, in this process or another (the answer is stored next to the compiled guests),
    do not start the compiler when the module is cached; a changed compiler file is asked
    again."""
    log = tmp_path / "asked"
    fake = tmp_path / "clang"

    def install(comment: str) -> None:
        fake.write_text(
            f'#!/bin/sh\n# {comment}\nif [ "$1" = --version ]; then echo x >> "{log}"; fi\n'
            'exec clang-14 "$@"\n'
        )
        fake.chmod(0o755)

    def asked() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    install("first")
    monkeypatch.setenv("WASM_SANDBOX_CLANG", str(fake))
    monkeypatch.setattr(_toolversion, "_known", {})
    source, cache = "int add(int a, int b) { return a + b; }", tmp_path / "cache"

    def build() -> int:
        sandbox = ws.WasmSandbox.builder().source(source).language("c").cache_dir(cache).build()
        result: int = sandbox.call("add", 2, 3)
        return result

    assert build() == 5 and asked() == 1
    assert build() == 5 and asked() == 1  # remembered in this process
    monkeypatch.setattr(_toolversion, "_known", {})  # as a new process would start
    assert build() == 5 and asked() == 1  # read from the cache directory
    install("an upgrade: another file")
    assert build() == 5 and asked() == 2

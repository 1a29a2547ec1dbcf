"""The C toolchains: Debian's clang-14 + wasi-libc, else zig from the ``ziglang`` package
(``wasm-sandbox[c]``); which one is chosen, that zig's modules behave as clang's (libc, files,
the data ABI), that the compile cache never mixes them, and the error when neither exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import wasm_sandbox as ws
from wasm_sandbox._guests import _compile

# printf, malloc, a file written and read back, argv and an exit code.
LIBC_COMMAND = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char *copy = malloc(64);
    if (copy == NULL) return 3;
    snprintf(copy, 64, "%s x %d", argc > 1 ? argv[1] : "none", 6 * 7);
    FILE *f = fopen("/scratch/note.txt", "w");
    if (f == NULL) { perror("fopen"); return 4; }
    fputs(copy, f);
    fclose(f);
    char back[64] = {0};
    f = fopen("/scratch/note.txt", "r");
    if (f == NULL || fgets(back, sizeof back, f) == NULL) return 5;
    fclose(f);
    printf("read back: %s (%zu bytes)\n", back, strlen(back));
    fprintf(stderr, "done\n");
    free(copy);
    return 7;
}
"""

# The package's data ABI (wasm_sandbox.h): JSON in, JSON out.
DATA_LIBRARY = r"""
#include <stdlib.h>
#include "wasm_sandbox.h"
static char *describe(const char *args_json, size_t len, const char **error_type) {
    if (len <= 2) return wsbx_error("ValueError", "expected arguments");
    wsbx_builder b; wsbx_builder_init(&b);
    wsbx_json_begin_object(&b); wsbx_json_key(&b, "args"); wsbx_json_raw(&b, args_json);
    wsbx_json_end_object(&b);
    return wsbx_builder_finish(&b);
}
WASM_SANDBOX_EXPORT(process_data, describe)
int add(int a, int b) { return a + b; }
"""


@pytest.fixture
def zig_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """No clang-14 on PATH (and no explicit choice): zig from the ziglang package is what
    remains, as on a machine without Debian's packages. Returns zig's path."""
    zig = _compile._zig_executable()
    if zig is None:
        pytest.fail(
            "the ziglang package is missing: pip install -e '.[test]' (see docs/c-guests.md)"
        )
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in ("WASM_SANDBOX_C_TOOLCHAIN", "WASM_SANDBOX_CLANG"):
        monkeypatch.delenv(name, raising=False)
    return zig


def _run_libc_command(tmp_path: Path) -> ws.ExecutionResult:
    sandbox = (
        ws.WasmSandbox.builder()
        .source(LIBC_COMMAND)
        .language("c")
        .memory_fs("/scratch")
        .cache_dir(tmp_path / "cache")
        .build()
    )
    return sandbox.run(["zig"])


def test_without_clang_zig_compiles_a_libc_command(zig_only: str, tmp_path: Path) -> None:
    """With clang-14 off PATH, a C command using printf, malloc and files compiles with zig
    and runs as clang's does: its output, its stderr, its file and its exit code."""
    assert _compile.find_toolchain("c").command == (zig_only, "cc")
    result = _run_libc_command(tmp_path)
    assert result.stdout == b"read back: zig x 42 (8 bytes)\n"
    assert (result.stderr, result.exit_code) == (b"done\n", 7)


def test_without_clang_zig_compiles_the_data_abi(zig_only: str, tmp_path: Path) -> None:
    """A zig-built reactor library exports its functions and speaks the package's data ABI
    (wasm_sandbox.h): structured arguments in, the JSON value out, guest errors raised."""
    assert _compile.find_toolchain("c").command == (zig_only, "cc")
    sandbox = (
        ws.WasmSandbox.builder()
        .source(DATA_LIBRARY)
        .language("c")
        .cache_dir(tmp_path / "cache")
        .build()
    )
    assert sandbox.call("add", 40, 2) == 42
    assert sandbox.call("process_data", {"rows": [1, 2]}, "x") == {"args": [{"rows": [1, 2]}, "x"]}
    with pytest.raises(ws.GuestError, match="expected arguments"):
        sandbox.call("process_data")


def test_the_cache_keeps_each_compilers_module_apart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same source compiled by clang and by zig gives two cache entries: switching
    compilers never reuses the other's module."""
    cache = tmp_path / "cache"
    for toolchain in ("clang", "zig"):
        monkeypatch.setenv("WASM_SANDBOX_C_TOOLCHAIN", toolchain)
        assert _compile.find_toolchain("c").kind == toolchain
        built = ws.WasmSandbox.builder().source(DATA_LIBRARY).language("c").cache_dir(cache)
        assert built.build().call("add", 1, 2) == 3
    assert len(list((cache / "guests").glob("*.wasm"))) == 2


def test_an_explicit_clang_path_wins_over_zig(monkeypatch: pytest.MonkeyPatch) -> None:
    """WASM_SANDBOX_CLANG is an explicit choice: a missing one is reported, never replaced
    by zig behind the user's back."""
    monkeypatch.delenv("WASM_SANDBOX_C_TOOLCHAIN", raising=False)
    monkeypatch.setenv("WASM_SANDBOX_CLANG", "/nonexistent/clang")
    with pytest.raises(ws.ToolchainNotFound, match="/nonexistent/clang, which is not installed"):
        _compile.find_toolchain("c")


def test_without_either_compiler_the_error_names_both(
    zig_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither clang-14 nor zig: ToolchainNotFound names the Debian packages and the pip
    extra. (The ziglang package cannot be uninstalled here: its lookup finds nothing.)"""
    assert _compile.find_toolchain("c").command == (zig_only, "cc")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    message = (
        r"needs clang-14 with wasi-libc \(apt-get install clang-14 lld-14 wasi-libc "
        r"libclang-rt-14-dev-wasm32\) or zig \(pip install 'wasm-sandbox\[c\]'\)"
    )
    with pytest.raises(ws.ToolchainNotFound, match=message):
        ws.WasmSandbox.builder().source("int main(void){return 0;}").language("c").build()
    monkeypatch.setenv("WASM_SANDBOX_C_TOOLCHAIN", "zig")
    with pytest.raises(ws.ToolchainNotFound, match=r"zig is missing: pip install"):
        _compile.find_toolchain("c")


def test_an_unknown_toolchain_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """WASM_SANDBOX_C_TOOLCHAIN takes clang or zig; anything else says so."""
    monkeypatch.setenv("WASM_SANDBOX_C_TOOLCHAIN", "gcc")
    with pytest.raises(ws.ToolchainNotFound, match="must be clang or zig, got 'gcc'"):
        _compile.find_toolchain("c")


def test_zig_compile_errors_carry_the_diagnostics(zig_only: str) -> None:
    """A C error under zig is a CompilationError with zig's (clang's) diagnostics."""
    assert _compile.find_toolchain("c").command == (zig_only, "cc")
    with pytest.raises(ws.CompilationError, match="failed to compile") as info:
        ws.WasmSandbox.builder().source("int main(void) { return missing; }").language(
            "c"
        ).cache_dir(None).build()
    assert "undeclared identifier 'missing'" in info.value.diagnostics
    assert not isinstance(info.value, ws.ToolchainNotFound)

"""The package's shape is kept true by tests: only the engine seam talks to wasmtime."""

from __future__ import annotations

import ast
from pathlib import Path

import wasm_sandbox

PACKAGE = Path(wasm_sandbox.__file__).parent

WASMTIME_SEAM = {
    "_runtime/_cdecl.py",  # every C function we call, declared once
    "_runtime/_capi.py",  # the engine's hot paths through the C API
    "_runtime/_compiler.py",  # the engine configuration and the compile step (also in a child)
    "_runtime/_engine.py",  # engines, the module cache, instances, trap translation
    "_runtime/_bind.py",  # host functions and the epoch callback
}


def _imports(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_engine_seam_imports_wasmtime() -> None:
    """wasmtime is imported by the engine seam's modules and by nothing else, so a change of
    wasmtime-py's API touches those five files only."""
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "wasmtime" in _imports(path)
    }
    assert importers == WASMTIME_SEAM

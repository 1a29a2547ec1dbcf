"""Turns what the user passed to ``source(...)`` into WebAssembly bytes.

``.wasm`` files and bytes are taken as they are, ``.wat`` text is assembled; other source
languages are recognised by suffix and refused with a clear ``UnsupportedSource``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._engine import wat_to_wasm
from ._errors import InvalidModule, UnsupportedSource

__all__ = ["Source", "load_source"]

Source = str | os.PathLike[str] | bytes | bytearray | memoryview

WASM_MAGIC = b"\0asm"
_LANGUAGES = {".rs": "Rust", ".c": "C", ".py": "Python", ".js": "JavaScript"}
_MAX_SOURCE_BYTES = 1 << 30


def load_source(source: Source) -> tuple[bytes, str]:
    """(module bytes, a name for messages) from a path or from bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return _from_bytes(data, "<bytes>"), "<bytes>"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return _from_path(path), str(path)
    raise TypeError(
        f"source must be a path (str or os.PathLike) or module bytes, got {type(source).__name__}"
    )


def _from_bytes(data: bytes, name: str) -> bytes:
    if data.startswith(WASM_MAGIC):
        return data
    stripped = data.lstrip()
    if stripped.startswith((b"(", b";;")):
        try:
            return wat_to_wasm(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidModule(f"Invalid module {name}: WAT text is not UTF-8") from None
    raise InvalidModule(
        f"Invalid module {name}: neither a WebAssembly binary (no \\0asm header) nor WAT text"
    )


def _from_path(path: Path) -> bytes:
    suffix = path.suffix.lower()
    if suffix in _LANGUAGES:
        raise UnsupportedSource(
            f"{_LANGUAGES[suffix]} sources ({suffix}) are not supported yet by this version of "
            f"wasm-sandbox: compile {path.name} to a .wasm module and pass that instead"
        )
    if suffix not in (".wasm", ".wat", ".wast"):
        raise UnsupportedSource(
            f"unknown source type {suffix or '(no suffix)'!r} for {path}: "
            "expected a .wasm or .wat file"
        )
    try:
        size = path.stat().st_size
        if size > _MAX_SOURCE_BYTES:
            raise InvalidModule(f"Invalid module {path}: {size} bytes is larger than 1 GiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"source file not found: {path}") from None
    if suffix == ".wasm":
        if not data.startswith(WASM_MAGIC):
            raise InvalidModule(
                f"Invalid module {path}: not a WebAssembly binary (no \\0asm header)"
            )
        return data
    return _from_bytes(data, str(path))

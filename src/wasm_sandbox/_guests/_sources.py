"""Turns what the user passed to ``source(...)`` into WebAssembly bytes.

``.wasm`` files and bytes are taken as they are, ``.wat`` text is assembled, ``.c`` and ``.rs``
sources are compiled (``_guests``); ``.py`` and ``.js`` scripts are recognised by
``script_source`` and run on an interpreter module. Source text can be given with an
explicit ``language``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .._errors import InvalidModule, SourceNotFound, UnsupportedSource
from .._runtime._engine import wat_to_wasm
from ._compile import LANGUAGES, compile_source

__all__ = [
    "LANGUAGE_NAMES",
    "ScriptSource",
    "Source",
    "load_source",
    "script_language",
    "script_source",
]

Source = str | os.PathLike[str] | bytes | bytearray | memoryview

WASM_MAGIC = b"\0asm"
LANGUAGE_NAMES = {"wasm": ".wasm", "wat": ".wat", "c": ".c", "rust": ".rs", "python": ".py",
                  "javascript": ".js"}  # fmt: skip
_MAX_SOURCE_BYTES = 1 << 30


def load_source(
    source: Source, language: str | None = None, cache_dir: Path | None = None
) -> tuple[bytes, str]:
    """(module bytes, a name for messages) from a path, from bytes, or from source text in
    ``language`` (then a ``str`` source is the program text, not a path)."""
    if language is not None:
        suffix = LANGUAGE_NAMES.get(language)
        if suffix is None:
            raise UnsupportedSource(
                f"unknown language {language!r}; known: {', '.join(LANGUAGE_NAMES)}"
            )
        if isinstance(source, str):
            source = source.encode("utf-8")
        if isinstance(source, bytes | bytearray | memoryview):
            name = f"<{language} source>"
            return _from_text(bytes(source), suffix, name, cache_dir), name
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return _from_bytes(data, "<bytes>"), "<bytes>"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return _from_path(path, cache_dir), str(path)
    raise TypeError(
        f"source must be a path (str or os.PathLike) or module bytes, got {type(source).__name__}"
    )


@dataclass(frozen=True, slots=True)
class ScriptSource:
    """A program for a script runtime (Python, JavaScript): its text and how to name it."""

    language: str  # "python" or "javascript"
    text: str
    filename: str  # shown in tracebacks: "processor.py", "<python source>"
    module: str  # the module name its functions get: "processor"


_SCRIPT_SUFFIXES = {".py": "python", ".js": "javascript"}


def script_language(source: Source, language: str | None = None) -> str | None:
    """The script runtime ``source`` runs on (``"python"`` or ``"javascript"``), or None for
    everything that compiles to a module: what ``script_source`` decides, without reading a
    file."""
    if language is not None:
        if language not in _SCRIPT_SUFFIXES.values():
            return None
        if isinstance(source, str | bytes | bytearray | memoryview):
            return language
    if not isinstance(source, str | os.PathLike):
        return None
    found = _SCRIPT_SUFFIXES.get(Path(source).suffix.lower())
    return None if found is None or (language is not None and language != found) else found


def script_source(source: Source, language: str | None = None) -> ScriptSource | None:
    """The script in ``source`` when it is one (a ``.py`` or ``.js`` path, or text with
    ``language="python"`` or ``"javascript"``); None for everything that compiles to a
    module."""
    if language is not None:
        if language not in _SCRIPT_SUFFIXES.values():
            return None
        if isinstance(source, str | bytes | bytearray | memoryview):
            raw = source.encode("utf-8") if isinstance(source, str) else bytes(source)
            return ScriptSource(language, _text(raw, "<source>"), f"<{language} source>", "guest")
    if not isinstance(source, str | os.PathLike):
        return None
    path = Path(source)
    found = _SCRIPT_SUFFIXES.get(path.suffix.lower())
    if found is None or (language is not None and language != found):
        return None
    raw = _read(path, UnsupportedSource(f"{path} is larger than 1 GiB"))
    module = path.stem if path.stem.isidentifier() else "guest"
    return ScriptSource(found, _text(raw, str(path)), path.name, module)


def _read(path: Path, too_big: Exception) -> bytes:
    """The file's bytes; ``too_big`` is raised for one over 1 GiB."""
    try:
        if path.stat().st_size > _MAX_SOURCE_BYTES:
            raise too_big
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceNotFound(str(path)) from None


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedSource(f"{name} is not UTF-8 text: {exc}") from None


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


def _from_text(source: bytes, suffix: str, name: str, cache_dir: Path | None) -> bytes:
    if suffix in LANGUAGES:
        return compile_source(source, LANGUAGES[suffix], cache_dir, name)
    if suffix == ".wasm":
        return _from_bytes(source, name)
    return wat_to_wasm(source.decode("utf-8", "replace"))


def _from_path(path: Path, cache_dir: Path | None = None) -> bytes:
    suffix = path.suffix.lower()
    if suffix not in (".wasm", ".wat", ".wast", *LANGUAGES):
        raise UnsupportedSource(
            f"unknown source type {suffix or '(no suffix)'!r} for {path}: "
            "expected .wasm, .wat, .c, .rs, .py or .js"
        )
    data = _read(path, InvalidModule(f"Invalid module {path}: larger than 1 GiB"))
    if suffix in LANGUAGES:
        return compile_source(data, LANGUAGES[suffix], cache_dir, path.name)
    if suffix == ".wasm":
        if not data.startswith(WASM_MAGIC):
            raise InvalidModule(
                f"Invalid module {path}: not a WebAssembly binary (no \\0asm header)"
            )
        return data
    return _from_bytes(data, str(path))

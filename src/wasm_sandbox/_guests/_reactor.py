"""Where the Python runtime's reactor keeps its "a turn is running" flag, read from the
module's ``turn`` export, so that the host can enter an instance stopped mid-turn once more.

The reactor's ``turn`` refuses (answers -1) while its flag, a byte of static memory, says a
turn is running; a turn stopped by a limit never clears it. To write out what the stopped
guest still buffers (``PythonTurn.rescue_output``) the host clears the byte first. Its address
is the one byte ``turn``'s guard tests and then sets to 1: found by decoding the start of that
function, once per module, reading only the few sections it needs (seeks, not the 100 MB).
Anything unexpected answers None, and the output is not rescued.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO

__all__ = ["register_module", "turn_flag"]

_SECTION_IMPORT, _SECTION_EXPORT, _SECTION_CODE = 2, 7, 10
_SCANNED = 200  # instructions of ``turn`` read at most: its guard is in the first few dozen
_I32_CONST, _LOAD8_U, _STORE8 = 0x41, 0x2D, 0x3A
# The immediates of the opcodes a guard uses: opcode -> how many LEB128 values follow.
_LEBS = {0x0C: 1, 0x0D: 1, 0x10: 1, 0x20: 1, 0x21: 1, 0x22: 1, 0x23: 1, 0x24: 1, 0x41: 1}
_LEBS.update(dict.fromkeys(range(0x28, 0x3F), 2))  # loads and stores: align, offset
_BLOCKS = (0x02, 0x03, 0x04)  # block, loop, if: one block type byte (an empty or value type)
_BARE = {0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, *range(0x45, 0xC5)}  # no immediate

_paths: dict[str, Path] = {}  # module digest -> its file
_flags: dict[str, int | None] = {}
_lock = threading.Lock()


def register_module(digest: str, path: Path) -> None:
    """The Python runtime's module ``digest`` is the file at ``path``."""
    _paths[digest] = path


def turn_flag(digest: str) -> int | None:
    """The address of the reactor's in-a-turn byte in module ``digest``, or None."""
    with _lock:
        if digest not in _flags:
            path = _paths.get(digest)
            try:
                _flags[digest] = None if path is None else _find(path)
            except (OSError, ValueError, IndexError):
                _flags[digest] = None
        return _flags[digest]


def _find(path: Path) -> int | None:
    with open(path, "rb") as f:
        if f.read(8) != b"\0asm\1\0\0\0":
            return None
        sections = _sections(f)
        imported = _imported_functions(f, sections.get(_SECTION_IMPORT))
        index = _export(f, sections.get(_SECTION_EXPORT), b"turn")
        code = sections.get(_SECTION_CODE)
        if index is None or code is None or index < imported:
            return None
        f.seek(code)
        count = _uleb(f)
        if index - imported >= count:
            return None
        for _ in range(index - imported):
            f.seek(_uleb(f), 1)
        size = _uleb(f)
        return _guard_flag(f.read(min(size, 4096)))


def _sections(f: BinaryIO) -> dict[int, int]:
    """Section id -> where its content starts (the first of each id)."""
    found: dict[int, int] = {}
    while head := f.read(1):
        size = _uleb(f)
        found.setdefault(head[0], f.tell())
        f.seek(size, 1)
    return found


def _imported_functions(f: BinaryIO, at: int | None) -> int:
    if at is None:
        return 0
    f.seek(at)
    functions = 0
    for _ in range(_uleb(f)):
        for _name in range(2):
            f.seek(_uleb(f), 1)
        kind = f.read(1)[0]
        if kind == 0:  # a function: its type index
            _uleb(f)
            functions += 1
        elif kind == 1:  # a table: its element type, then limits
            f.read(1)
            _limits(f)
        elif kind == 2:  # a memory: its limits
            _limits(f)
        elif kind == 3:  # a global: value type and mutability
            f.read(2)
        else:
            raise ValueError(f"import kind {kind}")
    return functions


def _limits(f: BinaryIO) -> None:
    flags = f.read(1)[0]
    _uleb(f)
    if flags & 1:
        _uleb(f)


def _export(f: BinaryIO, at: int | None, name: bytes) -> int | None:
    if at is None:
        return None
    f.seek(at)
    for _ in range(_uleb(f)):
        text = f.read(_uleb(f))
        kind = f.read(1)[0]
        index = _uleb(f)
        if text == name and kind == 0:
            return index
    return None


def _guard_flag(body: bytes) -> int | None:
    """The byte ``turn``'s guard tests (``i32.const 0; i32.load8_u offset``) and later sets
    (``i32.const 0; i32.const 1; i32.store8 offset``): its address."""
    groups, at = _uleb_at(body, 0)
    for _ in range(groups):  # the local declarations: a count, then a value type
        at = _uleb_at(body, at)[1] + 1
    tested: set[int] = set()
    consts: list[int] = []  # the values of the i32.const just before
    for _ in range(_SCANNED):
        op = body[at]
        at += 1
        if op in _BLOCKS:
            at += 1
            consts = []
        elif op in _LEBS:
            values = []
            for _imm in range(_LEBS[op]):
                value, at = _sleb_at(body, at) if op == _I32_CONST else _uleb_at(body, at)
                values.append(value)
            if op == _LOAD8_U and consts[-1:] == [0]:
                tested.add(values[1])
            elif op == _STORE8 and consts[-2:] == [0, 1] and values[1] in tested:
                return values[1]
            consts = [*consts, values[0]] if op == _I32_CONST else []
        elif op in _BARE:
            consts = []
        else:
            return None  # an opcode a guard does not use: not the code we know
    return None


def _uleb(f: BinaryIO) -> int:
    result = shift = 0
    while True:
        byte = f.read(1)
        if not byte or shift > 35:
            raise ValueError("truncated or over-long LEB128")
        result |= (byte[0] & 0x7F) << shift
        shift += 7
        if byte[0] < 0x80:
            return result


def _uleb_at(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80 or shift > 35:
            return result, at


def _sleb_at(data: bytes, at: int) -> tuple[int, int]:
    result, end = _uleb_at(data, at)
    bits = 7 * (end - at)
    if result & (1 << (bits - 1)):
        result -= 1 << bits
    return result, end

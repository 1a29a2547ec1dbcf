"""Pure-Python (standard library only) WebAssembly binary parser and rewriter.

`parse_module_info` reads imports, exports and memories; `instrument` routes every
``memory.grow`` through a hook enforcing limits that live in exported mutable globals, and
exports the module's memory under a reserved name so the host can always measure it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NoReturn

__all__ = [
    "DENIED_BY_ENGINE",
    "DENIED_BY_GROW_LIMIT",
    "DENIED_BY_TOTAL_CAP",
    "DENIED_DELTA_EXPORT",
    "DENIED_KIND_EXPORT",
    "DENIED_PAGES_EXPORT",
    "GROW_MAX_PAGES_EXPORT",
    "INSTRUMENT_VERSION",
    "MEMORY_EXPORT",
    "MEM_MAX_PAGES_EXPORT",
    "RESERVED_EXPORT_PREFIX",
    "START_EXPORT",
    "MemoryInfo",
    "ModuleInfo",
    "WasmFormatError",
    "initial_memory_bytes",
    "instrument",
    "parse_module_info",
]

#: Bumped whenever the output of `instrument` changes (part of compiled-module cache keys).
INSTRUMENT_VERSION: Final = 3
# Exports added by `instrument`.  All globals are mutable; the host sets the limits after
# instantiation and reads the denial after the run.
#: i32, unsigned pages one memory.grow may add; 0xFFFFFFFF (-1, the initial value) = unlimited.
GROW_MAX_PAGES_EXPORT: Final = "__wsbx_grow_max_pages"
#: i64, unsigned cap on the memory's total pages; -1 (the initial value) = unlimited.
MEM_MAX_PAGES_EXPORT: Final = "__wsbx_mem_max_pages"
#: i32, 0 until the first refused memory.grow, then one of the DENIED_BY_* values.
DENIED_KIND_EXPORT: Final = "__wsbx_denied_kind"
#: i64, memory.size + requested delta (pages) at the first refusal; 0 before.
DENIED_PAGES_EXPORT: Final = "__wsbx_denied_pages"
#: i64, the pages the first refused memory.grow asked to add; 0 before.
DENIED_DELTA_EXPORT: Final = "__wsbx_denied_delta"
#: func, the module's original start function (only when it had a start section).
START_EXPORT: Final = "__wsbx_start"
#: memory, the module's linear memory (when it has one), whether or not the module exports
#: it itself: monitoring reads its size through this export, so hiding it blinds nothing.
MEMORY_EXPORT: Final = "__wsbx_memory"
DENIED_BY_GROW_LIMIT: Final = 1
DENIED_BY_TOTAL_CAP: Final = 2
DENIED_BY_ENGINE: Final = 3  # memory.grow itself returned -1
#: Every export whose name starts with this is reserved for `instrument`.
RESERVED_EXPORT_PREFIX: Final = "__wsbx_"

PAGE_SIZE: Final = 65536  # bytes in a wasm page


class WasmFormatError(ValueError):
    """The bytes are not a well-formed module, or use a feature we do not support."""


@dataclass(frozen=True, slots=True)
class MemoryInfo:
    """One linear memory: limits in 64 KiB pages and its flags."""

    min_pages: int
    max_pages: int | None
    memory64: bool
    shared: bool
    imported: bool


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What the sandbox needs to know about a module before running it."""

    imports: tuple[tuple[str, str, str], ...]
    exports: tuple[tuple[str, str], ...]
    memories: tuple[MemoryInfo, ...]
    has_start: bool
    #: exported function name -> (parameter types, result types), e.g. (("i32",), ("i64",))
    functions: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    #: functions the module defines (its code; imported functions are not counted)
    defined_functions: int = 0


def initial_memory_bytes(info: ModuleInfo) -> int:
    """Initial size in bytes of the module's memories (0 when it has none)."""
    return sum(memory.min_pages for memory in info.memories) * PAGE_SIZE


# ---------------------------------------------------------------------------
# Byte reader

_SECTION_NAMES: Final = {
    0: "custom section",
    1: "type section",
    2: "import section",
    3: "function section",
    4: "table section",
    5: "memory section",
    6: "global section",
    7: "export section",
    8: "start section",
    9: "element section",
    10: "code section",
    11: "data section",
    12: "data count section",
    13: "tag section",
}
# Position of each non-custom section id in the order the spec requires.
_SECTION_ORDER: Final = (1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11)
_SECTION_RANK: Final = {sid: rank for rank, sid in enumerate(_SECTION_ORDER, 1)}
_KIND_NAMES: Final = ("func", "table", "memory", "global", "tag")


def _unsupported(what: str, offset: int) -> NoReturn:
    raise WasmFormatError(f"unsupported module: {what} at offset {offset} is not supported")


class _Reader:
    """A cursor over ``data[pos:end]`` whose errors name a place and an offset."""

    __slots__ = ("data", "end", "pos", "where")

    def __init__(self, data: bytes, pos: int, end: int, where: str) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.where = where

    def fail(self, what: str, offset: int | None = None) -> NoReturn:
        at = self.pos if offset is None else offset
        raise WasmFormatError(f"malformed module: {what} in {self.where} at offset {at}")

    def byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            self.fail("unexpected end of data")
        self.pos = pos + 1
        return self.data[pos]

    def skip(self, count: int) -> int:
        """Skip ``count`` bytes and return where they started."""
        start = self.pos
        if count > self.end - start:
            self.fail("unexpected end of data")
        self.pos = start + count
        return start

    def uleb(self, bits: int = 32) -> int:
        start = self.pos
        result = 0
        for shift in range(0, bits + 6 - (bits + 6) % 7, 7):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if result >> bits:
                    self.fail(f"integer too large for u{bits}", start)
                return result
        self.fail(f"integer representation too long for u{bits}", start)

    def sleb(self, bits: int) -> int:
        start = self.pos
        result = 0
        for shift in range(0, bits + 6 - (bits + 6) % 7, 7):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if b & 0x40:
                    result -= 1 << (shift + 7)
                if not -(1 << (bits - 1)) <= result < 1 << (bits - 1):
                    self.fail(f"integer too large for s{bits}", start)
                return result
        self.fail(f"integer representation too long for s{bits}", start)

    def name(self) -> str:
        length = self.uleb()
        start = self.skip(length)
        try:
            return self.data[start : self.pos].decode("utf-8")
        except UnicodeDecodeError:
            self.fail("malformed UTF-8 name", start)

    def expect_end(self) -> None:
        if self.pos != self.end:
            self.fail(f"section size mismatch ({self.end - self.pos} unparsed bytes)")


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if (value == 0 and not b & 0x40) or (value == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


# ---------------------------------------------------------------------------
# Types

_VALTYPES: Final = frozenset({0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F, 0x69})
_HEAPTYPES: Final = frozenset({0x70, 0x6F, 0x69})
# Abbreviated reference types of the GC proposal (anyref, eqref, ..., nullexnref).
_GC_REFTYPES: Final = frozenset({0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x71, 0x72, 0x73, 0x74})
_TYPED_REF: Final = frozenset({0x63, 0x64})


def _refuse_type(r: _Reader, byte: int, offset: int) -> NoReturn:
    if byte in _TYPED_REF:
        _unsupported(f"typed reference type 0x{byte:02x} (function-references proposal)", offset)
    if byte in _GC_REFTYPES:
        _unsupported(f"reference type 0x{byte:02x} (GC proposal)", offset)
    r.fail(f"invalid value type 0x{byte:02x}", offset)


_VALTYPE_NAMES: Final = {
    0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128",
    0x70: "funcref", 0x6F: "externref", 0x69: "exnref",
}  # fmt: skip


def _valtype(r: _Reader) -> str:
    b = r.byte()
    if b not in _VALTYPES:
        _refuse_type(r, b, r.pos - 1)
    return _VALTYPE_NAMES[b]


def _reftype(r: _Reader) -> None:
    b = r.byte()
    if b not in _HEAPTYPES:
        _refuse_type(r, b, r.pos - 1)


def _limits(r: _Reader, memory: bool) -> tuple[int, int | None, bool, bool]:
    """Read limits; return (min, max, is64, shared)."""
    start = r.pos
    flags = r.byte()
    if flags & 0x08 and memory:
        _unsupported("custom page size (custom-page-sizes proposal)", start)
    if flags > 0x07 or (flags & 0x02 and not memory):
        r.fail(f"invalid limits flags 0x{flags:02x}", start)
    bits = 64 if flags & 0x04 else 32
    minimum = r.uleb(bits)
    maximum = r.uleb(bits) if flags & 0x01 else None
    return minimum, maximum, bool(flags & 0x04), bool(flags & 0x02)


def _tabletype(r: _Reader) -> None:
    if r.pos < r.end and r.data[r.pos] == 0x40:
        _unsupported("table with initializer (function-references proposal)", r.pos)
    _reftype(r)
    _limits(r, memory=False)


def _globaltype(r: _Reader) -> None:
    _valtype(r)
    mut = r.byte()
    if mut > 1:
        r.fail(f"invalid global mutability 0x{mut:02x}", r.pos - 1)


# ---------------------------------------------------------------------------
# Instructions

# Kinds of immediates.
_NONE, _U32, _U32X2, _BLOCK, _MEMARG, _S32, _S64, _F32, _F64 = range(9)
_HEAP, _BR_TABLE, _SELECT_T, _TRY_TABLE, _GROW, _ZERO, _MEMARG_LANE, _LANE, _V128 = range(9, 18)
_MEMORY_GROW: Final = 0x40
_END: Final = 0x0B


def _table(*groups: tuple[int, range | tuple[int, ...]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for kind, ops in groups:
        for op in ops:
            out[op] = kind
    return out


_OPS: Final = _table(
    (_NONE, (0x00, 0x01, 0x05, 0x0A, 0x0B, 0x0F, 0x19, 0x1A, 0x1B, 0xD1)),
    (_NONE, range(0x45, 0xC5)),
    (_BLOCK, (0x02, 0x03, 0x04, 0x06)),
    (_U32, (0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x18, 0x3F, 0xD2)),
    (_U32, range(0x20, 0x27)),
    (_U32X2, (0x11, 0x13)),
    (_BR_TABLE, (0x0E,)),
    (_SELECT_T, (0x1C,)),
    (_TRY_TABLE, (0x1F,)),
    (_MEMARG, range(0x28, 0x3F)),
    (_GROW, (_MEMORY_GROW,)),
    (_S32, (0x41,)),
    (_S64, (0x42,)),
    (_F32, (0x43,)),
    (_F64, (0x44,)),
    (_HEAP, (0xD0,)),
)
_OPS_FC: Final = _table(
    (_NONE, range(0, 8)),
    (_U32X2, (8, 10, 12, 14)),
    (_U32, (9, 11, 13, 15, 16, 17)),
)
# Unassigned SIMD sub-opcodes below 256.
_SIMD_RESERVED: Final = frozenset((154, 162, 165, 166, 175, 176, 178, 179, 180, 187)).union(
    (194, 197, 198, 207, 208, 210, 211, 212, 226, 238)
)
_OPS_FD: Final = _table(
    (_MEMARG, range(0, 12)),
    (_V128, (12, 13)),
    (_NONE, range(14, 21)),
    (_LANE, range(21, 35)),
    (_NONE, range(35, 84)),
    (_MEMARG_LANE, range(84, 92)),
    (_MEMARG, (92, 93)),
    (_NONE, tuple(op for op in range(94, 256) if op not in _SIMD_RESERVED)),
    (_NONE, range(0x100, 0x114)),  # relaxed SIMD
)
_OPS_FE: Final = _table(
    (_MEMARG, (0, 1, 2)),
    (_ZERO, (3,)),
    (_MEMARG, range(0x10, 0x4F)),
)
_PREFIXED: Final = {0xFC: _OPS_FC, 0xFD: _OPS_FD, 0xFE: _OPS_FE}
_REFUSED_OPS: Final = {
    0x14: "call_ref (function-references proposal)",
    0x15: "return_call_ref (function-references proposal)",
    0xD3: "ref.eq (GC proposal)",
    0xD4: "ref.as_non_null (function-references proposal)",
    0xD5: "br_on_null (function-references proposal)",
    0xD6: "br_on_non_null (function-references proposal)",
    0xFB: "GC proposal prefix",
    **{op: "stack-switching proposal" for op in range(0xE0, 0xE7)},
}


def _refuse_op(r: _Reader, op: int, sub: int | None, offset: int) -> NoReturn:
    if sub is None:
        what = f"instruction opcode 0x{op:02x}"
        note = _REFUSED_OPS.get(op)
    else:
        what = f"instruction opcode 0x{op:02x} {sub}"
        note = "wide-arithmetic proposal" if op == 0xFC and 19 <= sub <= 22 else None
    if note is None:
        r.fail(f"unknown {what}", offset)
    _unsupported(f"{what} ({note})", offset)


def _blocktype(r: _Reader) -> None:
    start = r.pos
    if start < r.end:
        b = r.data[start]
        if b == 0x40 or b in _VALTYPES:
            r.pos = start + 1
            return
        if b in _TYPED_REF or b in _GC_REFTYPES:
            _refuse_type(r, b, start)
    if r.sleb(33) < 0:
        r.fail("invalid block type", start)


def _heaptype(r: _Reader) -> None:
    start = r.pos
    b = r.byte()
    if b in _HEAPTYPES:
        return
    if b in _GC_REFTYPES:
        _refuse_type(r, b, start)
    r.pos = start
    if r.sleb(33) >= 0:
        _unsupported("concrete heap type (function-references proposal)", start)
    r.fail(f"invalid heap type 0x{b:02x}", start)


def _memarg(r: _Reader) -> None:
    start = r.pos
    align = r.uleb()
    if align & 0x40 and r.uleb():
        _unsupported("memory index other than 0 (multi-memory proposal)", start)
    r.uleb(64)


def _try_table(r: _Reader) -> None:
    _blocktype(r)
    for _ in range(r.uleb()):
        kind = r.byte()
        if kind > 3:
            r.fail(f"invalid catch kind 0x{kind:02x}", r.pos - 1)
        if kind < 2:
            r.uleb()
        r.uleb()


def _skip_imm(r: _Reader, kind: int, start: int) -> None:  # noqa: PLR0912
    if kind == _U32:
        r.uleb()
    elif kind == _MEMARG:
        _memarg(r)
    elif kind == _NONE:
        return
    elif kind == _U32X2:
        r.uleb()
        r.uleb()
    elif kind == _BLOCK:
        _blocktype(r)
    elif kind == _S32:
        r.sleb(32)
    elif kind == _S64:
        r.sleb(64)
    elif kind == _F32:
        r.skip(4)
    elif kind == _F64:
        r.skip(8)
    elif kind == _BR_TABLE:
        for _ in range(r.uleb() + 1):
            r.uleb()
    elif kind == _SELECT_T:
        for _ in range(r.uleb()):
            _valtype(r)
    elif kind == _HEAP:
        _heaptype(r)
    elif kind == _TRY_TABLE:
        _try_table(r)
    elif kind == _GROW:
        if r.uleb():
            _unsupported("memory.grow of a memory other than 0 (multi-memory proposal)", start)
    elif kind == _ZERO:
        if r.byte():
            r.fail("expected a zero byte after atomic.fence", r.pos - 1)
    elif kind == _LANE:
        r.skip(1)
    elif kind == _MEMARG_LANE:
        _memarg(r)
        r.skip(1)
    else:  # _V128
        r.skip(16)


def _decode_instr(r: _Reader) -> int:
    """Decode the instruction at ``r.pos`` with its immediates; return its first byte."""
    start = r.pos
    op = r.byte()
    if op >= 0xFC and op in _PREFIXED:
        sub = r.uleb()
        kind = _PREFIXED[op].get(sub)
        if kind is None:
            _refuse_op(r, op, sub, start)
    else:
        kind = _OPS.get(op)
        if kind is None:
            _refuse_op(r, op, None, start)
    _skip_imm(r, kind, start)
    return op


def _const_expr(r: _Reader) -> None:
    while _decode_instr(r) != _END:
        pass


# ---------------------------------------------------------------------------
# The fast scanner: one regular expression matching a run of instructions
# that the Python decoder would accept with the same length and that are not
# memory.grow (nor br_table, select t*, try_table: vectors are left to Python).

_IMM_PATTERNS: Final = {
    _NONE: b"",
    _U32: rb"(?:[\x80-\xff]{0,3}[\x00-\x7f]|[\x80-\xff]{4}[\x00-\x0f])",
    _S32: rb"(?:[\x80-\xff]{0,3}[\x00-\x7f]|[\x80-\xff]{4}[\x00-\x07\x78-\x7f])",
    _S64: rb"(?:[\x80-\xff]{0,8}[\x00-\x7f]|[\x80-\xff]{9}[\x00\x7f])",
    _F32: rb"[\x00-\xff]{4}",
    _F64: rb"[\x00-\xff]{8}",
    _HEAP: rb"[\x69\x6f\x70]",
    _ZERO: rb"\x00",
    _LANE: rb"[\x00-\xff]",
    _V128: rb"[\x00-\xff]{16}",
}
_IMM_PATTERNS[_U32X2] = _IMM_PATTERNS[_U32] * 2
_IMM_PATTERNS[_MEMARG] = rb"[\x00-\x3f]" + _IMM_PATTERNS[_U32]
_IMM_PATTERNS[_MEMARG_LANE] = _IMM_PATTERNS[_MEMARG] + rb"[\x00-\xff]"
_IMM_PATTERNS[_BLOCK] = (
    rb"(?:[\x40\x69\x6f\x70\x7b-\x7f]|[\x80-\xff]{0,3}[\x00-\x3f]|[\x80-\xff]{4}[\x00-\x0f])"
)
# Most frequent kinds first: the regex tries the alternatives in order.  Absent
# on purpose: _BR_TABLE, _SELECT_T, _TRY_TABLE (vectors) and _GROW (rewritten).
_KIND_ORDER: Final = (_U32, _NONE, _MEMARG, _S32, _BLOCK, _U32X2, _S64, _F64, _F32, _HEAP, _ZERO)
_KIND_ORDER_PREFIXED: Final = (_NONE, _MEMARG, _V128, _LANE, _MEMARG_LANE, _U32, _U32X2, _ZERO)


def _byte_class(values: list[int]) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % v for v in sorted(values)) + b"]"


def _group_by_kind(table: dict[int, int], kinds: tuple[int, ...], leb: bool) -> list[bytes]:
    """Alternatives ``[opcodes]immediates``, one per kind (and LEB128 length)."""
    alternatives = []
    for kind in kinds:
        ops = [op for op, k in table.items() if k == kind]
        if not ops:
            continue
        if not leb:
            alternatives.append(_byte_class(ops) + _IMM_PATTERNS[kind])
            continue
        for high in sorted({op >> 7 for op in ops}):
            lows = [op & 0x7F for op in ops if op >> 7 == high]
            if high:  # canonical two-byte LEB128 encoding of the sub-opcode
                head = _byte_class([low | 0x80 for low in lows]) + b"\\x%02x" % high
            else:
                head = _byte_class(lows)
            alternatives.append(head + _IMM_PATTERNS[kind])
    return alternatives


def _build_fast_scanner() -> re.Pattern[bytes]:
    alternatives = _group_by_kind(_OPS, _KIND_ORDER, leb=False)
    for prefix, table in _PREFIXED.items():
        inner = b"|".join(_group_by_kind(table, _KIND_ORDER_PREFIXED, leb=True))
        alternatives.append(b"\\x%02x(?:%s)" % (prefix, inner))
    return re.compile(b"(?:" + b"|".join(alternatives) + b")*+")


_FAST_SCAN: Final = _build_fast_scanner().match


def _scan_body(r: _Reader, body: int, end: int, fast: bool = True) -> list[tuple[int, int]]:
    """Check one function body; return the [start, end) spans of its memory.grow."""
    r.pos = body
    r.end = end
    _locals(r)
    last = end - 1
    if r.pos > last or r.data[last] != _END:
        r.fail("function body does not end with an 'end' instruction", body)
    r.end = last
    spans: list[tuple[int, int]] = []
    pos = r.pos
    data = r.data
    while True:
        run = _FAST_SCAN(data, pos, last) if fast else None
        if run is not None:
            pos = run.end()
        if pos == last:
            return spans
        r.pos = pos
        if _decode_instr(r) == _MEMORY_GROW:
            spans.append((pos, r.pos))
        pos = r.pos


def _locals(r: _Reader) -> None:
    total = 0
    for _ in range(r.uleb()):
        total += r.uleb()
        _valtype(r)
    if total >= 1 << 32:
        r.fail("too many locals")


# ---------------------------------------------------------------------------
# Sections


@dataclass(slots=True)
class _Section:
    sid: int
    start: int  # offset of the id byte
    body: int  # offset of the contents
    end: int
    name: str = ""


@dataclass(slots=True)
class _State:
    """What the section parsers learn about a module."""

    data: bytes
    imports: list[tuple[str, str, str]] = field(default_factory=list)
    exports: list[tuple[str, str]] = field(default_factory=list)
    memories: list[MemoryInfo] = field(default_factory=list)
    memory_offsets: list[int] = field(default_factory=list)  # where each memory's type starts
    start: int | None = None
    imported_funcs: int = 0
    signatures: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    func_types: list[int] = field(default_factory=list)  # type index of each function
    export_funcs: list[tuple[str, int]] = field(default_factory=list)
    imported_globals: int = 0
    types: int = 0
    funcs: int = 0
    globals: int = 0


def _check_header(data: bytes) -> None:
    if len(data) < 8 and b"\0asm\x01\0\0\0".startswith(data):
        raise WasmFormatError(
            f"malformed module: unexpected end of data in header at offset {len(data)}"
        )
    if data[:4] != b"\0asm":
        raise WasmFormatError("malformed module: not a WebAssembly binary (bad magic) at offset 0")
    version = data[4:8]
    if len(version) < 4:
        raise WasmFormatError(
            f"malformed module: unexpected end of data in header at offset {len(data)}"
        )
    if version != b"\x01\0\0\0":
        if version[2:] == b"\x01\0":
            _unsupported("component-model binary", 4)
        raise WasmFormatError(
            f"malformed module: unknown binary version {version.hex()} at offset 4"
        )


def _walk_sections(data: bytes) -> list[_Section]:
    _check_header(data)
    sections: list[_Section] = []
    last_rank = 0
    size = len(data)
    pos = 8
    while pos < size:
        r = _Reader(data, pos, size, "section header")
        sid = r.byte()
        length = r.uleb()
        body = r.pos
        end = body + length
        if end > size:
            r.fail(
                f"unexpected end of data (section declares {length} bytes, {size - body} remain)",
                pos,
            )
        section = _Section(sid, pos, body, end)
        if sid == 0:
            section.name = _Reader(data, body, end, "custom section").name()
        else:
            rank = _SECTION_RANK.get(sid)
            if rank is None:
                r.fail(f"unknown section id {sid}", pos)
            if rank <= last_rank:
                r.fail(f"{_SECTION_NAMES[sid]} out of order or duplicated", pos)
            last_rank = rank
        sections.append(section)
        pos = end
    return sections


def _parse_types(st: _State, r: _Reader) -> None:
    st.types = r.uleb()
    for _ in range(st.types):
        start = r.pos
        form = r.byte()
        if form != 0x60:
            if form in (0x4E, 0x50, 0x4F, 0x5F, 0x5E):
                _unsupported(f"type form 0x{form:02x} (GC proposal)", start)
            r.fail(f"invalid type form 0x{form:02x}", start)
        params = tuple(_valtype(r) for _ in range(r.uleb()))
        results = tuple(_valtype(r) for _ in range(r.uleb()))
        st.signatures.append((params, results))


def _add_memory(st: _State, r: _Reader, imported: bool) -> None:
    st.memory_offsets.append(r.pos)
    minimum, maximum, is64, shared = _limits(r, memory=True)
    st.memories.append(MemoryInfo(minimum, maximum, is64, shared, imported))


def _parse_imports(st: _State, r: _Reader) -> None:
    for _ in range(r.uleb()):
        module = r.name()
        name = r.name()
        start = r.pos
        kind = r.byte()
        if kind == 0:
            st.func_types.append(r.uleb())
            st.imported_funcs += 1
        elif kind == 1:
            _tabletype(r)
        elif kind == 2:
            _add_memory(st, r, imported=True)
        elif kind == 3:
            _globaltype(r)
            st.imported_globals += 1
        elif kind == 4:
            _tag(r)
        else:
            r.fail(f"invalid import kind 0x{kind:02x}", start)
        st.imports.append((module, name, _KIND_NAMES[kind]))


def _tag(r: _Reader) -> None:
    if r.byte() != 0:
        r.fail("invalid tag attribute", r.pos - 1)
    r.uleb()


def _parse_functions(st: _State, r: _Reader) -> None:
    st.funcs = r.uleb()
    for _ in range(st.funcs):
        st.func_types.append(r.uleb())


def _parse_tables(st: _State, r: _Reader) -> None:
    for _ in range(r.uleb()):
        _tabletype(r)


def _parse_memories(st: _State, r: _Reader) -> None:
    for _ in range(r.uleb()):
        _add_memory(st, r, imported=False)


def _parse_tags(st: _State, r: _Reader) -> None:
    for _ in range(r.uleb()):
        _tag(r)


def _parse_globals(st: _State, r: _Reader) -> None:
    st.globals = r.uleb()
    for _ in range(st.globals):
        _globaltype(r)
        _const_expr(r)


def _parse_exports(st: _State, r: _Reader) -> None:
    count = r.uleb()
    for _ in range(count):
        name = r.name()
        start = r.pos
        kind = r.byte()
        if kind >= len(_KIND_NAMES):
            r.fail(f"invalid export kind 0x{kind:02x}", start)
        index = r.uleb()
        if kind == 0:
            st.export_funcs.append((name, index))
        st.exports.append((name, _KIND_NAMES[kind]))


def _parse_start(st: _State, r: _Reader) -> None:
    st.start = r.uleb()


def _parse_elements(st: _State, r: _Reader) -> None:
    for _ in range(r.uleb()):
        start = r.pos
        flags = r.uleb()
        if flags > 7:
            r.fail(f"invalid element segment flags {flags}", start)
        if flags in (2, 6):
            r.uleb()  # table index
        if not flags & 1:
            _const_expr(r)  # offset of an active segment
        if flags & 3:
            if flags & 4:
                _reftype(r)
            elif r.byte():
                r.fail("invalid element kind", r.pos - 1)
        for _ in range(r.uleb()):
            if flags & 4:
                _const_expr(r)
            else:
                r.uleb()


def _parse_data_count(st: _State, r: _Reader) -> None:
    r.uleb()


def _parse_data(st: _State, r: _Reader) -> None:
    for _ in range(r.uleb()):
        start = r.pos
        flags = r.uleb()
        if flags > 2:
            r.fail(f"invalid data segment flags {flags}", start)
        if flags == 2:
            r.uleb()  # memory index
        if flags != 1:
            _const_expr(r)
        r.skip(r.uleb())


_Parser = Callable[[_State, _Reader], None]
_PARSERS: Final[dict[int, _Parser]] = {
    1: _parse_types,
    2: _parse_imports,
    3: _parse_functions,
    4: _parse_tables,
    5: _parse_memories,
    13: _parse_tags,
    6: _parse_globals,
    7: _parse_exports,
    8: _parse_start,
    9: _parse_elements,
    12: _parse_data_count,
    11: _parse_data,
}
_INFO_SECTIONS: Final = frozenset({1, 2, 3, 5, 7, 8})
_ALL_SECTIONS: Final = frozenset(_PARSERS)


def _parse_sections(data: bytes, wanted: frozenset[int]) -> tuple[_State, list[_Section]]:
    sections = _walk_sections(data)
    st = _State(data)
    for section in sections:
        if section.sid in wanted:
            r = _Reader(data, section.body, section.end, _SECTION_NAMES[section.sid])
            _PARSERS[section.sid](st, r)
            r.expect_end()
    return st, sections


def parse_module_info(data: bytes | bytearray | memoryview) -> ModuleInfo:
    """Read imports, exports, memories and the start flag; raise WasmFormatError if malformed."""
    st, _ = _parse_sections(bytes(data), _INFO_SECTIONS)
    return ModuleInfo(
        imports=tuple(st.imports),
        exports=tuple(st.exports),
        memories=tuple(st.memories),
        has_start=st.start is not None,
        functions=_export_signatures(st),
        defined_functions=st.funcs,
    )


def _export_signatures(st: _State) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Signatures of the exported functions; indices are checked here, the rest by wasmtime."""
    signatures = {}
    for name, index in st.export_funcs:
        if index >= len(st.func_types) or st.func_types[index] >= len(st.signatures):
            raise WasmFormatError(f"malformed module: export {name!r} names no function")
        signatures[name] = st.signatures[st.func_types[index]]
    return signatures


# ---------------------------------------------------------------------------
# Rewriting

_GROW_HOOK_TYPE: Final = b"\x60\x01\x7f\x01\x7f"  # (func (param i32) (result i32))
# Added globals, in export order: grow_max i32 -1, mem_max i64 -1, kind i32 0, pages i64 0,
# delta i64 0.
_ADDED_GLOBALS: Final = (
    (GROW_MAX_PAGES_EXPORT, b"\x7f\x01\x41\x7f\x0b"),
    (MEM_MAX_PAGES_EXPORT, b"\x7e\x01\x42\x7f\x0b"),
    (DENIED_KIND_EXPORT, b"\x7f\x01\x41\x00\x0b"),
    (DENIED_PAGES_EXPORT, b"\x7e\x01\x42\x00\x0b"),
    (DENIED_DELTA_EXPORT, b"\x7e\x01\x42\x00\x0b"),
)
_Piece = bytes | memoryview


def _hook_body(first_global: int) -> bytes:
    """Body of ``(func (param $delta i32) (result i32) (local $r i32))``."""
    grow_max, mem_max, kind, pages, delta = (_uleb(first_global + i) for i in range(5))
    attempted = b"\x3f\x00\xad\x20\x00\xad\x7c"  # (i64) memory.size + (i64) $delta

    def record(k: int) -> bytes:  # if (kind == 0) { kind = k; pages = attempted; delta = $delta }
        set_kind = b"\x41" + _sleb(k) + b"\x24" + kind
        set_pages = attempted + b"\x24" + pages
        set_delta = b"\x20\x00\xad\x24" + delta
        return b"\x23" + kind + b"\x45\x04\x40" + set_kind + set_pages + set_delta + b"\x0b"

    refuse = b"\x41\x7f\x0f"  # return -1
    code = (
        b"\x01\x01\x7f"  # one local i32 ($r)
        # if ($delta >u grow_max) { record(1); return -1; }
        + b"\x20\x00\x23%b\x4b\x04\x40%b%b\x0b" % (grow_max, record(DENIED_BY_GROW_LIMIT), refuse)
        # if (attempted >u mem_max) { record(2); return -1; }
        + b"%b\x23%b\x56\x04\x40%b%b\x0b"
        % (attempted, mem_max, record(DENIED_BY_TOTAL_CAP), refuse)
        # $r = memory.grow($delta); if ($r == -1) record(3);
        + b"\x20\x00\x40\x00\x22\x01\x41\x7f\x46\x04\x40%b\x0b" % record(DENIED_BY_ENGINE)
        + b"\x20\x01\x0b"  # return $r
    )
    return _uleb(len(code)) + code


def _export_entry(name: str, kind: int, index: int) -> bytes:
    encoded = name.encode()
    return _uleb(len(encoded)) + encoded + bytes([kind]) + _uleb(index)


def _check_supported(st: _State, sections: list[_Section]) -> None:
    offsets = st.memory_offsets
    if len(offsets) > 1:
        _unsupported(f"module with {len(offsets)} memories (multi-memory proposal)", offsets[1])
    for memory, offset in zip(st.memories, offsets, strict=True):
        if memory.memory64:
            _unsupported("64-bit memory (memory64 proposal)", offset)
        if memory.shared:
            _unsupported("shared memory (threads proposal)", offset)
    for name, _kind in st.exports:
        if name.startswith(RESERVED_EXPORT_PREFIX):
            offset = next(s.start for s in sections if s.sid == 7)
            raise WasmFormatError(
                f"malformed module: export name {name!r} uses the reserved prefix "
                f"{RESERVED_EXPORT_PREFIX!r} in export section at offset {offset}"
            )


def _rewrite_code(st: _State, section: _Section | None, hook_call: bytes | None) -> list[_Piece]:
    """Return the code section's entries with every memory.grow replaced by ``hook_call``."""
    if section is None:
        if st.funcs:
            raise WasmFormatError(
                "malformed module: function and code section have inconsistent lengths"
            )
        return []
    data = st.data
    view = memoryview(data)
    r = _Reader(data, section.body, section.end, "code section")
    if r.uleb() != st.funcs:
        r.fail("function and code section have inconsistent lengths", section.start)
    body_reader = _Reader(data, 0, 0, "code section")
    pieces: list[_Piece] = []
    copied = r.pos
    for _ in range(st.funcs):
        entry = r.pos
        size = r.uleb()
        body = r.skip(size)
        spans = _scan_body(body_reader, body, r.pos)
        if not spans:
            continue
        if hook_call is None:
            body_reader.fail("memory.grow in a module without memory", spans[0][0])
        removed = sum(end - start for start, end in spans)
        pieces += (view[copied:entry], _uleb(size - removed + len(spans) * len(hook_call)))
        previous = body
        for start, end in spans:
            pieces += (view[previous:start], hook_call)
            previous = end
        pieces.append(view[previous : r.pos])
        copied = r.pos
    r.expect_end()
    pieces.append(view[copied : section.end])
    return pieces


def _extended(st: _State, section: _Section | None, sid: int, added: list[bytes]) -> list[_Piece]:
    """Contents of vector section ``sid`` with ``added`` items appended."""
    if section is None:
        return [_uleb(len(added)), *added]
    r = _Reader(st.data, section.body, section.end, _SECTION_NAMES[sid])
    count = r.uleb()
    return [_uleb(count + len(added)), memoryview(st.data)[r.pos : section.end], *added]


def _assemble(data: bytes, sections: list[_Section], replaced: dict[int, list[_Piece]]) -> bytes:
    """Emit the header and sections, replacing/adding those in ``replaced`` in spec order."""
    view = memoryview(data)
    out: list[_Piece] = [view[:8]]
    present = {s.sid for s in sections}
    pending = sorted((sid for sid in replaced if sid not in present), key=_SECTION_RANK.__getitem__)

    def emit(sid: int) -> None:
        contents = replaced[sid]
        out.extend((bytes([sid]), _uleb(sum(len(p) for p in contents)), *contents))

    for section in sections:
        if section.sid:
            while pending and _SECTION_RANK[pending[0]] < _SECTION_RANK[section.sid]:
                emit(pending.pop(0))
        if section.sid == 8 or section.name.startswith(".debug_"):
            continue  # start section (exported instead) and stale DWARF
        if section.sid in replaced:
            emit(section.sid)
        else:
            out.append(view[section.start : section.end])
    for sid in pending:
        emit(sid)
    return b"".join(out)


def instrument(data: bytes | bytearray | memoryview) -> bytes:
    """Return ``data`` with memory.grow routed through a limit-enforcing hook.

    Adds five mutable exported globals (see the ``*_EXPORT`` names), appends a
    hook function and its type at the end of their index spaces, replaces each
    ``memory.grow`` by a call to it, exports the memory as MEMORY_EXPORT, removes
    the start section (exporting its function as START_EXPORT instead), and drops
    ``.debug_*`` custom sections. A module without memory gets the globals but no
    hook (it cannot grow) and no memory export.
    Raises WasmFormatError for malformed or unsupported modules.
    """
    data = bytes(data)
    st, sections = _parse_sections(data, _ALL_SECTIONS)
    _check_supported(st, sections)
    by_id = {s.sid: s for s in sections if s.sid}
    first_global = st.imported_globals + st.globals
    hook_call = None
    if st.memories:
        hook_call = b"\x10" + _uleb(st.imported_funcs + st.funcs)
    code = _rewrite_code(st, by_id.get(10), hook_call)
    exports = [
        _export_entry(name, 3, first_global + i) for i, (name, _) in enumerate(_ADDED_GLOBALS)
    ]
    if st.start is not None:
        exports.append(_export_entry(START_EXPORT, 0, st.start))
    if st.memories:
        exports.append(_export_entry(MEMORY_EXPORT, 2, 0))
    replaced = {
        6: _extended(st, by_id.get(6), 6, [init for _, init in _ADDED_GLOBALS]),
        7: _extended(st, by_id.get(7), 7, exports),
    }
    if hook_call is not None:
        replaced[1] = _extended(st, by_id.get(1), 1, [_GROW_HOOK_TYPE])
        replaced[3] = _extended(st, by_id.get(3), 3, [_uleb(st.types)])
        replaced[10] = [_uleb(st.funcs + 1), *code, _hook_body(first_global)]
    return _assemble(data, sections, replaced)

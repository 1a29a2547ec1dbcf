"""Decoding WebAssembly binaries: a bounds-checked byte reader, LEB128, value and
reference types, and every instruction's immediates (the opcode tables)."""

from __future__ import annotations

from typing import Final, NoReturn

from ._format import WasmFormatError

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


def _globaltype(r: _Reader) -> tuple[str, bool]:
    """Read a global type: (its value type's name, whether it is mutable)."""
    kind = _valtype(r)
    mut = r.byte()
    if mut > 1:
        r.fail(f"invalid global mutability 0x{mut:02x}", r.pos - 1)
    return kind, mut == 1


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

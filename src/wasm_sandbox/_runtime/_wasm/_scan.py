"""Scanning function bodies for ``memory.grow``: a regular expression skips runs of
instructions the decoder would accept with the same length; the decoder does the rest."""

from __future__ import annotations

import re
from typing import Final

from ._decode import (
    _BLOCK,
    _END,
    _F32,
    _F64,
    _HEAP,
    _LANE,
    _MEMARG,
    _MEMARG_LANE,
    _MEMORY_GROW,
    _NONE,
    _OPS,
    _PREFIXED,
    _S32,
    _S64,
    _U32,
    _U32X2,
    _V128,
    _ZERO,
    _decode_instr,
    _Reader,
    _valtype,
)

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

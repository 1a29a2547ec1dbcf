"""Rewriting a module: every ``memory.grow`` through an added hook that applies the
limits held in exported mutable globals, the start function exported, the memory exported
under a reserved name (`instrument`)."""

from __future__ import annotations

from typing import Final

from ._decode import _SECTION_NAMES, _SECTION_RANK, _Reader, _sleb, _uleb, _unsupported
from ._format import (
    DENIED_BY_ENGINE,
    DENIED_BY_GROW_LIMIT,
    DENIED_BY_TOTAL_CAP,
    DENIED_DELTA_EXPORT,
    DENIED_KIND_EXPORT,
    DENIED_PAGES_EXPORT,
    GLOBAL_EXPORT_PREFIX,
    GROW_MAX_PAGES_EXPORT,
    MEM_MAX_PAGES_EXPORT,
    MEMORY_EXPORT,
    RESERVED_EXPORT_PREFIX,
    START_EXPORT,
    WasmFormatError,
)
from ._scan import _scan_body
from ._sections import _ALL_SECTIONS, _parse_sections, _Section, _State

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

    Adds five mutable exported globals (see the ``*_EXPORT`` names), exports each of the
    module's own mutable globals as ``GLOBAL_EXPORT_PREFIX + index``, appends a
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
    exports += [_export_entry(f"{GLOBAL_EXPORT_PREFIX}{i}", 3, i) for i, _ in st.mutable_globals]
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

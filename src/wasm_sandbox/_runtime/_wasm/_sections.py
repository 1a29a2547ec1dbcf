"""Walking a module's sections in order and parsing what the sandbox needs: imports,
exports, memories, signatures (`parse_module_info`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ._decode import (
    _KIND_NAMES,
    _SECTION_NAMES,
    _SECTION_RANK,
    _const_expr,
    _globaltype,
    _limits,
    _Reader,
    _reftype,
    _tabletype,
    _unsupported,
    _valtype,
)
from ._format import MemoryInfo, ModuleInfo, WasmFormatError

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
    mutable_globals: list[tuple[int, str]] = field(default_factory=list)  # defined: (index, type)


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
    for index in range(st.imported_globals, st.imported_globals + st.globals):
        kind, mutable = _globaltype(r)
        if mutable:
            st.mutable_globals.append((index, kind))
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
        mutable_globals=tuple(st.mutable_globals),
    )


def _export_signatures(st: _State) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Signatures of the exported functions; indices are checked here, the rest by wasmtime."""
    signatures = {}
    for name, index in st.export_funcs:
        if index >= len(st.func_types) or st.func_types[index] >= len(st.signatures):
            raise WasmFormatError(f"malformed module: export {name!r} names no function")
        signatures[name] = st.signatures[st.func_types[index]]
    return signatures

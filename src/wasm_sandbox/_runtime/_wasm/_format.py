"""The public vocabulary of the module tools: the names `instrument` exports, the
values it records, `ModuleInfo`/`MemoryInfo` and `WasmFormatError`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

#: Bumped whenever the output of `instrument` changes (part of compiled-module cache keys).
INSTRUMENT_VERSION: Final = 4
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
#: Prefix of the exports of the module's own mutable globals (``__wsbx_global_<index>``):
#: a snapshot of an instance reads and restores them (``_runtime._snapshot``).
GLOBAL_EXPORT_PREFIX: Final = "__wsbx_global_"
DENIED_BY_GROW_LIMIT: Final = 1
DENIED_BY_TOTAL_CAP: Final = 2
DENIED_BY_ENGINE: Final = 3  # memory.grow itself returned -1
#: Every export whose name starts with this is reserved for `instrument`.
RESERVED_EXPORT_PREFIX: Final = "__wsbx_"


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
    #: the mutable globals the module defines: (global index, value type), e.g. (0, "i32")
    mutable_globals: tuple[tuple[int, str], ...] = ()


def info_to_json(info: ModuleInfo) -> str:
    """``info`` as JSON (kept next to a compiled artifact, so loading it needs no parse)."""
    return json.dumps(
        {
            "imports": info.imports,
            "exports": info.exports,
            "memories": [
                [m.min_pages, m.max_pages, m.memory64, m.shared, m.imported] for m in info.memories
            ],
            "has_start": info.has_start,
            "functions": {name: [list(p), list(r)] for name, (p, r) in info.functions.items()},
            "defined_functions": info.defined_functions,
            "mutable_globals": info.mutable_globals,
        }
    )


def info_from_json(text: str) -> ModuleInfo:
    """The ``ModuleInfo`` ``info_to_json`` wrote; ValueError (or KeyError, TypeError) for
    anything else."""
    data = json.loads(text)
    return ModuleInfo(
        imports=tuple((str(m), str(n), str(k)) for m, n, k in data["imports"]),
        exports=tuple((str(n), str(k)) for n, k in data["exports"]),
        memories=tuple(
            MemoryInfo(int(a), None if b is None else int(b), bool(c), bool(d), bool(e))
            for a, b, c, d, e in data["memories"]
        ),
        has_start=bool(data["has_start"]),
        functions={
            str(name): (tuple(map(str, p)), tuple(map(str, r)))
            for name, (p, r) in data["functions"].items()
        },
        defined_functions=int(data["defined_functions"]),
        mutable_globals=tuple((int(i), str(k)) for i, k in data["mutable_globals"]),
    )

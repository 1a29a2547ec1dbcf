"""Pure-Python (standard library only) WebAssembly binary parser and rewriter.

`parse_module_info` reads imports, exports and memories; `instrument` routes every
``memory.grow`` through a hook enforcing limits that live in exported mutable globals, and
exports the module's memory under a reserved name so the host can always measure it.

``_format`` holds the names and values shared with the host, ``_decode`` the byte reader and
instruction tables, ``_scan`` the search for ``memory.grow`` in function bodies,
``_sections`` the section walk and `parse_module_info`, ``_instrument`` the rewrite.
"""

from ._format import (
    DENIED_BY_ENGINE as DENIED_BY_ENGINE,
)
from ._format import (
    DENIED_BY_GROW_LIMIT as DENIED_BY_GROW_LIMIT,
)
from ._format import (
    DENIED_BY_TOTAL_CAP as DENIED_BY_TOTAL_CAP,
)
from ._format import (
    DENIED_DELTA_EXPORT as DENIED_DELTA_EXPORT,
)
from ._format import (
    DENIED_KIND_EXPORT as DENIED_KIND_EXPORT,
)
from ._format import (
    DENIED_PAGES_EXPORT as DENIED_PAGES_EXPORT,
)
from ._format import (
    GLOBAL_EXPORT_PREFIX as GLOBAL_EXPORT_PREFIX,
)
from ._format import (
    GROW_MAX_PAGES_EXPORT as GROW_MAX_PAGES_EXPORT,
)
from ._format import (
    INSTRUMENT_VERSION as INSTRUMENT_VERSION,
)
from ._format import (
    MEM_MAX_PAGES_EXPORT as MEM_MAX_PAGES_EXPORT,
)
from ._format import (
    MEMORY_EXPORT as MEMORY_EXPORT,
)
from ._format import (
    RESERVED_EXPORT_PREFIX as RESERVED_EXPORT_PREFIX,
)
from ._format import (
    START_EXPORT as START_EXPORT,
)
from ._format import (
    MemoryInfo as MemoryInfo,
)
from ._format import (
    ModuleInfo as ModuleInfo,
)
from ._format import (
    WasmFormatError as WasmFormatError,
)
from ._format import info_from_json as info_from_json
from ._format import info_to_json as info_to_json
from ._instrument import instrument as instrument
from ._sections import parse_module_info as parse_module_info

__all__ = [
    "DENIED_BY_ENGINE",
    "DENIED_BY_GROW_LIMIT",
    "DENIED_BY_TOTAL_CAP",
    "DENIED_DELTA_EXPORT",
    "DENIED_KIND_EXPORT",
    "DENIED_PAGES_EXPORT",
    "GLOBAL_EXPORT_PREFIX",
    "GROW_MAX_PAGES_EXPORT",
    "INSTRUMENT_VERSION",
    "MEMORY_EXPORT",
    "MEM_MAX_PAGES_EXPORT",
    "RESERVED_EXPORT_PREFIX",
    "START_EXPORT",
    "MemoryInfo",
    "ModuleInfo",
    "WasmFormatError",
    "info_from_json",
    "info_to_json",
    "instrument",
    "parse_module_info",
]

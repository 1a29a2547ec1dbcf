"""JavaScript guests: QuickJS-NG compiled to a WebAssembly reactor, taken from the
``qjs-wasi-reactor.wasm`` package on PyPI (``pip install 'wasm-sandbox[javascript]'``).

Only the module file is used; the host side of the protocol is ``_turns.JavaScriptTurn`` and
the guest side ``_jsdriver.BOOT``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from .._errors import ToolchainNotFound

__all__ = ["find_javascript_runtime", "runtime_digest"]

RUNTIME_PACKAGE = "qjs-wasi-reactor"  # the folder the wheel installs (a namespace package)
RUNTIME_DIST = "qjs-wasi-reactor.wasm"
MODULE_FILE = "qjs-wasi-reactor.wasm"
INSTALL_HINT = (
    "JavaScript guests need the QuickJS runtime from PyPI: pip install "
    f"'wasm-sandbox[javascript]' (it installs {RUNTIME_DIST}); 'wasm-sandbox prepare "
    "javascript' compiles it ahead of time"
)


def find_javascript_runtime() -> Path:
    """The installed QuickJS-NG reactor module; ``ToolchainNotFound`` when it is missing."""
    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / MODULE_FILE
        if path.is_file():
            return path
    raise ToolchainNotFound(INSTALL_HINT)


_digests: dict[tuple[str, int, int], str] = {}


def runtime_digest(path: Path) -> str:
    """The SHA-256 of the runtime module at ``path`` (1.5 MB: hashed once per process and
    file version)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _digests.get(key)
    if digest is None:
        with open(path, "rb") as f:
            digest = _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return digest

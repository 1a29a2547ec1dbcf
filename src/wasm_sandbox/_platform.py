"""The platform check, run first when ``wasm_sandbox`` is imported: the library needs Linux
(``fcntl`` file locks, ``resource`` limits, ``/proc`` and ``O_PATH`` directory descriptors).
Elsewhere the import fails at once with one message naming what is missing, instead of a
bare ``ModuleNotFoundError`` from deep inside the package or a wrong result later.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["UnsupportedPlatform"]

REQUIRED_MODULES = ("fcntl", "resource")
"""The POSIX-only standard modules the package imports."""


class UnsupportedPlatform(ImportError):
    """``wasm_sandbox`` cannot run on this platform; the message says what is missing. An
    ``ImportError``: ``import wasm_sandbox`` is what fails, so nothing of the package exists
    to catch it by name."""


def _check() -> None:
    missing = [name for name in REQUIRED_MODULES if not _importable(name)]
    if missing:
        raise UnsupportedPlatform(
            f"wasm-sandbox needs Linux and a Python with the {' and '.join(REQUIRED_MODULES)} "
            f"modules; this Python ({sys.platform}) has no {' or '.join(missing)} module"
        )
    if not sys.platform.startswith("linux"):
        raise UnsupportedPlatform(
            f"wasm-sandbox needs Linux (its file system layer uses /proc and O_PATH "
            f"descriptors); this is {sys.platform}"
        )


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


_check()

"""The file operations a guest performs, as values delivered to an ``io_callback``.

Each is a frozen dataclass carrying the guest path (as the guest names it, under its mount),
so a callback can ``match`` on them. Emitted by ``_wasi/_files`` only when monitoring is on
(``HostCall``, a host-function call, by ``_wasi/_hostcalls``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ._callbacks import SafeCallback

__all__ = [
    "DirectoryCreate",
    "DirectoryDelete",
    "DirectoryList",
    "FileClose",
    "FileDelete",
    "FileOpen",
    "FileRead",
    "FileRename",
    "FileWrite",
    "HostCall",
    "IoObserver",
    "IoOperation",
]

log = logging.getLogger("wasm_sandbox.io")


@dataclass(frozen=True, slots=True)
class IoOperation:
    """One file operation of the guest. ``path`` is the guest path it concerns."""

    path: str


@dataclass(frozen=True, slots=True)
class FileOpen(IoOperation):
    """The guest opened a file (or a directory)."""


@dataclass(frozen=True, slots=True)
class FileRead(IoOperation):
    """The guest read ``bytes`` bytes from a file."""

    bytes: int


@dataclass(frozen=True, slots=True)
class FileWrite(IoOperation):
    """The guest wrote ``bytes`` bytes to a file."""

    bytes: int


@dataclass(frozen=True, slots=True)
class FileClose(IoOperation):
    """The guest closed a file or directory it had opened."""


@dataclass(frozen=True, slots=True)
class FileDelete(IoOperation):
    """The guest deleted (unlinked) a file."""


@dataclass(frozen=True, slots=True)
class FileRename(IoOperation):
    """The guest renamed ``path`` to ``new_path``."""

    new_path: str


@dataclass(frozen=True, slots=True)
class DirectoryCreate(IoOperation):
    """The guest created a directory."""


@dataclass(frozen=True, slots=True)
class DirectoryDelete(IoOperation):
    """The guest removed a directory."""


@dataclass(frozen=True, slots=True)
class DirectoryList(IoOperation):
    """The guest started listing a directory."""


@dataclass(frozen=True, slots=True)
class HostCall(IoOperation):
    """The guest called a host function (``path``: its name); the call took ``seconds`` and
    raised ``error`` (``"Type: message"``), or None when it returned. Not a file operation:
    reported with them so that one callback sees everything the guest did outside."""

    seconds: float
    error: str | None = None


class IoObserver:
    """Delivers one execution's operations to the user's callback (or the debug log).

    A callback that raises is logged once, dropped for the rest of the execution and its
    error kept in ``errors`` (``_callbacks``); the guest never notices.
    """

    __slots__ = ("callback", "errors")

    def __init__(self, callback: Callable[[IoOperation], object] | None) -> None:
        self.callback = (
            None if callback is None else SafeCallback(callback, "io_callback", "this execution")
        )
        self.errors: list[str] = [] if self.callback is None else self.callback.errors

    def emit(self, operation: IoOperation) -> None:
        """Hand ``operation`` to the callback."""
        if self.callback is None:
            log.debug("%s", operation)
        else:
            self.callback(operation)

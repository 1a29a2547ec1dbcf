"""What running a piece of code produced: ``CodeResult`` (``run_python``, ``run_javascript``,
``WasmSandbox.run_code``) and the ``CodeError`` it carries when the code did not finish.

A code result is never an exception: a guest exception, a limit that stopped the code and an
exit with a non-zero status are all results whose ``error`` is set, so an agent's loop reads
one object and never needs a ``try``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from .. import _errors as e
from ._report import ResourceReport

__all__ = ["CodeError", "CodeResult", "code_error", "decode_output"]

# The limit each error class stands for (CodeError.limit).
_LIMITS: tuple[tuple[type[e.ExecutionError], str], ...] = (
    (e.ExecutionTimeout, "timeout"),
    (e.MemoryLimitExceeded, "memory"),
    (e.FuelExhausted, "fuel"),
    (e.IoLimitExceeded, "io"),
    (e.NetworkLimitExceeded, "network"),
)


@dataclass(frozen=True, slots=True)
class CodeError:
    """Why code did not finish: the exception it raised (``type``, ``message`` and the
    guest's ``traceback``, as the guest gave them), or the limit that stopped it (``limit``
    is then ``"timeout"``, ``"memory"``, ``"fuel"``, ``"io"`` or ``"network"``, and ``type``
    the wasm-sandbox error's name, such as ``ExecutionTimeout``)."""

    type: str
    """The exception's type name (``ZeroDivisionError``, ``TypeError``, ``SystemExit``...)
    or the sandbox error's (``ExecutionTimeout``, ``MemoryLimitExceeded``, ``StackOverflow``...)."""
    message: str
    """Its message."""
    traceback: str = ""
    """The guest's traceback (Python: the usual ``Traceback (most recent call last):`` text,
    with the code's lines as ``File "<cell>"``; JavaScript: the stack), or ``""``."""
    limit: str | None = None
    """The limit that stopped the code, or None when the code itself failed."""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON-ready values."""
        return {
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "limit": self.limit,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class CodeResult:
    """What running a piece of code produced. ``error`` is None when it finished; then
    ``result`` holds the value of its last statement if that is an expression (as in a
    notebook cell), as plain JSON values (see *Results as JSON values* in the README)."""

    stdout: str
    """What the code printed (UTF-8, undecodable bytes replaced), at most
    ``max_output_bytes``; kept when a limit stopped it."""
    stderr: str
    """What it wrote to standard error, likewise."""
    result: Any = None
    """The value of the last statement when it is an expression, else None (also None when
    ``error`` is set)."""
    error: CodeError | None = None
    """Why it did not finish, or None."""
    report: ResourceReport | None = None
    """What it used (None only when the sandbox could not measure it)."""

    @property
    def ok(self) -> bool:
        """True when the code finished (``error`` is None)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (an MCP answer, a log line): bytes in ``result``
        as ``{"$bytes": "<base64>"}``, the report's durations in seconds."""
        return {
            "ok": self.ok,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "result": _jsonable(self.result),
            "error": None if self.error is None else self.error.to_dict(),
            "report": None if self.report is None else self.report.to_dict(),
        }


def _jsonable(value: Any) -> Any:
    """``value`` (a decoded guest result) with its bytes as ``{"$bytes": ...}``."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def code_error(exc: e.ExecutionError) -> CodeError:
    """The ``CodeError`` of an execution that ended in ``exc``."""
    if isinstance(exc, e.GuestError):
        return CodeError(exc.type, exc.guest_message, exc.guest_traceback)
    if isinstance(exc, e.GuestExit):
        return CodeError("SystemExit", f"the code exited with status {exc.exit_code}")
    for kind, limit in _LIMITS:
        if isinstance(exc, kind):
            return CodeError(type(exc).__name__, str(exc), limit=limit)
    return CodeError(type(exc).__name__, str(exc))


def decode_output(data: bytes) -> str:
    """Captured output as text."""
    return data.decode("utf-8", "replace")

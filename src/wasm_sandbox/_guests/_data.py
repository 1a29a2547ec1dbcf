"""The data ABI of compiled guests: Python values to JSON bytes and back.

A data function has the wasm signature ``(i32 ptr, i32 len) -> i64`` in a module exporting
``alloc(i32) -> i32`` and ``dealloc(i32, i32)``. Its input is the JSON array of the call's
arguments; its output the envelope ``{"ok": value}`` or ``{"error": {"type", "message"}}``.
Bytes travel as ``{"$bytes": "<base64>"}``. Only JSON is ever parsed: no eval, no pickle.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from .._errors import FunctionNotFound, GuestError, InvalidArguments

__all__ = [
    "DATA_SIGNATURE",
    "decode_frame",
    "decode_result",
    "encode_args",
    "encode_kwargs",
    "is_data_module",
]

DATA_SIGNATURE = (("i32", "i32"), ("i64",))
_ALLOC = (("i32",), ("i32",))
_DEALLOC = (("i32", "i32"), ())
_MAX_DEPTH = 256


def is_data_module(exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> bool:
    """True when the module exports the ``alloc``/``dealloc`` pair of the data ABI."""
    return exports.get("alloc") == _ALLOC and exports.get("dealloc") == _DEALLOC


def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidArguments("arguments nest deeper than 256 levels")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArguments(
                f"{value} cannot be sent to a guest: JSON has no NaN or infinity"
            )
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_to_json(item, depth + 1) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise InvalidArguments(f"object keys must be str, got {type(key).__name__}")
        return {key: _to_json(item, depth + 1) for key, item in value.items()}
    raise InvalidArguments(
        f"{type(value).__name__} cannot be sent to a guest: use JSON values "
        "(None, bool, int, float, str, list, dict) or bytes"
    )


def encode_args(args: tuple[Any, ...]) -> bytes:
    """The UTF-8 JSON array of ``args`` (the data call's input)."""
    items = [_to_json(arg) for arg in args]
    return json.dumps(items, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def encode_kwargs(kwargs: dict[str, Any]) -> bytes:
    """The UTF-8 JSON object of keyword arguments (keys must be identifiers)."""
    for key in kwargs:
        if not key.isidentifier():
            raise InvalidArguments(f"keyword argument names must be identifiers, got {key!r}")
    return json.dumps(
        _to_json(kwargs), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            try:
                return base64.b64decode(value["$bytes"], validate=True)
            except ValueError:
                return value
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestError("ProtocolError", f"the guest's output is not valid JSON: {exc}") from None


def decode_result(data: bytes) -> Any:
    """The value in a data call's output envelope; GuestError for an error or bad output."""
    try:
        return _envelope(_parse(data))
    except RecursionError:
        raise _too_deep() from None


def _too_deep() -> GuestError:
    return GuestError("ProtocolError", "the guest's output nests too deeply to convert")


def _envelope(envelope: Any) -> Any:
    if isinstance(envelope, dict) and set(envelope) == {"ok"}:
        return _from_json(envelope["ok"])
    if isinstance(envelope, dict) and set(envelope) == {"error"}:
        error = envelope["error"]
        if isinstance(error, dict):
            return _raise(error)
    raise GuestError("ProtocolError", 'the guest\'s output is not {"ok": ...} or {"error": ...}')


class OutOfAddressSpace(GuestError):
    """The guest asked for more memory than a 32-bit guest can address (its runtime said so,
    before any memory.grow): the host reports it as the memory limit."""


def decode_frame(data: bytes) -> tuple[Any, int | None]:
    """A script runtime's answer: (value, None), (None, exit code), or the error it reports
    raised (``GuestError``; ``FunctionNotFound`` for a function the script does not define)."""
    try:
        return _decode_frame(data)
    except RecursionError:
        raise _too_deep() from None


def _decode_frame(data: bytes) -> tuple[Any, int | None]:
    frame = _parse(data)
    if isinstance(frame, dict) and frame.get("oom") is True:
        error = frame.get("error")
        if isinstance(error, dict):
            try:
                _raise(error)
            except GuestError as exc:
                raise OutOfAddressSpace(exc.type, exc.guest_message, exc.guest_traceback) from None
        raise OutOfAddressSpace("MemoryError", "the guest ran out of memory")
    if isinstance(frame, dict) and len(frame) == 1:
        if isinstance(frame.get("exit"), int):
            return None, frame["exit"]
        missing = frame.get("missing")
        if isinstance(missing, dict) and isinstance(missing.get("name"), str):
            names = missing.get("available")
            available = (
                tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()
            )
            raise FunctionNotFound(missing["name"], available)
    return _envelope(frame), None


def _raise(error: dict[str, Any]) -> Any:
    type_name = error.get("type") if isinstance(error.get("type"), str) else "GuestError"
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    trace = error.get("traceback") if isinstance(error.get("traceback"), str) else ""
    raise GuestError(str(type_name), str(message), str(trace))

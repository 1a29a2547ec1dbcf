"""Host functions ("tools"): host Python callables a guest may call, as validated values.

``HostFunction`` is what ``SandboxBuilder.host_function`` records (name, callable,
description, JSON Schema of the arguments); ``check_arguments`` is the small JSON Schema
subset the arguments are validated with. Calling one is the WASI layer's (``_wasi._hostcalls``).
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigurationError

__all__ = ["HostFunction", "check_arguments", "check_schema"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# Names a guest could not reach as a function: the Python module's own attributes, and what
# JavaScript reads on any object (``then`` would make ``host`` look like a promise).
RESERVED = frozenset(
    {"HostError", "then", "constructor", "prototype", "toString", "valueOf", "toJSON"}
)
_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list | tuple),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_KEYWORDS = frozenset({"type", "properties", "required", "items", "enum", "additionalProperties"})


@dataclass(frozen=True, kw_only=True, slots=True)
class HostFunction:
    """A host callable a guest may call (``from wasm_sandbox_host import name`` in Python,
    ``host.name(...)`` in JavaScript, ``wsbx_host_call`` in C). Arguments and the result
    cross as JSON; listed, without ``fn``'s code, by ``WasmSandbox.host_functions``."""

    name: str
    """How guests call it: ASCII letters, digits and ``_``, a letter first (at most 64)."""
    fn: Callable[..., Any] = field(repr=False)
    """The callable; it runs on a host worker thread, never on the guest's."""
    description: str | None = None
    """What it does, for listings (an MCP server, a model's tool list)."""
    schema: Mapping[str, Any] | None = None
    """JSON Schema of the arguments as one object (``{"type": "object", "properties": {...},
    "required": [...]}``), positional arguments named by ``fn``'s parameters. When set, every
    call is validated against it (``type``, ``properties``, ``required``, ``items``, ``enum``,
    ``additionalProperties``); a call that does not fit raises ``ValueError`` in the guest."""
    inline: bool = False
    """Run ``fn`` on the guest's own thread rather than a worker: about half the cost of a
    call, for a function that returns at once (a lookup, some arithmetic). The deadline is
    then checked only when it returns (past it: ``ExecutionTimeout``), ``host_call_timeout``
    does not apply, and a cancellation or Ctrl-C waits for it."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                "a host function's name must be an ASCII identifier (a letter, then letters, "
                f"digits or _, at most 64 characters), got {self.name!r}"
            )
        if keyword.iskeyword(self.name) or self.name in RESERVED:
            raise ConfigurationError(f"{self.name!r} is reserved and cannot name a host function")
        if not callable(self.fn):
            raise TypeError(f"host function {self.name!r}: fn must be callable, got {self.fn!r}")
        if self.description is not None and not isinstance(self.description, str):
            raise TypeError(f"host function {self.name!r}: description must be a str or None")
        if self.schema is not None:
            check_schema(self.name, self.schema)
        if not isinstance(self.inline, bool):
            raise TypeError(f"host function {self.name!r}: inline must be a bool")

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by parameter name (``TypeError`` when they do not fit ``fn``)."""
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):  # a builtin without a signature: by schema order
            names = list((self.schema or {}).get("properties", {}))
            return {**dict(zip(names, args, strict=False)), **kwargs}
        bound = signature.bind(*args, **kwargs)
        return dict(bound.arguments)


def check_schema(name: str, schema: object, where: str = "schema") -> None:
    """``ConfigurationError`` unless ``schema`` uses only the keywords ``check_arguments``
    understands, with values of the right kind."""
    if not isinstance(schema, Mapping):
        raise ConfigurationError(f"host function {name!r}: {where} must be a dict")
    unknown = [k for k in schema if k not in _KEYWORDS and k not in ("description", "title")]
    if unknown:
        raise ConfigurationError(
            f"host function {name!r}: {where} uses {unknown[0]!r}; supported: "
            + ", ".join(sorted(_KEYWORDS))
        )
    kinds = schema.get("type")
    for kind in [kinds] if isinstance(kinds, str) or kinds is None else kinds:
        if kind is not None and kind not in _TYPES:
            raise ConfigurationError(f"host function {name!r}: {where} has unknown type {kind!r}")
    for key, sub in dict(schema.get("properties", {})).items():
        check_schema(name, sub, f"{where}.properties.{key}")
    if "items" in schema:
        check_schema(name, schema["items"], f"{where}.items")


def check_arguments(schema: Mapping[str, Any], value: object, where: str = "arguments") -> None:
    """``ValueError`` naming the first place where ``value`` does not fit ``schema``."""
    kinds = schema.get("type")
    if kinds is not None:
        wanted = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_TYPES[kind](value) for kind in wanted):
            got = "null" if value is None else type(value).__name__
            raise ValueError(f"{where}: expected {' or '.join(wanted)}, got {got}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{where}: {value!r} is not one of {list(schema['enum'])!r}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise ValueError(f"{where}: {key!r} is required")
        for key, item in value.items():
            if key in properties:
                check_arguments(properties[key], item, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                raise ValueError(f"{where}: unexpected {key!r}")
    elif isinstance(value, list | tuple) and "items" in schema:
        for index, item in enumerate(value):
            check_arguments(schema["items"], item, f"{where}[{index}]")

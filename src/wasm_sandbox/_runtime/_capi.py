"""Direct calls into wasmtime's C API for the hot paths (instantiate, export lookup, call,
globals, fuel), skipping wasmtime-py's per-call boxing. Part of the engine seam: only
``_engine`` uses it, and failures come back as wasmtime-py exception objects.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_uint64, c_void_p
from typing import Any, cast

import wasmtime
from wasmtime import _ffi

from . import _cdecl as _c

__all__ = [
    "Extern",
    "FuncCaller",
    "Store",
    "engine_address",
    "export_get",
    "get_fuel",
    "global_get",
    "global_set",
    "global_value",
    "instantiate_pre",
    "kind_of",
    "memory_grow",
    "memory_read",
    "memory_size",
    "memory_span",
    "memory_write",
    "set_fuel",
    "set_global_value",
]

_instantiate = _c.instance_pre_instantiate
_export_get = _c.export_get
_call = _c.call_unchecked
_global_get = _c.global_get
_global_set = _c.global_set
_set_fuel = _c.context_set_fuel
_get_fuel = _c.context_get_fuel
_memory_size = _c.memory_data_size
_memory_data = _c.memory_data
_memory_grow = _c.memory_grow
_store_new = _c.store_new
_store_context = _c.store_context
_store_limiter = _c.store_limiter
_store_delete = _c.store_delete

Extern = _ffi.wasmtime_extern_t
EXTERN_FUNC, EXTERN_GLOBAL, EXTERN_MEMORY = 0, 1, 3
_KIND_I32, _KIND_I64 = 0, 1
_RAW = _ffi.wasmtime_val_raw_t


def _raise(error: int | None, trap: c_void_p | None = None) -> None:
    """Turn an error or trap pointer into wasmtime-py's exception and raise it."""
    if error:
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, POINTER(_ffi.wasmtime_error_t)))
    if trap is not None and trap.value:
        raise wasmtime.Trap._from_ptr(ctypes.cast(trap.value, POINTER(_ffi.wasm_trap_t)))


def engine_address(engine: wasmtime.Engine) -> int:
    """The address of ``engine``'s C object (it lives as long as the Python one)."""
    address = ctypes.cast(engine.ptr(), c_void_p).value
    if address is None:
        raise ValueError("engine is closed")
    return address


class Store:
    """A wasmtime store made through the C API, with resource limits (wasmtime-py's Store
    wrapper costs a few microseconds per fresh instance); ``close`` deletes it, as does
    garbage collection of one never closed."""

    __slots__ = ("address", "context")

    def __init__(self, engine: int, memory_size: int, elements: int, instances: int) -> None:
        address = _store_new(engine, None, None)
        if not address:
            raise MemoryError("wasmtime could not create a store")
        self.address: int | None = address
        self.context: int = _store_context(address)
        # memory bytes, table elements, instances, tables, memories (-1: unlimited)
        _store_limiter(address, memory_size, elements, instances, instances, 1)

    def close(self) -> None:
        """Delete the store (and every instance in it) now; idempotent."""
        address, self.address = self.address, None
        if address is not None:
            _store_delete(address)

    def __del__(self) -> None:
        self.close()


def instantiate_pre(pre: wasmtime.InstancePre, context: int) -> _ffi.wasmtime_instance_t:
    """Instantiate a pre-linked module; raises wasmtime.Trap/WasmtimeError on failure."""
    instance = _ffi.wasmtime_instance_t()
    trap = c_void_p()
    pre_ptr = ctypes.cast(pre.ptr(), c_void_p).value
    error = _instantiate(pre_ptr, context, ctypes.addressof(instance), ctypes.addressof(trap))
    _raise(error, trap)
    return instance


def export_get(context: int, instance: _ffi.wasmtime_instance_t, name: str) -> Extern | None:
    """The export ``name`` of ``instance``, or None."""
    item = Extern()
    encoded = name.encode()
    if not _export_get(
        context, ctypes.addressof(instance), encoded, len(encoded), ctypes.addressof(item)
    ):
        return None
    return item


def kind_of(item: Extern | _ffi.wasmtime_val_t) -> int:
    """The ``kind`` tag of an extern or value, as an int."""
    return cast(int, item.kind)


def global_get(context: int, item: Extern) -> int:
    """The value of an i32 or i64 global."""
    value = _ffi.wasmtime_val_t()
    _global_get(context, ctypes.addressof(item.of.global_), ctypes.addressof(value))
    return int(value.of.i64 if kind_of(value) == _KIND_I64 else value.of.i32)


def global_set(context: int, item: Extern, is_i64: bool, number: int) -> None:
    """Set an i32 or i64 global (``number`` wraps to the global's width)."""
    value = _ffi.wasmtime_val_t()
    # wasmtime-py annotates ``kind`` as c_ubyte; at run time ctypes reads and writes ints.
    setattr(value, "kind", _KIND_I64 if is_i64 else _KIND_I32)  # noqa: B010
    if is_i64:
        value.of.i64 = number
    else:
        value.of.i32 = number
    _raise(_global_set(context, ctypes.addressof(item.of.global_), ctypes.addressof(value)))


_VALUE_KINDS = {"i32": 0, "i64": 1, "f32": 2, "f64": 3, "v128": 4}


def global_value(context: int, item: Extern, kind: str) -> bytes:
    """The 16 bytes of a numeric global's value (its type ``kind``: i32, i64, f32, f64 or
    v128); ValueError for a reference."""
    if kind not in _VALUE_KINDS:
        raise ValueError(f"a global of type {kind} cannot be captured")
    value = _ffi.wasmtime_val_t()
    _global_get(context, ctypes.addressof(item.of.global_), ctypes.addressof(value))
    return ctypes.string_at(ctypes.addressof(value.of), 16)


def set_global_value(context: int, item: Extern, kind: str, raw: bytes) -> None:
    """Set a numeric global from the 16 bytes ``global_value`` read."""
    if kind not in _VALUE_KINDS or len(raw) != 16:
        raise ValueError(f"no {kind} global value in {len(raw)} bytes")
    value = _ffi.wasmtime_val_t()
    setattr(value, "kind", _VALUE_KINDS[kind])  # noqa: B010 - see global_set
    ctypes.memmove(ctypes.addressof(value.of), raw, 16)
    _raise(_global_set(context, ctypes.addressof(item.of.global_), ctypes.addressof(value)))


def memory_span(context: int, item: Extern) -> tuple[int, int]:
    """(address, size in bytes) of a memory export's data (valid until it grows)."""
    address = ctypes.addressof(item.of.memory)
    return int(_memory_data(context, address) or 0), int(_memory_size(context, address))


def memory_grow(context: int, item: Extern, pages: int) -> None:
    """Grow a memory export by ``pages``; wasmtime's error (the store's limit) is raised."""
    previous = c_uint64()
    address = ctypes.addressof(item.of.memory)
    _raise(_memory_grow(context, address, pages, ctypes.addressof(previous)))


def set_fuel(context: int, fuel: int) -> None:
    """Give the store ``fuel`` units."""
    _raise(_set_fuel(context, fuel))


def get_fuel(context: int) -> int:
    """Fuel left in the store."""
    out = c_uint64()
    _raise(_get_fuel(context, ctypes.addressof(out)))
    return out.value


def memory_size(context: int, item: Extern) -> int:
    """Current byte size of a memory export."""
    return int(_memory_size(context, ctypes.addressof(item.of.memory)))


def memory_read(context: int, item: Extern, ptr: int, length: int) -> bytes | None:
    """``length`` bytes at ``ptr`` of a memory export, or None if out of bounds."""
    address = ctypes.addressof(item.of.memory)
    if ptr < 0 or length < 0 or ptr + length > _memory_size(context, address):
        return None
    return ctypes.string_at(_memory_data(context, address) + ptr, length) if length else b""


def memory_write(context: int, item: Extern, ptr: int, data: bytes) -> bool:
    """Copy ``data`` to ``ptr`` of a memory export; False if out of bounds."""
    address = ctypes.addressof(item.of.memory)
    if ptr < 0 or ptr + len(data) > _memory_size(context, address):
        return False
    if data:
        ctypes.memmove(_memory_data(context, address) + ptr, data, len(data))
    return True


_SETTERS = {"i32": "i32", "i64": "i64", "f32": "f32", "f64": "f64"}


class FuncCaller:
    """Calls one exported function with raw values: types worked out once, buffers reused."""

    __slots__ = ("_address", "_buffer", "_context", "_func", "_params", "_results", "_trap")

    def __init__(
        self, context: int, item: Extern, params: tuple[str, ...], results: tuple[str, ...]
    ) -> None:
        self._context = context
        self._func = item  # keeps the extern alive
        self._address = ctypes.addressof(item.of.func)
        self._buffer = (_RAW * max(1, len(params), len(results)))()
        self._params = tuple(_SETTERS[p] for p in params)
        self._results = tuple(_SETTERS[r] for r in results)
        self._trap = c_void_p()

    def __call__(self, args: tuple[Any, ...]) -> Any:
        buffer = self._buffer
        for slot, kind, value in zip(buffer, self._params, args, strict=False):
            setattr(slot, kind, value)
        trap = self._trap
        trap.value = None
        error = _call(self._context, self._address, buffer, len(buffer), ctypes.addressof(trap))
        if error or trap.value:
            _raise(error, trap)
        results = self._results
        if not results:
            return None
        if len(results) == 1:
            return getattr(buffer[0], results[0])
        return tuple(getattr(buffer[i], kind) for i, kind in enumerate(results))

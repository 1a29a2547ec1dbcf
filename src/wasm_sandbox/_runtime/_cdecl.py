"""Every wasmtime C-API function we call directly, declared once (argument and result types)
on our own handle to wasmtime-py's shared library, so our declarations never clash with
wasmtime-py's. Used by ``_capi`` (the hot paths of the engine) and ``_bind`` (host
functions and the epoch callback); nothing else calls C.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_bool, c_char_p, c_int64, c_size_t, c_uint8, c_uint64, c_void_p
from typing import Any

from wasmtime import _ffi

__all__ = [
    "EPOCH_CALLBACK",
    "UNCHECKED_HOST_FUNC",
    "call_unchecked",
    "caller_context",
    "context_get_fuel",
    "context_set_epoch_deadline",
    "context_set_fuel",
    "error_new",
    "export_get",
    "global_get",
    "global_set",
    "instance_pre_instantiate",
    "linker_define_func_unchecked",
    "memory_data",
    "memory_data_size",
    "memory_grow",
    "store_context",
    "store_delete",
    "store_epoch_deadline_callback",
    "store_limiter",
    "store_new",
    "trap_new",
]

_lib = ctypes.CDLL(_ffi.dll._name)


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    func = getattr(_lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


#: A raw host function: (env, caller, args_and_results, count) -> trap or NULL.
UNCHECKED_HOST_FUNC = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_size_t)
#: The epoch-deadline callback: (context, env, out deadline delta, out update kind) -> error.
EPOCH_CALLBACK = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p, POINTER(c_uint64), POINTER(c_uint8))

# The engine's hot paths (_capi).
store_new = _fn("wasmtime_store_new", c_void_p, c_void_p, c_void_p, c_void_p)
store_context = _fn("wasmtime_store_context", c_void_p, c_void_p)
store_limiter = _fn(
    "wasmtime_store_limiter", None, c_void_p, c_int64, c_int64, c_int64, c_int64, c_int64
)
store_delete = _fn("wasmtime_store_delete", None, c_void_p)
context_set_epoch_deadline = _fn("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64)
instance_pre_instantiate = _fn(
    "wasmtime_instance_pre_instantiate", c_void_p, c_void_p, c_void_p, c_void_p, c_void_p
)
export_get = _fn(
    "wasmtime_instance_export_get", c_bool, c_void_p, c_void_p, c_char_p, c_size_t, c_void_p
)
call_unchecked = _fn(
    "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p
)
global_get = _fn("wasmtime_global_get", None, c_void_p, c_void_p, c_void_p)
global_set = _fn("wasmtime_global_set", c_void_p, c_void_p, c_void_p, c_void_p)
context_set_fuel = _fn("wasmtime_context_set_fuel", c_void_p, c_void_p, c_uint64)
context_get_fuel = _fn("wasmtime_context_get_fuel", c_void_p, c_void_p, c_void_p)
memory_data_size = _fn("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
memory_data = _fn("wasmtime_memory_data", c_void_p, c_void_p, c_void_p)
memory_grow = _fn("wasmtime_memory_grow", c_void_p, c_void_p, c_void_p, c_uint64, c_void_p)

# Host functions and the epoch callback (_bind).
caller_context = _fn("wasmtime_caller_context", c_void_p, c_void_p)
trap_new = _fn("wasmtime_trap_new", c_void_p, c_char_p, c_size_t)
error_new = _fn("wasmtime_error_new", c_void_p, c_char_p)
linker_define_func_unchecked = _fn(
    "wasmtime_linker_define_func_unchecked", c_void_p,
    c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, UNCHECKED_HOST_FUNC, c_void_p,
    c_void_p,
)  # fmt: skip
store_epoch_deadline_callback = _fn(
    "wasmtime_store_epoch_deadline_callback", None, c_void_p, EPOCH_CALLBACK, c_void_p, c_void_p
)

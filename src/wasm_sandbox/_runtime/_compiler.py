"""Turning a module into machine code: the engine configuration and the compile step, shared
by ``_engine`` and the compiling child process of a build budget (``_build``), which imports
only this much of the library (it starts three times faster than with the whole package).
"""

from __future__ import annotations

import wasmtime

from .._config._limits import OptimizationLevel
from .._errors import InvalidModule
from . import _wasm

__all__ = ["compile_artifact", "compile_module", "engine_config", "first_line"]


def engine_config(opt_level: OptimizationLevel, debug: bool, metered: bool) -> wasmtime.Config:
    """The engine configuration: the same in a compiling child, or its artifact would not load."""
    config = wasmtime.Config()
    config.consume_fuel = metered
    config.epoch_interruption = True
    config.cranelift_opt_level = opt_level.value
    config.debug_info = debug
    config.wasm_threads = False
    config.wasm_memory64 = False
    config.wasm_multi_memory = False
    return config


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (wasmtime's run on with backtraces and causes)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """Instrument and compile ``wasm``; an invalid module raises InvalidModule."""
    try:
        instrumented = _wasm.instrument(wasm)
    except _wasm.WasmFormatError as exc:
        raise InvalidModule(f"Invalid module: {exc}") from None
    try:
        return wasmtime.Module(engine, instrumented)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"Invalid module: {first_line(exc)}") from None


def compile_artifact(
    wasm: bytes, opt_level: OptimizationLevel, debug: bool, metered: bool, memory_limited: bool
) -> bytearray:
    """The serialized artifact of ``wasm`` for an engine of this configuration (the work of
    the compiling child process of a build budget). With ``memory_limited``, a module that
    validates but fails to compile ran out of memory (wasmtime reports some failed
    allocations as errors, e.g. "Cannot allocate buffer"): MemoryError, not InvalidModule."""
    engine = wasmtime.Engine(engine_config(opt_level, debug, metered))
    try:
        return compile_module(engine, wasm).serialize()
    except InvalidModule:
        if not memory_limited or not _validates(engine, wasm):
            raise
        raise MemoryError("compiling a valid module failed under the memory limit") from None
    except wasmtime.WasmtimeError:  # serializing failed
        if memory_limited:
            raise MemoryError("serializing the compiled module failed") from None
        raise


def _validates(engine: wasmtime.Engine, wasm: bytes) -> bool:
    try:
        wasmtime.Module.validate(engine, _wasm.instrument(wasm))
    except (_wasm.WasmFormatError, wasmtime.WasmtimeError):
        return False
    return True

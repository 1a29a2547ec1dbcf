"""Binds the preview1 syscalls and the epoch callback into wasmtime, through its C API.

Host functions are defined once per engine on a ``Linker`` with raw ("unchecked")
trampolines: no per-call value boxing, no shared global for exceptions (wasmtime-py keeps
one ``LAST_EXCEPTION`` for all threads). The running execution is found through a
thread-local: a store is only ever used by the thread that calls into it.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import wasmtime

from .._wasi import _door, _files, _hostcalls, _net, _paths, _preview1  # noqa: F401 - importing them registers their syscalls
from .._wasi._abi import GuestMemory
from .._wasi._context import GuestStop, StopReason, WasiContext
from .._wasi._errno import WasiError
from .._wasi._fs import FdTable
from .._wasi._registry import HOST_FUNCTIONS, SYSCALLS, Syscall
from . import _cdecl as _c

__all__ = ["HostBinding", "bind", "current", "define_wasi", "install_epoch_callback"]

WASI_MODULE = "wasi_snapshot_preview1"

_caller_context = _c.caller_context
_memory_data = _c.memory_data
_memory_data_size = _c.memory_data_size
_trap_new = _c.trap_new
_error_new = _c.error_new
_UNCHECKED = _c.UNCHECKED_HOST_FUNC
_define_unchecked = _c.linker_define_func_unchecked
_EPOCH_CALLBACK = _c.EPOCH_CALLBACK
_set_epoch_callback = _c.store_epoch_deadline_callback

_NO_MEMORY = GuestMemory(0, 0)


class HostBinding:
    """What the host functions need from the running execution."""

    __slots__ = ("fds", "memory_address", "on_tick", "wasi")

    def __init__(self, wasi: WasiContext, fds: FdTable) -> None:
        self.wasi = wasi
        self.fds = fds
        wasi.bind_fds(fds)
        self.memory_address: int | None = None  # address of the wasmtime_memory_t struct
        self.on_tick: Callable[[], None] | None = None  # called on every epoch tick


current = threading.local()  # .binding: the execution this thread's host calls belong to


@contextmanager
def bind(binding: HostBinding) -> Iterator[None]:
    """Make ``binding`` the execution that host calls on this thread belong to."""
    previous = getattr(current, "binding", None)
    current.binding = binding
    try:
        yield
    finally:
        current.binding = previous


def _stop_trap(ctx: WasiContext, reason: str, exc: BaseException | None = None) -> int:
    ctx.stop(reason, exc)
    message = f"wasm-sandbox: guest stopped ({ctx.stop_state.reason})".encode()
    return int(_trap_new(message, len(message)))


def _make_trampoline(sc: Syscall) -> Any:
    impl = sc.impl
    params_size = 16 * len(sc.params)
    # i32 arguments are read as unsigned (pointers, lengths, fds), i64 as signed.
    unpack = struct.Struct("<" + "".join("I12x" if p == "i" else "q8x" for p in sc.params)).unpack
    has_result = bool(sc.results)

    def trampoline(env: int, caller: int, values: int, nvalues: int) -> int | None:
        binding: HostBinding | None = getattr(current, "binding", None)
        if binding is None:  # a guest call outside any execution: impossible by construction
            message = b"wasm-sandbox: host call outside an execution"
            return int(_trap_new(message, len(message)))
        ctx = binding.wasi
        try:
            args = unpack(ctypes.string_at(values, params_size)) if params_size else ()
            address = binding.memory_address
            if address is not None:
                context = _caller_context(caller)
                mem = GuestMemory(
                    _memory_data(context, address) or 0, _memory_data_size(context, address)
                )
            else:
                mem = _NO_MEMORY
            ctx.counters.syscalls += 1
            try:
                errno = impl(ctx, mem, *args)
            except WasiError as err:
                errno = err.errno
        except GuestStop:
            return _stop_trap(ctx, ctx.stop_state.reason or StopReason.HOST_ERROR)
        except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or a user callback's
            return _stop_trap(ctx, StopReason.INTERRUPTED, exc)
        except BaseException as exc:  # a bug of ours: never let it unwind into wasmtime
            return _stop_trap(ctx, StopReason.HOST_ERROR, exc)
        if has_result:
            ctypes.c_int64.from_address(values).value = int(errno)
        return None

    return _UNCHECKED(trampoline)


# CFUNCTYPE objects must outlive every linker that references them: keep them for the process.
_ALL = {**SYSCALLS, **HOST_FUNCTIONS}
_TRAMPOLINES: dict[str, Any] = {name: _make_trampoline(sc) for name, sc in _ALL.items()}


def _functype(sc: Syscall) -> wasmtime.FuncType:
    kinds = {"i": wasmtime.ValType.i32, "I": wasmtime.ValType.i64}
    return wasmtime.FuncType([kinds[p]() for p in sc.params], [kinds[r]() for r in sc.results])


def define_wasi(linker: wasmtime.Linker) -> list[wasmtime.FuncType]:
    """Define every preview1 function on ``linker``; returns the FuncTypes (keep them alive)."""
    linker_ptr = ctypes.cast(linker.ptr(), ctypes.c_void_p).value
    types = []
    for key, sc in _ALL.items():
        functype = _functype(sc)
        types.append(functype)
        module, encoded = sc.module.encode(), sc.name.encode()
        error = _define_unchecked(
            linker_ptr, module, len(module), encoded, len(encoded),
            ctypes.cast(functype.ptr(), ctypes.c_void_p).value, _TRAMPOLINES[key], None, None,
        )  # fmt: skip
        if error:
            raise RuntimeError(f"wasm-sandbox: could not define {sc.module}.{sc.name}")
    return types


def _on_epoch(context: int, data: int, delta: Any, kind: Any) -> int | None:
    delta[0] = 1
    kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
    binding: HostBinding | None = getattr(current, "binding", None)
    if binding is None:
        return None
    ctx = binding.wasi
    try:
        ctx.check_stop()
        if binding.on_tick is not None:
            binding.on_tick()
    except GuestStop:
        return int(_error_new(f"wasm-sandbox: guest stopped ({ctx.stop_state.reason})".encode()))
    except KeyboardInterrupt as exc:
        ctx.stop(StopReason.INTERRUPTED, exc)
        return int(_error_new(b"wasm-sandbox: interrupted"))
    except BaseException as exc:
        ctx.stop(StopReason.HOST_ERROR, exc)
        return int(_error_new(b"wasm-sandbox: host error in epoch callback"))
    return None


_EPOCH_TRAMPOLINE = _EPOCH_CALLBACK(_on_epoch)


def install_epoch_callback(store: int | None, context: int) -> None:
    """Call back into the host on every epoch tick of the store at ``store`` (deadline,
    cancel, sampling), the first one tick from now."""
    _set_epoch_callback(store, _EPOCH_TRAMPOLINE, None, None)
    _c.context_set_epoch_deadline(context, 1)

"""The table of preview1 functions: each module of ``_wasi`` registers its syscalls here with
``@syscall(signature)``, and ``_bind`` defines them all in wasmtime from this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HOST_FUNCTIONS", "SYSCALLS", "Syscall", "syscall"]

SyscallImpl = Callable[..., int]


@dataclass(frozen=True, slots=True)
class Syscall:
    """One preview1 function: its implementation and its wasm signature."""

    name: str
    impl: SyscallImpl
    params: str  # one letter per parameter: "i" i32, "I" i64
    results: str  # "i" (an errno) or "" (proc_exit)
    module: str = "wasi_snapshot_preview1"  # the import module the guest names


SYSCALLS: dict[str, Syscall] = {}  # preview1, by name
HOST_FUNCTIONS: dict[str, Syscall] = {}  # the few host imports outside preview1: "module.name"


def syscall(
    params: str, results: str = "i", *, module: str | None = None, name: str | None = None
) -> Callable[[SyscallImpl], SyscallImpl]:
    """Register the decorated function as the preview1 call of the same name (or as
    ``module.name``, for the few host imports outside preview1)."""

    def register(impl: SyscallImpl) -> SyscallImpl:
        if module is None:
            SYSCALLS[impl.__name__] = Syscall(impl.__name__, impl, params, results)
        else:
            called = name or impl.__name__
            HOST_FUNCTIONS[f"{module}.{called}"] = Syscall(called, impl, params, results, module)
        return impl

    return register

"""The table of preview1 functions: each module of ``_wasi`` registers its syscalls here with
``@syscall(signature)``, and ``_bind`` defines them all in wasmtime from this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SYSCALLS", "Syscall", "syscall"]

SyscallImpl = Callable[..., int]


@dataclass(frozen=True, slots=True)
class Syscall:
    """One preview1 function: its implementation and its wasm signature."""

    name: str
    impl: SyscallImpl
    params: str  # one letter per parameter: "i" i32, "I" i64
    results: str  # "i" (an errno) or "" (proc_exit)


SYSCALLS: dict[str, Syscall] = {}


def syscall(params: str, results: str = "i") -> Callable[[SyscallImpl], SyscallImpl]:
    """Register the decorated function as the preview1 call of the same name."""

    def register(impl: SyscallImpl) -> SyscallImpl:
        SYSCALLS[impl.__name__] = Syscall(impl.__name__, impl, params, results)
        return impl

    return register

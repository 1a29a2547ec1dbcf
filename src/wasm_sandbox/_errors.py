"""The exception tree of wasm_sandbox, with each error's exit status in the ``wasm-sandbox``
command (``cli_exit_status``, read by the CLI in one place).

Every failure a user can see is one of these classes; wasmtime's own exceptions are
translated in ``_engine`` and never reach the user.

    SandboxError                                                                        exit
    ├── ConfigurationError (also ValueError)   a limit or option that cannot be honoured   65
    ├── MountChanged                           a mounted host directory was replaced       65
    ├── SourceNotFound (also FileNotFoundError)   the source file does not exist          66
    ├── UnsupportedSource (also NotImplementedError)   an unknown source kind or language  65
    ├── InvalidModule                          malformed, invalid or unlinkable module     65
    ├── BuildLimitExceeded                     the module is over the build budget         65
    ├── CompilationError                       a source file failed to compile to wasm     65
    │   └── ToolchainNotFound                  its compiler or runtime is not installed    69
    ├── FunctionNotFound                       no exported function of that name           65
    ├── InvalidArguments (also TypeError)      arguments do not fit the function's signature 65
    ├── SnapshotError                          a state that cannot be saved, or a bad file 65
    ├── Overflow                               the load balancer's queue was full          75
    ├── Timeout                                a load-balancer job ran past its time      124
    └── ExecutionError                         the guest ran and failed                    71
        ├── ResourceLimitExceeded
        │   ├── MemoryLimitExceeded            linear memory cap or per-grow cap hit      120
        │   ├── FuelExhausted                  the fuel budget ran out                    121
        │   ├── IoLimitExceeded                a file-system limit (strict mode only)     122
        │   ├── NetworkLimitExceeded           a network limit (strict network mode only) 123
        │   ├── HostCallLimitExceeded          more host-function calls than max_host_calls 125
        │   └── ExecutionTimeout               the wall-clock deadline passed             124
        ├── GuestTrap                          the guest trapped (trap_code says which)    70
        │   ├── StackOverflow
        │   ├── MemoryAccessOutOfBounds
        │   ├── UnreachableExecuted
        │   ├── IntegerDivisionByZero
        │   ├── IntegerOverflow
        │   ├── InvalidConversionToInteger
        │   ├── TableAccessOutOfBounds
        │   └── IndirectCallError
        ├── GuestError                         the guest raised or reported an error        1
        ├── GuestExit                          call() of a function that called proc_exit
        │                                      (exit: the guest's own exit code)
        ├── ExecutionCancelled                 cancelled by the host (e.g. asyncio)       130
        ├── SecurityViolation                  the network policy refused (strict mode)   126
        ├── SessionLost                        a session could not be restored; closed     75
        └── HostError                          a bug in the host layer, never the guest's  71
"""

from __future__ import annotations

import errno
import os
from datetime import timedelta
from typing import Any

__all__ = [
    "BuildLimitExceeded",
    "CompilationError",
    "ConfigurationError",
    "ExecutionCancelled",
    "ExecutionError",
    "ExecutionTimeout",
    "FuelExhausted",
    "FunctionNotFound",
    "GuestError",
    "GuestExit",
    "GuestTrap",
    "HostCallLimitExceeded",
    "HostError",
    "IndirectCallError",
    "IntegerDivisionByZero",
    "IntegerOverflow",
    "InvalidArguments",
    "InvalidConversionToInteger",
    "InvalidModule",
    "IoLimitExceeded",
    "MemoryAccessOutOfBounds",
    "MemoryLimitExceeded",
    "MountChanged",
    "NetworkLimitExceeded",
    "Overflow",
    "ResourceLimitExceeded",
    "SandboxError",
    "SecurityViolation",
    "SessionLost",
    "SnapshotError",
    "SourceNotFound",
    "StackOverflow",
    "TableAccessOutOfBounds",
    "Timeout",
    "ToolchainNotFound",
    "UnreachableExecuted",
    "UnsupportedSource",
]


class SandboxError(Exception):
    """Root of every error wasm_sandbox raises; catch this to catch them all.

    It is not raised for wrong argument *types* given to the Python API, which raise
    ``TypeError`` as usual.
    """

    cli_exit_status: int = 71
    """The ``wasm-sandbox`` command's exit status when this error ends it (a class
    attribute; ``GuestExit``'s is the guest's own exit code)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[SandboxError], state: dict[str, Any]) -> SandboxError:
    """Unpickle any SandboxError without calling its __init__ (fields are restored as-is)."""
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class ConfigurationError(SandboxError, ValueError):
    """A limit or option that is invalid or cannot be honoured; raised before any guest runs.

    Not raised for a guest that misbehaves at run time (see ``ExecutionError``).
    """

    cli_exit_status = 65  # EX_DATAERR: the input cannot be used


class MountChanged(SandboxError):
    """A mounted host directory is no longer the directory checked when the mount was made
    (removed, replaced by another directory, or by a symbolic link): nothing runs.

    Raised when an instance would open the mount, so a directory swapped after the sandbox
    was built (say, by another sandbox with a writable mount above it) is never served.
    ``guest_path`` and ``host_path`` name the mount.
    """

    cli_exit_status = 65

    def __init__(self, guest_path: str, host_path: str, detail: str) -> None:
        super().__init__(
            f"mount {guest_path!r}: host directory {host_path} {detail}; "
            "refusing to run (build the sandbox again to mount what is there now)"
        )
        self.guest_path = guest_path
        self.host_path = host_path
        self.detail = detail


class SourceNotFound(SandboxError, FileNotFoundError):
    """The source file given to ``source(...)`` (or a one-liner) does not exist. Also a
    ``FileNotFoundError`` (``errno`` ENOENT, ``filename`` the path), so ``except
    FileNotFoundError`` catches it. Not raised for a missing mount or ``python_path`` entry
    (``ConfigurationError``)."""

    cli_exit_status = 66  # EX_NOINPUT: an input file did not exist

    def __init__(self, path: str) -> None:
        super().__init__(f"source file not found: {path}")
        self.path = path
        self.errno = errno.ENOENT
        self.strerror = os.strerror(errno.ENOENT)
        self.filename = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path,))


class UnsupportedSource(SandboxError, NotImplementedError):
    """A source kind (file extension or language) that this version cannot run."""

    cli_exit_status = 65


class InvalidModule(SandboxError):
    """The module is malformed, fails validation, or imports something the sandbox lacks.

    Raised at build time; it is not a run-time trap.
    """

    cli_exit_status = 65


class BuildLimitExceeded(SandboxError):
    """Building the sandbox went past its build budget: ``limit`` names the option
    (``max_module_size``, ``max_functions``, ``build_timeout`` or ``build_memory_limit``),
    ``attempted`` what the module or its compile needed (bytes, functions, seconds; None when
    unknown: a compile stopped at its memory limit) and ``cap`` the limit.

    Raised at build time, before the module ever runs; nothing is cached. Not raised for a
    malformed module (``InvalidModule``) nor for a guest past a limit while running
    (``ResourceLimitExceeded``).
    """

    cli_exit_status = 65

    def __init__(self, limit: str, attempted: float | None, cap: float) -> None:
        super().__init__(f"Build limit exceeded: {limit} ({_build_detail(limit, attempted, cap)})")
        self.limit = limit
        self.attempted = attempted
        self.cap = cap


def _build_detail(limit: str, attempted: float | None, cap: float) -> str:
    if limit == "max_module_size":
        return f"the module is {attempted:.0f} bytes, limit {cap:.0f}"
    if limit == "max_functions":
        return f"the module defines {attempted:.0f} functions, limit {cap:.0f}"
    if limit == "build_timeout":
        spent = "" if attempted is None else f" after {attempted:.1f} s"
        return f"compiling was stopped{spent}, limit {cap:g} s"
    return f"compiling needed more than {cap:.0f} bytes of memory"


class CompilationError(SandboxError):
    """A guest source file failed to compile to WebAssembly; ``diagnostics`` holds the output."""

    cli_exit_status = 65

    def __init__(self, message: str, diagnostics: str = "") -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class ToolchainNotFound(CompilationError):
    """What a source language needs is not installed: the compiler of a C or Rust source
    (the message names the Debian packages that provide it), or the runtime package of a
    Python or JavaScript guest. Not raised for a source that fails to compile."""

    cli_exit_status = 69  # EX_UNAVAILABLE: a required program is missing


class SnapshotError(SandboxError):
    """A guest's state cannot be captured (it holds what a snapshot cannot carry: an open
    network connection, a file it opened, a writable host directory) or a saved state cannot
    be loaded (another runtime or configuration, a truncated or altered file). Nothing is
    changed: the session or sandbox goes on as before."""

    cli_exit_status = 65


class FunctionNotFound(SandboxError):
    """The module exports no function with that name (``available`` lists the ones it has).
    ``run()`` of a module without ``_start`` (a library, not a WASI command) raises it for
    ``_start``, its message pointing to ``call()``."""

    cli_exit_status = 65

    def __init__(
        self, name: str, available: tuple[str, ...] = (), message: str | None = None
    ) -> None:
        hint = f"; exported functions: {self.listed(available)}" if available else ""
        super().__init__(message or f"Function not found: {name!r}{hint}")
        self.name = name
        self.available = available

    @staticmethod
    def listed(names: tuple[str, ...]) -> str:
        """``names`` for a message: the first 20, then how many more."""
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        return ", ".join(names[:20]) + more


class InvalidArguments(SandboxError, TypeError):
    """The arguments given to ``call`` do not match the exported function's signature."""

    cli_exit_status = 65


class Overflow(SandboxError):
    """A job was refused or dropped because the balancer's queue was full (or it closed)."""

    cli_exit_status = 75  # EX_TEMPFAIL: try again later


class Timeout(SandboxError):
    """A job did not finish within the balancer's ``timeout_duration`` (queued too long, or
    its guest was stopped: then the guest's ``ExecutionTimeout`` is the ``__cause__``)."""

    cli_exit_status = 124  # as GNU timeout(1)


class ExecutionError(SandboxError):
    """The guest ran and did not finish normally.

    ``report`` holds what it used (a ``ResourceReport``, when known); ``stdout`` and
    ``stderr`` what it had written before it stopped.
    """

    report: Any = None
    stdout: bytes = b""
    stderr: bytes = b""
    cli_exit_status = 71


class ResourceLimitExceeded(ExecutionError):
    """The guest was stopped because it reached one of its resource limits."""


class MemoryLimitExceeded(ResourceLimitExceeded):
    """Linear memory would have grown past ``limit`` bytes (``used`` is the size it asked for).

    ``kind`` is ``"total"`` for the memory cap, ``"growth"`` for the per-grow cap
    (``memory_growth_limit``), ``"initial"`` when the module's initial memory is already
    larger than the cap (raised at build time).
    """

    cli_exit_status = 120

    def __init__(self, used: int, limit: int, kind: str = "total") -> None:
        from ._units import format_size  # noqa: PLC0415 - _units imports this module

        tried, cap = format_size(used), format_size(limit)
        if kind == "growth":
            detail = f"one memory.grow tried to allocate {tried}; memory_growth_limit is {cap}"
        elif kind == "initial":
            detail = f"the module's initial memory, {tried}, is larger than memory_bytes, {cap}"
        else:
            detail = f"tried to allocate {tried}; the limit is {cap}"
        super().__init__(f"Memory limit exceeded: used {used}, limit {limit} ({detail})")
        self.used = used
        self.limit = limit
        self.kind = kind


class FuelExhausted(ResourceLimitExceeded):
    """The call consumed its whole fuel budget (``used`` equals ``limit``)."""

    cli_exit_status = 121

    def __init__(self, used: int, limit: int) -> None:
        super().__init__(f"Fuel exhausted: used {used}, limit {limit}")
        self.used = used
        self.limit = limit


def format_duration(duration: timedelta) -> str:
    """Render a duration the way error messages show it: ``30 seconds``, ``1.5 seconds``."""
    seconds = duration.total_seconds()
    if seconds == int(seconds):
        count = int(seconds)
        return f"{count} second" if count == 1 else f"{count} seconds"
    return f"{seconds:g} seconds"


class ExecutionTimeout(ResourceLimitExceeded):
    """The guest ran past its wall-clock ``timeout``; ``elapsed`` is the time it actually ran."""

    cli_exit_status = 124  # as GNU timeout(1)

    def __init__(self, timeout: timedelta, elapsed: timedelta | None = None) -> None:
        super().__init__(f"Execution timeout after {format_duration(timeout)}")
        self.timeout = timeout
        self.elapsed = elapsed


class IoLimitExceeded(ResourceLimitExceeded):
    """With ``strict_io_limits``, the first file-system limit the guest reached: ``limit`` is
    the ResourceLimits field, ``attempted`` what the operation needed, ``cap`` the limit.
    Without strict mode the guest gets an errno instead and the report records the hit."""

    cli_exit_status = 122

    def __init__(self, limit: str, attempted: int, cap: int) -> None:
        super().__init__(f"I/O limit exceeded: {limit} (attempted {attempted}, limit {cap})")
        self.limit = limit
        self.attempted = attempted
        self.cap = cap


class NetworkLimitExceeded(ResourceLimitExceeded):
    """A network limit was reached in strict network mode (``limit``: the ResourceLimits
    field, ``attempted``, ``cap``; for ``connect_timeout`` and ``network_timeout`` the time
    waited and the limit, in milliseconds). Without strict mode the guest's operation fails
    instead."""

    cli_exit_status = 123

    def __init__(self, limit: str, attempted: int, cap: int) -> None:
        if limit.endswith("_timeout"):
            detail = f"waited {attempted} ms, limit {cap} ms"
        else:
            detail = f"attempted {attempted}, limit {cap}"
        super().__init__(f"Network limit exceeded: {limit} ({detail})")
        self.limit = limit
        self.attempted = attempted
        self.cap = cap


class HostCallLimitExceeded(ResourceLimitExceeded):
    """The guest called host functions more than ``max_host_calls`` times in one execution
    (``attempted``: the call refused, counting from 1; ``cap``: the limit). Not an error of a
    host function itself: those are raised in the guest, as its own exceptions."""

    cli_exit_status = 125

    def __init__(self, attempted: int, cap: int) -> None:
        super().__init__(
            f"Host call limit exceeded: max_host_calls (attempted {attempted}, limit {cap})"
        )
        self.limit = "max_host_calls"
        self.attempted = attempted
        self.cap = cap


class SecurityViolation(ExecutionError):
    """The network policy refused a connection, in strict network mode (``endpoint``: the
    ``host:port`` the guest asked for; ``detail``: which rule refused it and how to permit
    it, e.g. ``not allowed by the network policy: allow 'host:port' to permit it``)."""

    cli_exit_status = 126  # as a shell's "permission denied"

    def __init__(self, endpoint: str, detail: str | None = None) -> None:
        message = f"Security violation: Unauthorized network access to {endpoint!r}"
        super().__init__(message if detail is None else f"{message} ({detail})")
        self.endpoint = endpoint
        self.detail = detail


class GuestTrap(ExecutionError):
    """The guest hit a WebAssembly trap. ``trap_code`` names it (``None`` if wasmtime gave none).

    Subclasses exist for the common traps; the rest are plain ``GuestTrap``.
    ``wasm_backtrace`` is wasmtime's text of the trap with the guest's frames.
    """

    cli_exit_status = 70  # EX_SOFTWARE: the guest's program failed
    default_code: str | None = None

    def __init__(
        self, message: str, trap_code: str | None = None, wasm_backtrace: str = ""
    ) -> None:
        super().__init__(message)
        self.trap_code = trap_code if trap_code is not None else self.default_code
        self.wasm_backtrace = wasm_backtrace


class StackOverflow(GuestTrap):
    """The guest's call stack exceeded the engine's maximum stack size."""

    default_code = "stack_overflow"


class MemoryAccessOutOfBounds(GuestTrap):
    """The guest read or wrote linear memory outside its bounds."""

    default_code = "memory_out_of_bounds"


class UnreachableExecuted(GuestTrap):
    """The guest executed ``unreachable`` (Rust panics and C ``abort()`` end this way)."""

    default_code = "unreachable"


class IntegerDivisionByZero(GuestTrap):
    """The guest divided an integer by zero."""

    default_code = "integer_division_by_zero"


class IntegerOverflow(GuestTrap):
    """The guest's integer division overflowed (``INT_MIN / -1``)."""

    default_code = "integer_overflow"


class InvalidConversionToInteger(GuestTrap):
    """The guest converted a NaN or out-of-range float to an integer."""

    default_code = "bad_conversion_to_integer"


class TableAccessOutOfBounds(GuestTrap):
    """The guest accessed a table outside its bounds."""

    default_code = "table_out_of_bounds"


class IndirectCallError(GuestTrap):
    """An indirect call hit a null entry or a function of the wrong signature."""

    default_code = "indirect_call"


class GuestError(ExecutionError):
    """The guest reported an error instead of a value: a data function's error, or the
    exception a Python or JavaScript guest raised. ``type`` and ``guest_message`` as the guest
    gave them, ``guest_traceback`` when it sent one (a Python or JavaScript stack). Not raised
    for traps (``GuestTrap``) or limits."""

    cli_exit_status = 1  # as python exits on an uncaught exception

    def __init__(self, type_name: str, message: str, guest_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type = type_name
        self.guest_message = message
        self.guest_traceback = guest_traceback


class GuestExit(ExecutionError):
    """``call()`` of a function that ended the guest with ``proc_exit`` (``exit_code``).

    ``run()`` never raises this: there an exit is a result with an exit code.
    """

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"Guest exited with code {exit_code} during the call")
        self.exit_code = exit_code
        self.cli_exit_status = exit_code & 0xFF  # the command exits as the guest did


class ExecutionCancelled(ExecutionError):
    """The host cancelled the execution (for example, its asyncio task was cancelled)."""

    cli_exit_status = 130  # as an interrupted command (128 + SIGINT)


class SessionLost(ExecutionError):
    """A session's state could not be brought back after a statement failed (on a limit, or
    by exiting the interpreter): an earlier statement had an effect outside the sandbox (a
    network connection, a change to a writable host directory) that a replay would repeat,
    or the replay did not reproduce the history, tried such an effect, or did not finish
    within ``replay_timeout``. The session is closed; the statement's own error is chained as
    ``__cause__``."""

    cli_exit_status = 75  # EX_TEMPFAIL: a new session may succeed


class HostError(ExecutionError):
    """An unexpected failure inside wasm_sandbox's host layer: a bug of ours, never the guest's.

    The original exception is chained as ``__cause__``.
    """

    cli_exit_status = 71  # EX_SOFTWARE: internal error

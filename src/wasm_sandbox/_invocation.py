"""The internal call API: one frozen ``Invocation`` names what to run on a sandbox (a call
or a run, its inputs, an extra deadline), and a ``SandboxCore`` runs it.

The public classes are façades over internal cores with public method names: a
``WasmSandbox`` keeps its call machinery in a ``SandboxCore`` (``prepare``, ``invoke``,
``new_context``, ``turn``, ``metered``, ``plan``), a ``Session`` its statements and replay in
a ``SessionCore``. Code of this package that is handed a façade (the asyncio twins, the
load balancer, the process and Ray backends, sessions) reads its core through
``sandbox_core`` or ``session_core`` (and ``session_of`` puts a façade over a session core
made otherwise: a fork, a loaded file), the only places that reach into a façade's private
attribute, and from then on calls named methods, never the façade's privates. The façades
show no internal method, so the public API is what ``__init__`` exports and nothing more.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple, TypeVar

from ._errors import ExecutionCancelled

if TYPE_CHECKING:
    from ._config._limits import ResourceLimits
    from ._sandbox import SandboxCore, WasmSandbox
    from ._session import Session, SessionCore
    from ._wasi._context import WasiContext

__all__ = ["Invocation", "in_thread", "sandbox_core", "session_core", "session_of"]

T = TypeVar("T")


class Invocation(NamedTuple):
    """One request to a sandbox (an immutable tuple: one is made per call, on its hot path;
    build it with keywords)."""

    kind: Literal["call", "run"]
    """``call``: the function ``export`` with ``args``/``kwargs``; ``run``: the command."""
    export: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None
    argv: Sequence[str] | None = None
    """For a run: the arguments after argv[0] (None: the builder's)."""
    stdin: bytes | str | BinaryIO | None = None
    """For a run: standard input (None: the builder's)."""
    env: Mapping[str, str] | None = None
    """For a run: the environment (None: the builder's)."""
    deadline: float | None = None
    """A ``time.monotonic()`` value the execution must end by, on top of its time limit
    (a balancer's timeout, a backend's): composed with the limits by one rule."""
    limits: ResourceLimits | None = None
    """Limits for this execution instead of the sandbox's (a driver's auto-scaler chose them
    for a job in a worker process)."""

    @staticmethod
    def call(
        export: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> Invocation:
        """A call of ``export``."""
        return Invocation("call", export, args, kwargs, None, None, None, deadline)


def sandbox_core(sandbox: WasmSandbox) -> SandboxCore:
    """The internal call API of ``sandbox``."""
    return sandbox._core  # one of the two sanctioned reaches (module notes)


def session_core(session: Session) -> SessionCore:
    """The statements and replay machinery of ``session``."""
    return session._core  # one of the two sanctioned reaches (module notes)


def session_of(core: SessionCore) -> Session:
    """A ``Session`` façade over ``core`` (a fork's, a loaded file's)."""
    from ._session import Session  # noqa: PLC0415 - _session imports this module

    session = Session.__new__(Session)
    session._core = core  # one of the sanctioned reaches (module notes)
    return session


async def in_thread(
    ctx: WasiContext,
    work: Callable[[], T],
    *expected: type[BaseException],
    executor: concurrent.futures.Executor | None = None,
) -> T:
    """The asyncio twins' one rule: run ``work`` (an execution in ``ctx``) on a worker
    thread (of ``executor``, else the event loop's default one); its time limit counts from
    when the thread takes it, not from when it was queued. When the awaiting task is
    cancelled, stop the guest, wait until it has stopped (its ``ExecutionCancelled`` and the
    ``expected`` errors are the cancellation's own), then raise ``CancelledError``."""
    import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

    def begin_then_work() -> T:
        ctx.begin()
        return work()

    loop = asyncio.get_running_loop()
    run = functools.partial(contextvars.copy_context().run, begin_then_work)
    task = asyncio.ensure_future(loop.run_in_executor(executor, run))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        ctx.cancel()
        with contextlib.suppress(ExecutionCancelled, *expected):
            await task
        raise

"""Sessions: one guest interpreter kept alive across statements.

A statement that fails on a limit (timeout, fuel, memory cap, a trap, cancellation) leaves the
interpreter in whatever state it reached, possibly mid-update. The session then goes back to
the state before that statement by *replay*: the instance is dropped, a fresh one is made from
the pre-initialised runtime (about a millisecond), and every earlier statement is run again in
order, its output discarded. The statement's own error is then raised; the session goes on.

A replay reproduces what the statements compute from their inputs. It cannot bring back what
they did outside the interpreter: a session that has written through a writable host mount is
not replayed (``SessionLost``) rather than writing the same files twice. In-memory mounts are
per instance, so their content is rebuilt by the replay. Values drawn from the clock or from
randomness are drawn again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _errors as e
from ._data import encode_args, encode_kwargs
from ._execution import Execution, Outcome
from ._limits import _check_duration
from ._report import MonitoredResult
from ._turns import ScriptTurn
from ._wasi._context import WasiContext

if TYPE_CHECKING:
    from ._sandbox import WasmSandbox

__all__ = ["AsyncSession", "Session"]
T = TypeVar("T")

# Failures after which the interpreter cannot be trusted: its statement stopped mid-way.
_RESTORE_ON = (e.ResourceLimitExceeded, e.GuestTrap, e.ExecutionCancelled, e.HostError)


@dataclass(frozen=True, slots=True)
class _Statement:
    turn: ScriptTurn
    failed: bool  # it raised in the guest (its partial effects are part of the state)
    touched_files: bool  # it made file-system calls


class Session:
    """One interpreter (Python or JavaScript) kept alive across ``exec``, ``eval`` and
    ``call``.

    Globals persist between statements (in JavaScript, top-level ``let``/``const`` too).
    Each statement runs under the sandbox's per-call limits (timeout, fuel, output cap); the
    memory cap and the file limits apply to the session as a whole, since its state lives in
    one instance, and so does ``timeout`` when given: a wall-clock budget for the whole
    session from its opening (each statement's deadline is the earlier of its own and the
    session's; once it has passed, statements raise ``ExecutionTimeout``). A statement that
    fails on a limit raises its error and the session continues from the state it had before
    that statement (see the module notes: replay). Use as a context manager, or call
    ``close()``.
    Thread-safe: statements of one session run one at a time.
    """

    __module__ = "wasm_sandbox"

    def __init__(
        self, sandbox: WasmSandbox, timeout: timedelta | float | str | None = None
    ) -> None:
        self._budget = None if timeout is None else _check_duration("timeout", timeout)
        self._deadline = (
            None if self._budget is None else time.monotonic() + self._budget.total_seconds()
        )
        script = sandbox._script
        if script is None:
            raise e.ConfigurationError(
                "sessions need a Python or JavaScript guest (a .py or .js source, or "
                "language('python') / language('javascript'))"
            )
        self._sandbox = sandbox
        self._execution = Execution(sandbox._execution.plan, keep_instance=True)
        self._lock = threading.RLock()
        self._log: list[_Statement] = []
        self._closed = False
        self._restores = 0
        self._writable_host = any(
            not m.in_memory and not m.read_only for m in sandbox._execution.plan.mounts
        )
        self._load = sandbox._turn("load", script.text)
        try:
            self._turn(self._load)
        except BaseException:
            self.close()
            raise

    # --- statements ---------------------------------------------------------------------

    def exec(self, code: str) -> MonitoredResult:
        """Run statements in the session's globals; returns their output and report."""
        return self._exec(code, None)

    def _exec(self, code: str, ctx: WasiContext | None) -> MonitoredResult:
        outcome = self._turn(self._sandbox._turn("exec", _code(code)), ctx)
        return MonitoredResult(
            value=None,
            resource_report=outcome.report,
            stdout=bytes(outcome.ctx.stdout.data),
            stderr=bytes(outcome.ctx.stderr.data),
        )

    def eval(self, expression: str) -> Any:
        """The value of ``expression`` in the session's globals (JSON values and bytes)."""
        return self._eval(expression, None)

    def _eval(self, expression: str, ctx: WasiContext | None) -> Any:
        return self._turn(self._sandbox._turn("eval", _code(expression)), ctx).value

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the session's function ``name`` with JSON arguments; returns its value."""
        return self._call(name, args, kwargs, None)

    def _call(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], ctx: WasiContext | None
    ) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"the function name must be a str, got {type(name).__name__}")
        turn = self._sandbox._turn(
            "scall", fn=name, args=encode_args(args).decode(), kwargs=encode_kwargs(kwargs).decode()
        )
        return self._turn(turn, ctx).value

    # --- life ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the session was lost)."""
        return self._closed

    @property
    def restores(self) -> int:
        """How many times a failed statement was rolled back by replay."""
        return self._restores

    @property
    def statements(self) -> int:
        """Statements in the session's history (what a restore replays)."""
        return len(self._log)

    def reset(self) -> None:
        """Forget every statement: back to the state right after the source was loaded."""
        with self._lock:
            self._check_open()
            self._execution.close()
            self._log.clear()
            self._turn(self._load)

    def close(self) -> None:
        """Release the interpreter. Idempotent."""
        with self._lock:
            self._closed = True
            self._execution.close()
            self._log.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- machinery ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise e.ConfigurationError("this session is closed")

    def _turn(self, turn: ScriptTurn, ctx: WasiContext | None = None) -> Outcome:
        with self._lock:
            self._check_open()
            ctx = ctx if ctx is not None else self._sandbox._context()
            if self._deadline is not None:
                if time.monotonic() >= self._deadline:
                    assert self._budget is not None
                    raise e.ExecutionTimeout(self._budget)
                ctx.deadline = min(ctx.deadline or self._deadline, self._deadline)
            try:
                outcome = self._execution.execute(ctx, "turn", (), command=False, script=turn)
            except e.GuestError:
                self._log.append(_Statement(turn, True, ctx.file_calls > 0))
                raise
            except _RESTORE_ON as error:
                self._restore(error)
                raise
            except KeyboardInterrupt as error:
                self._restore(error)
                raise
            self._log.append(_Statement(turn, False, ctx.file_calls > 0))
            return outcome

    def _restore(self, error: BaseException) -> None:
        """Bring back the state before the failed statement, or close the session."""
        self._execution.close()
        if self._writable_host and any(s.touched_files for s in self._log):
            self.close()
            raise e.SessionLost(
                "the session cannot be restored after this failure: earlier statements used "
                "the file system with a writable host directory mounted, and replaying them "
                "would repeat their writes; the session is closed"
            ) from error
        for index, statement in enumerate(self._log):
            try:
                self._execution.execute(
                    self._sandbox._context(), "turn", (), command=False, script=statement.turn
                )
            except e.GuestError as replayed:
                if statement.failed:
                    continue
                self.close()
                raise e.SessionLost(
                    f"the session cannot be restored: replaying statement {index + 1} raised "
                    f"{replayed}; the session is closed"
                ) from error
            except e.SandboxError as replayed:
                self.close()
                raise e.SessionLost(
                    f"the session cannot be restored: replaying statement {index + 1} failed "
                    f"({replayed}); the session is closed"
                ) from error
        self._restores += 1


class AsyncSession:
    """The asyncio twin of ``Session``: the same methods as coroutines, each statement run in a
    worker thread. Cancelling the awaiting task stops the statement within a few milliseconds
    (the session is restored, as after any failed statement) and raises ``CancelledError``.
    """

    __module__ = "wasm_sandbox"

    def __init__(self, session: Session) -> None:
        self.sync = session

    async def _in_thread(self, work: Callable[[WasiContext], T]) -> T:
        ctx = self.sync._sandbox._context()
        task = asyncio.ensure_future(asyncio.to_thread(work, ctx))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            ctx.cancel()
            with contextlib.suppress(e.ExecutionCancelled, e.SessionLost):
                await task
            raise

    async def exec(self, code: str) -> MonitoredResult:
        """Coroutine twin of ``Session.exec``."""
        return await self._in_thread(lambda ctx: self.sync._exec(code, ctx))

    async def eval(self, expression: str) -> Any:
        """Coroutine twin of ``Session.eval``."""
        return await self._in_thread(lambda ctx: self.sync._eval(expression, ctx))

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Coroutine twin of ``Session.call``."""
        return await self._in_thread(lambda ctx: self.sync._call(name, args, kwargs, ctx))

    async def reset(self) -> None:
        """Coroutine twin of ``Session.reset``."""
        await asyncio.to_thread(self.sync.reset)

    async def close(self) -> None:
        """Release the interpreter. Idempotent."""
        await asyncio.to_thread(self.sync.close)

    @property
    def closed(self) -> bool:
        """True once the session is closed."""
        return self.sync.closed

    @property
    def restores(self) -> int:
        """How many times a failed statement was rolled back by replay."""
        return self.sync.restores

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _code(source: str) -> str:
    if not isinstance(source, str):
        raise TypeError(f"code must be a str, got {type(source).__name__}")
    return source

"""Sessions: one guest interpreter kept alive across statements.

A statement that fails on a limit (timeout, fuel, memory cap, a trap, cancellation) or that
exits the interpreter leaves it in whatever state it reached, possibly mid-update. The session
then goes back to the state before that statement by *replay*: the instance is dropped, a
fresh one is made from the pre-initialised runtime (about a millisecond), and every earlier
statement is run again in order, its output discarded. The statement's own error is then
raised; the session goes on.

A replay reproduces what the statements compute from their inputs. It never repeats what they
did outside the sandbox: the WASI layer records each *external effect* it carries out (a
network connection past the policy, a change to a writable host directory), and a session
whose history holds one is not replayed (``SessionLost``); a replayed statement that attempts
one it did not make the first time is stopped before it happens (``SessionLost`` too).
In-memory mounts are per instance, so their content is rebuilt by the replay. Values drawn
from the clock or from randomness are drawn again. The replay is bounded in time by
``replay_timeout`` (default: the per-statement timeout); one that does not fit is
``SessionLost``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from . import _errors as e
from ._config._limits import check_timeout
from ._execution._calls import TurnCall
from ._execution._execute import Execution, Outcome
from ._guests._data import encode_args, encode_kwargs
from ._guests._turns import ScriptTurn
from ._invocation import in_thread, sandbox_core, session_core
from ._observe._report import MonitoredResult, MonitoredResultLater
from ._wasi._context import StopReason, WasiContext

if TYPE_CHECKING:
    from ._sandbox import SandboxCore, WasmSandbox

__all__ = ["AsyncSession", "Session", "SessionCore"]
T = TypeVar("T")

# Failures after which the interpreter cannot be trusted: its statement stopped mid-way, or
# ended the interpreter (os._exit, sys.exit, QuickJS's std.exit: GuestExit).
_RESTORE_ON = (
    e.ResourceLimitExceeded, e.GuestTrap, e.ExecutionCancelled, e.HostError, e.GuestExit
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Statement:
    turn: ScriptTurn
    failed: bool  # it raised in the guest (its partial effects are part of the state)
    effects: tuple[str, ...]  # what it did outside the sandbox (the WASI layer's record)


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
    that statement (see the module notes: replay), or, when that cannot be done honestly,
    raises ``SessionLost`` and closes: when an earlier statement had an effect outside the
    sandbox (a network connection, a change to a writable host directory), or the replay
    does not finish within ``replay_timeout`` (default: the sandbox's per-statement timeout;
    unbounded only when neither is set). A statement that fails so returns within its own
    limit plus ``replay_timeout`` (plus a few milliseconds). Use as a context manager, or
    call ``close()``.
    Thread-safe: statements of one session run one at a time.
    """

    def __init__(
        self,
        sandbox: WasmSandbox,
        timeout: timedelta | float | str | None = None,
        replay_timeout: timedelta | float | str | None = None,
    ) -> None:
        self._core = SessionCore(sandbox_core(sandbox), timeout, replay_timeout)

    def exec(self, code: str) -> MonitoredResult:
        """Run statements in the session's globals; returns their output and report."""
        return self._core.exec(code)

    def eval(self, expression: str) -> Any:
        """The value of ``expression`` in the session's globals (JSON values and bytes)."""
        return self._core.eval(expression)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the session's function ``name`` with JSON arguments; returns its value."""
        return self._core.call(name, args, kwargs)

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the session was lost)."""
        return self._core.closed

    @property
    def restores(self) -> int:
        """How many times a failed statement was rolled back by replay."""
        return self._core.restores

    @property
    def statements(self) -> int:
        """Statements in the session's history (what a restore replays)."""
        return len(self._core.log)

    def reset(self) -> None:
        """Forget every statement: back to the state right after the source was loaded."""
        self._core.reset()

    def close(self) -> None:
        """Release the interpreter. Idempotent."""
        self._core.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SessionCore:
    """The machinery of one ``Session``: its interpreter, its history and the replay (see
    the module notes); what ``Session`` and ``AsyncSession`` call. Not public API."""

    def __init__(
        self,
        sandbox: SandboxCore,
        timeout: timedelta | float | str | None,
        replay_timeout: timedelta | float | str | None,
    ) -> None:
        self._budget = None if timeout is None else check_timeout("timeout", timeout)
        self._deadline = (
            None if self._budget is None else time.monotonic() + self._budget.total_seconds()
        )
        replay = (
            sandbox.plan.limits.execution_timeout
            if replay_timeout is None
            else check_timeout("replay_timeout", replay_timeout)
        )
        self._replay_seconds = None if replay is None else replay.total_seconds()
        script = sandbox.script
        if script is None:
            raise e.ConfigurationError(
                "sessions need a Python or JavaScript guest (a .py or .js source, or "
                "language('python') / language('javascript'))"
            )
        self._sandbox = sandbox
        self._execution = Execution(sandbox.plan, keep_instance=True)
        self._lock = threading.RLock()
        self.log: list[_Statement] = []
        self.closed = False
        self.restores = 0
        self._load = sandbox.turn("load", script.text)
        try:
            self._turn(self._load)
        except BaseException:
            self.close()
            raise

    # --- statements ---------------------------------------------------------------------

    def new_context(self) -> WasiContext:
        """A fresh context for one statement (an asyncio twin makes it first, to cancel)."""
        return self._sandbox.new_context()

    def exec(self, code: str, ctx: WasiContext | None = None) -> MonitoredResult:
        """Run statements (in ``ctx`` when given); their output and report."""
        outcome = self._turn(self._sandbox.turn("exec", _code(code), quiet=True), ctx)
        streams = outcome.ctx.streams
        return MonitoredResultLater(
            stdout=streams.stdout.data,
            stderr=streams.stderr.data,
            report_of=lambda: outcome.report,
        )

    def eval(self, expression: str, ctx: WasiContext | None = None) -> Any:
        """The value of ``expression`` (evaluated in ``ctx`` when given)."""
        return self._turn(self._sandbox.turn("eval", _code(expression)), ctx).value

    def call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: WasiContext | None = None,
    ) -> Any:
        """The value of the session's function ``name`` called (in ``ctx`` when given)."""
        if not isinstance(name, str):
            raise TypeError(f"the function name must be a str, got {type(name).__name__}")
        turn = self._sandbox.turn(
            "scall", fn=name, args=encode_args(args).decode(), kwargs=encode_kwargs(kwargs).decode()
        )
        return self._turn(turn, ctx).value

    # --- life ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every statement: back to the state right after the source was loaded."""
        with self._lock:
            self._check_open()
            self._execution.close()
            self.log.clear()
            self._turn(self._load)

    def close(self) -> None:
        """Release the interpreter. Idempotent."""
        with self._lock:
            self.closed = True
            self._execution.close()
            self.log.clear()

    # --- machinery ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise e.ConfigurationError("this session is closed")

    def _turn(self, turn: ScriptTurn, ctx: WasiContext | None = None) -> Outcome:
        with self._lock:
            self._check_open()
            ctx = ctx if ctx is not None else self._sandbox.new_context()
            if self._deadline is not None:
                if time.monotonic() >= self._deadline:
                    assert self._budget is not None
                    raise e.ExecutionTimeout(self._budget)
                ctx.cap_deadline(self._deadline)
            try:
                outcome = self._execution.execute(ctx, TurnCall(turn))
            except e.GuestError:
                self.log.append(_Statement(turn, True, tuple(ctx.counters.effects)))
                raise
            except _RESTORE_ON as error:
                self._restore(error)
                raise
            except KeyboardInterrupt as error:
                self._restore(error)
                raise
            self.log.append(_Statement(turn, False, tuple(ctx.counters.effects)))
            return outcome

    def _restore(self, error: BaseException) -> None:
        """Bring back the state before the failed statement, or close the session."""
        self._execution.close()
        for index, statement in enumerate(self.log):
            if statement.effects:
                self._lose(
                    error,
                    f"{_which(index)} had an effect outside the sandbox "
                    f"({statement.effects[0]}) that a replay would repeat",
                )
        replay = self._replay_seconds
        end = None if replay is None else time.monotonic() + replay
        try:
            for index, statement in enumerate(self.log):
                self._replay(index, statement, end, error)
        except e.SessionLost:
            raise
        except BaseException:
            self.close()  # interrupted half-way: the instance holds a partial history
            raise
        self.restores += 1

    def _replay(
        self, index: int, statement: _Statement, end: float | None, error: BaseException
    ) -> None:
        """Run one statement of the history again, output discarded, effects forbidden."""
        ctx = self._sandbox.new_context()
        ctx.effects_forbidden = True
        if end is not None:
            ctx.cap_deadline(end)
        try:
            self._execution.execute(ctx, TurnCall(statement.turn))
        except e.GuestError as replayed:
            if not statement.failed:
                self._lose(error, f"replaying {_which(index)} raised {replayed}")
        except e.SandboxError as replayed:
            if ctx.stop_state.reason == StopReason.EXTERNAL_EFFECT:
                why = f"replaying {_which(index)} attempted {ctx.counters.effects[-1]}"
            elif end is not None and time.monotonic() >= end - 0.001:
                why = (
                    f"the replay did not finish within replay_timeout ({self._replay_seconds:g} s)"
                )
            else:
                why = f"replaying {_which(index)} failed ({replayed})"
            self._lose(error, why)

    def _lose(self, error: BaseException, why: str) -> NoReturn:
        self.close()
        raise e.SessionLost(
            f"the session cannot be restored: {why}; the session is closed"
        ) from error


class AsyncSession:
    """The asyncio twin of ``Session``: the same methods as coroutines, each statement run in a
    worker thread. Cancelling the awaiting task stops the statement within a few milliseconds
    (the session is restored, as after any failed statement) and raises ``CancelledError``.
    """

    def __init__(self, session: Session) -> None:
        self.sync = session
        self._core = session_core(session)

    async def _in_thread(self, work: Callable[[WasiContext], T]) -> T:
        ctx = self._core.new_context()
        return await in_thread(ctx, lambda: work(ctx), e.SessionLost)

    async def exec(self, code: str) -> MonitoredResult:
        """Coroutine twin of ``Session.exec``."""
        return await self._in_thread(lambda ctx: self._core.exec(code, ctx))

    async def eval(self, expression: str) -> Any:
        """Coroutine twin of ``Session.eval``."""
        return await self._in_thread(lambda ctx: self._core.eval(expression, ctx))

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Coroutine twin of ``Session.call``."""
        return await self._in_thread(lambda ctx: self._core.call(name, args, kwargs, ctx))

    async def reset(self) -> None:
        """Coroutine twin of ``Session.reset``."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

        await asyncio.to_thread(self.sync.reset)

    async def close(self) -> None:
        """Release the interpreter. Idempotent."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

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


def _which(index: int) -> str:
    """How an error names the history's entry ``index`` (0 is the source, loaded first)."""
    return "the session's source" if index == 0 else f"statement {index}"


def _code(source: str) -> str:
    if not isinstance(source, str):
        raise TypeError(f"code must be a str, got {type(source).__name__}")
    return source

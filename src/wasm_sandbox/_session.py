"""Sessions: one guest interpreter kept alive across statements, checkpointed as it goes.

A statement that fails on a limit (timeout, fuel, memory cap, a trap, cancellation) or that
exits the interpreter leaves it in whatever state it reached, possibly mid-update. The session
then goes back to the state before that statement from a *checkpoint* (a snapshot of its
instance, ``_runtime._snapshot``) and a short *replay*: a hybrid. The session keeps one
automatic checkpoint, taken after its source is loaded, after every statement that had an
effect outside the sandbox, and whenever the statements since the last one (the *tail*) have
run for 20 ms in all (or ten times what taking the last checkpoint cost, if more) or number
200. A restore makes a new instance from the checkpoint and runs the tail again, its output
discarded; the statement's own error is then raised and the session goes on.

The tail never holds an effect (a network connection past the policy, a change to a writable
host directory: the WASI layer's record), so a restore never repeats one: the checkpoint
after such a statement carries its result. A checkpoint cannot be taken while the guest holds
an open file or connection (``SnapshotError``); the tail then grows from the last checkpoint
(the session's first instance when there is none), as a full replay did before checkpoints,
and a restore whose tail holds an effect is refused (``SessionLost``); a replayed statement
that attempts an effect it did not make the first time is stopped before it happens
(``SessionLost`` too). The replay is bounded in time by ``replay_timeout`` (default: the
per-statement timeout). Values drawn from the clock or from randomness are drawn again after
a restore (a checkpoint's instance reseeds its random streams).

Users take checkpoints of their own (``checkpoint``/``rollback``), fork a session (a new
instance from a snapshot of this one) and save one to a file that another process loads
(``_sessionfile``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

from . import _errors as e
from ._config._limits import check_timeout
from ._execution._calls import TurnCall
from ._execution._execute import Execution, Outcome
from ._guests._data import encode_args, encode_kwargs
from ._guests._turns import ScriptTurn
from ._invocation import in_thread, sandbox_core, session_core, session_of
from ._observe._code import CodeResult, code_error, decode_output
from ._observe._report import MonitoredResult, MonitoredResultLater
from ._runtime._snapshot import Snapshot
from ._sessionfile import read_session, write_session
from ._wasi._context import StopReason, WasiContext

if TYPE_CHECKING:
    from ._sandbox import SandboxCore, WasmSandbox

__all__ = ["AsyncSession", "Checkpoint", "Session", "SessionCore", "load_session"]
T = TypeVar("T")

# Failures after which the interpreter cannot be trusted: its statement stopped mid-way, or
# ended the interpreter (os._exit, sys.exit, QuickJS's std.exit: GuestExit).
_RESTORE_ON = (
    e.ResourceLimitExceeded, e.GuestTrap, e.ExecutionCancelled, e.HostError, e.GuestExit
)  # fmt: skip
# When the automatic checkpoint is taken again: the tail's run time, or its length, reaches
# these (the time bound rises to ten times the last capture's cost, which then stays <= 10%).
_TAIL_SECONDS = 0.02
_TAIL_STATEMENTS = 200
_CAPTURE_SHARE = 10


class _Statement(NamedTuple):
    """One entry of a session's tail (a tuple: one is made per statement)."""

    turn: ScriptTurn
    failed: bool  # it raised in the guest (its partial effects are part of the state)
    effects: tuple[str, ...]  # what it did outside the sandbox (the WASI layer's record)


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a session that does not load its source starts: a fork's or a file's state."""

    snapshot: Snapshot
    statements: int  # the history it stands after
    deadline: float | None = None  # a fork keeps its parent's wall-clock budget


class Checkpoint:
    """A session's whole state at one moment (``Session.checkpoint``), to go back to with
    ``Session.rollback``. The state (the interpreter's memory as far as it changed since
    boot, and the in-memory files: ``size`` bytes) is held by that session, for as long as
    this object lives and the session is open; no other session rolls back to it. Rolling
    back does not undo what statements did outside the sandbox."""

    __slots__ = ("__weakref__", "size", "statements")

    def __init__(self, statements: int, size: int) -> None:
        self.statements = statements
        """The session's history length when it was taken (``Session.statements``)."""
        self.size = size
        """Bytes of state it holds."""

    def __repr__(self) -> str:
        return f"<Checkpoint after {self.statements} statement(s), {self.size} bytes>"


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
    that statement (see the module notes: a checkpoint and a short replay, never repeating an
    effect outside the sandbox), or, when that cannot be done honestly, raises ``SessionLost``
    and closes: when no checkpoint could be taken after a statement that had an effect (the
    guest held a file or connection open), or the replay does not finish within
    ``replay_timeout`` (default: the sandbox's per-statement timeout; unbounded only when
    neither is set). A statement that fails so returns within its own limit plus
    ``replay_timeout`` (plus a few milliseconds). ``checkpoint``/``rollback``, ``fork`` and
    ``save`` (``WasmSandbox.load_session``) work on the same snapshots. Use as a context
    manager, or call ``close()``. Thread-safe: statements of one session run one at a time.
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

    def run_code(self, code: str) -> CodeResult:
        """Run ``code`` in the session's globals as a notebook cell: ``WasmSandbox.run_code``
        in this session. A ``CodeResult`` with what it printed and the value of its last
        statement when that is an expression; never raises for what the code does: an
        exception it raises is its ``error`` (its effects up to there stay, as for ``exec``),
        and so is a limit, an exit or a lost session (after a limit or an exit the session is
        back in its state before this code; ``closed`` tells whether it was lost)."""
        return self._core.run_code(code)

    def checkpoint(self) -> Checkpoint:
        """The session's state now, to ``rollback`` to later (``SnapshotError`` while the
        guest holds a file or a network connection open; the session goes on either way)."""
        return self._core.checkpoint()

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Go back to ``checkpoint`` (one of this session's): the statements since are
        forgotten (``statements`` is the checkpoint's again); their effects outside the
        sandbox stay done."""
        self._core.rollback(checkpoint)

    def fork(self) -> Session:
        """A new, independent session in this one's state (its own interpreter: neither sees
        the other's later statements), with the same limits, budget and replay bound
        (``SnapshotError`` while the guest holds a file or connection open)."""
        return session_of(self._core.fork())

    def save(self, path: str | Path) -> None:
        """Write the session's state to ``path`` (replaced whole), for
        ``WasmSandbox.load_session`` in this or another process. ``SnapshotError`` when it
        cannot be saved: a writable host directory is mounted, or the guest holds a file or a
        network connection open."""
        self._core.save(path)

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the session was lost)."""
        return self._core.closed

    @property
    def restores(self) -> int:
        """How many times a failed statement was rolled back."""
        return self._core.restores

    @property
    def statements(self) -> int:
        """Entries in the session's history: its source, then each statement run."""
        return self._core.statements

    def reset(self) -> None:
        """Forget every statement: back to the state right after the source was loaded (the
        source is run again)."""
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


def load_session(
    sandbox: SandboxCore,
    path: str | Path,
    timeout: timedelta | float | str | None,
    replay_timeout: timedelta | float | str | None,
) -> Session:
    """A session in the state the file ``path`` holds (``Session.save``), checked against
    ``sandbox`` (``SnapshotError`` for another runtime or configuration, or a damaged file)."""
    snapshot, statements = read_session(path, sandbox)
    try:
        core = SessionCore(sandbox, timeout, replay_timeout, _Origin(snapshot, statements))
    except e.MemoryLimitExceeded as exc:
        raise e.SnapshotError(
            f"cannot load the session in {path}: its memory does not fit this sandbox ({exc})"
        ) from None
    return session_of(core)


class SessionCore:
    """The machinery of one ``Session``: its interpreter, its checkpoint and tail, the
    restore (see the module notes); what ``Session`` and ``AsyncSession`` call. Not public
    API."""

    def __init__(
        self,
        sandbox: SandboxCore,
        timeout: timedelta | float | str | None,
        replay_timeout: timedelta | float | str | None,
        origin: _Origin | None = None,
    ) -> None:
        self._budget = None if timeout is None else check_timeout("timeout", timeout)
        self._deadline = (
            None if self._budget is None else time.monotonic() + self._budget.total_seconds()
        )
        if origin is not None and origin.deadline is not None:
            self._deadline = origin.deadline
        self._replay_timeout = replay_timeout
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
        # The states of this session's live checkpoints (freed with them, or at close).
        self._checkpoints: weakref.WeakKeyDictionary[Checkpoint, Snapshot] = (
            weakref.WeakKeyDictionary()
        )
        self.closed = False
        self.restores = 0
        self.statements = 0
        self._mark: Snapshot | None = None  # the automatic checkpoint (None: a new instance)
        self._marked_at = 0  # the history length it stands after
        self._tail: list[_Statement] = []  # the statements since
        self._tail_seconds = 0.0
        self._tail_bound = _TAIL_SECONDS
        self._unmarked: str | None = None  # why the last checkpoint attempt failed
        self._load = sandbox.turn("load", script.text)
        try:
            if origin is None:
                self._turn(self._load)
            else:
                self._rebuild(origin.snapshot, origin.statements)
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

    def run_code(self, code: str, ctx: WasiContext | None = None) -> CodeResult:
        """Run ``code`` as a notebook cell (in ``ctx`` when given): a ``CodeResult``."""
        try:
            outcome = self._turn(self._sandbox.turn("cell", _code(code)), ctx)
        except e.ExecutionError as exc:
            return CodeResult(
                stdout=decode_output(exc.stdout),
                stderr=decode_output(exc.stderr),
                error=code_error(exc),
                report=exc.report,
            )
        streams = outcome.ctx.streams
        return CodeResult(
            stdout=decode_output(streams.stdout.data),
            stderr=decode_output(streams.stderr.data),
            result=outcome.value,
            report=outcome.report,
        )

    # --- checkpoints, forks, files ------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The state now, as a ``Checkpoint`` of this session."""
        with self._lock:
            self._check_open()
            snapshot = self._capture()
            checkpoint = Checkpoint(self.statements, snapshot.size)
            self._checkpoints[checkpoint] = snapshot
            return checkpoint

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Back to ``checkpoint``: its state, its history length."""
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"expected a Checkpoint, got {type(checkpoint).__name__}")
        with self._lock:
            self._check_open()
            snapshot = self._checkpoints.get(checkpoint)
            if snapshot is None:
                raise e.ConfigurationError(
                    "this checkpoint was taken by another session: a session rolls back only "
                    "to its own checkpoints (fork() a session to continue from its state)"
                )
            self._rebuild(snapshot, checkpoint.statements)

    def fork(self) -> SessionCore:
        """A new core in this state, with this one's limits, deadline and replay bound."""
        with self._lock:
            self._check_open()
            origin = _Origin(self._capture(), self.statements, self._deadline)
            return SessionCore(self._sandbox, self._budget, self._replay_timeout, origin)

    def save(self, path: str | Path) -> None:
        """Write the state now to ``path``."""
        with self._lock:
            self._check_open()
            write_session(path, self._sandbox, self._capture, self.statements)

    # --- life ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every statement: back to the state right after the source was loaded."""
        with self._lock:
            self._check_open()
            self._execution.start_from(self._sandbox.plan.start)
            self._forget(None, 0)
            self._turn(self._load)

    def close(self) -> None:
        """Release the interpreter. Idempotent."""
        with self._lock:
            self.closed = True
            self._execution.close()
            self._forget(None, 0)
            self._checkpoints.clear()

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
                self._record(turn, True, ctx)
                raise
            except _RESTORE_ON as error:
                self._restore(error)
                raise
            except KeyboardInterrupt as error:
                self._restore(error)
                raise
            self._record(turn, False, ctx)
            return outcome

    def _record(self, turn: ScriptTurn, failed: bool, ctx: WasiContext) -> None:
        """Add a statement that ran to the history; take the automatic checkpoint when it
        had an effect or the tail has reached its bound."""
        recorded = ctx.counters.effects
        effects = tuple(recorded) if recorded else ()
        self.statements += 1
        self._tail.append(_Statement(turn, failed, effects))
        self._tail_seconds += time.monotonic() - ctx.start
        if (
            effects
            or self._mark is None  # none yet: after the source is loaded, or none could be
            or self._tail_seconds >= self._tail_bound
            or len(self._tail) >= _TAIL_STATEMENTS
        ):
            started = time.monotonic()
            try:
                self._capture()
            except e.SnapshotError as exc:
                self._unmarked = exc.message  # the tail goes on from the last checkpoint
                return
            self._tail_bound = max(_TAIL_SECONDS, _CAPTURE_SHARE * (time.monotonic() - started))

    def _capture(self) -> Snapshot:
        """A snapshot of the state now, which becomes the automatic checkpoint."""
        snapshot = self._execution.capture()
        self._forget(snapshot, self.statements)
        return snapshot

    def _forget(self, mark: Snapshot | None, statements: int) -> None:
        """Make ``mark`` (taken after ``statements`` entries) the automatic checkpoint."""
        self._mark, self._marked_at, self.statements = mark, statements, statements
        self._tail.clear()
        self._tail_seconds = 0.0
        self._unmarked = None

    def _rebuild(self, snapshot: Snapshot, statements: int) -> None:
        """Continue from ``snapshot`` (after ``statements`` entries), in an instance made now."""
        self._execution.start_from(snapshot, self._sandbox.new_context())
        self._forget(snapshot, statements)

    def _restore(self, error: BaseException) -> None:
        """Bring back the state before the failed statement, or close the session."""
        base = self._sandbox.plan.start if self._mark is None else self._mark
        self._execution.close()
        for index, statement in enumerate(self._tail, self._marked_at):
            if statement.effects:
                why = f"; no checkpoint could be taken after it ({self._unmarked})"
                self._lose(
                    error,
                    f"{_which(index)} had an effect outside the sandbox "
                    f"({statement.effects[0]}) that a replay would repeat"
                    + (why if self._unmarked else ""),
                )
        replay = self._replay_seconds
        end = None if replay is None else time.monotonic() + replay
        try:
            self._execution.start_from(base, self._sandbox.new_context())
            for index, statement in enumerate(self._tail, self._marked_at):
                self._replay(index, statement, end, error)
        except e.SessionLost:
            raise
        except e.SandboxError as failed:
            self._lose(error, f"its checkpoint could not be restored ({failed})")
        except BaseException:
            self.close()  # interrupted half-way: the instance holds a partial history
            raise
        self.restores += 1

    def _replay(
        self, index: int, statement: _Statement, end: float | None, error: BaseException
    ) -> None:
        """Run one statement of the tail again, output discarded, effects forbidden."""
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

    async def run_code(self, code: str) -> CodeResult:
        """Coroutine twin of ``Session.run_code`` (cancelling the task stops the code,
        restores the session and raises ``CancelledError``)."""
        return await self._in_thread(lambda ctx: self._core.run_code(code, ctx))

    async def checkpoint(self) -> Checkpoint:
        """Coroutine twin of ``Session.checkpoint``."""
        return await _to_thread(self.sync.checkpoint)

    async def rollback(self, checkpoint: Checkpoint) -> None:
        """Coroutine twin of ``Session.rollback``."""
        await _to_thread(lambda: self.sync.rollback(checkpoint))

    async def fork(self) -> AsyncSession:
        """Coroutine twin of ``Session.fork``: an ``AsyncSession``."""
        return AsyncSession(await _to_thread(self.sync.fork))

    async def save(self, path: str | Path) -> None:
        """Coroutine twin of ``Session.save``."""
        await _to_thread(lambda: self.sync.save(path))

    async def reset(self) -> None:
        """Coroutine twin of ``Session.reset``."""
        await _to_thread(self.sync.reset)

    async def close(self) -> None:
        """Release the interpreter. Idempotent."""
        await _to_thread(self.sync.close)

    @property
    def closed(self) -> bool:
        """True once the session is closed."""
        return self.sync.closed

    @property
    def restores(self) -> int:
        """How many times a failed statement was rolled back."""
        return self.sync.restores

    @property
    def statements(self) -> int:
        """Entries in the session's history (``Session.statements``)."""
        return self.sync.statements

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _to_thread(work: Callable[[], T]) -> T:
    import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

    return await asyncio.to_thread(work)


def _which(index: int) -> str:
    """How an error names the history's entry ``index`` (0 is the source, loaded first)."""
    return "the session's source" if index == 0 else f"statement {index}"


def _code(source: str) -> str:
    if not isinstance(source, str):
        raise TypeError(f"code must be a str, got {type(source).__name__}")
    return source

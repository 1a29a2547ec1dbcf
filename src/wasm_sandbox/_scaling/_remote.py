"""Jobs run in other processes (``ProcessBackend``, ``RayBackend``): the sandbox is built
from its ``SandboxConfig`` once per worker process, and the job returns its value or its
error object, so results and errors are the same as local ones.

``ProcessBackend`` keeps its own worker processes, each with its own pipe and running one job
at a time, rather than a ``concurrent.futures.ProcessPoolExecutor``: that pool treats the
death of any worker as the death of the pool and fails every job in flight on the others.
Here a death is seen only by the job that was using that worker, and only that worker is
replaced.

A sandbox's ``AutoScaler`` stays in the driver (the process that submits the jobs): it
chooses each job's limits, the worker runs the job under them and reports what it used, and
the driver feeds that back to the scaler (``run_job``); the configuration travels without it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, ExecutionTimeout, HostError, MemoryLimitExceeded
from .._invocation import Invocation, sandbox_core
from .._sandbox import WasmSandbox
from .._units import count_option

if TYPE_CHECKING:
    from .._builder import SandboxConfig
    from .._config._limits import ResourceLimits

__all__ = ["ProcessBackend", "SandboxKeys", "remote_call", "run_job", "worker_main"]

_SANDBOXES: dict[str, Any] = {}  # per worker process (Ray or ours): key -> WasmSandbox

Usage = tuple[int, float]  # what a scaled job used: peak memory bytes, seconds
Answer = tuple[bool, Any, Usage | None]  # (True, value) or (False, the error), and usage
Ship = Callable[["SandboxConfig", "ResourceLimits | None", float | None], Answer]


def remote_call(
    key: str, config: SandboxConfig, function: str, args: tuple[Any, ...],
    kwargs: dict[str, Any], seconds: float | None, limits: ResourceLimits | None = None,
    before_build: Callable[[], None] | None = None,
) -> Answer:  # fmt: skip
    """One job in a worker process (Ray or local): (True, value) or (False, the error); with
    ``limits`` (chosen by the driver's auto-scaler), run under them and report the usage.
    ``before_build`` runs first when this process builds the sandbox (its first job)."""
    try:
        sandbox = _SANDBOXES.get(key)
        if sandbox is None:
            if before_build is not None:
                before_build()
            sandbox = _SANDBOXES[key] = WasmSandbox(config)
        end = None if seconds is None else time.monotonic() + seconds
        invocation = Invocation.call(function, args, kwargs, end)
        outcome = sandbox_core(sandbox).invoke(invocation._replace(limits=limits))
        return True, outcome.value, _usage(outcome.report if limits is not None else None)
    except Exception as exc:
        exc.__traceback__ = None
        return False, exc, _usage(getattr(exc, "report", None) if limits is not None else None)


def _usage(report: Any) -> Usage | None:
    if report is None:
        return None
    return report.peak_memory_bytes, report.execution_time.total_seconds()


def run_job(sandbox: Any, seconds: float | None, ship: Ship) -> Any:
    """A job's value (or its error raised) from ``ship(config, limits, seconds)``, which runs
    it in a worker. With an auto-scaler, the scaler stays here: it picks each attempt's
    limits, hears what the job used, and a memory-cap failure below its maximum is shipped
    once more at the raised cap, within the job's time (``seconds``)."""
    config = sandbox.config
    scaler = config.auto_scaler
    if scaler is None:
        ok, result, _ = ship(config, None, seconds)
        if ok:
            return result
        raise result
    shipped = dataclasses.replace(config, auto_scaler=None)
    end = None if seconds is None else time.monotonic() + seconds
    retried = False
    while True:
        limits = scaler.limits_for(config.limits)  # the module's floor is known since build
        left = None if end is None else max(0.0, end - time.monotonic())
        ok, result, usage = ship(shipped, limits, left)
        if ok:
            if usage is not None:
                scaler.observe(usage[0], timedelta(seconds=usage[1]))
            return result
        if isinstance(result, MemoryLimitExceeded) and not retried:
            retried = True
            if scaler.memory_exhausted():
                continue
        elif isinstance(result, ExecutionTimeout) and (end is None or time.monotonic() < end):
            scaler.timed_out()  # its own timeout, not the job's
        raise result


class SandboxKeys:
    """A key per sandbox, under which worker processes keep the sandbox they built."""

    def __init__(self) -> None:
        self._keys: dict[int, str] = {}
        self._held: list[Any] = []  # so an id is never reused for another sandbox
        self._lock = threading.Lock()

    def key(self, sandbox: Any, backend: str) -> str:
        """``sandbox``'s key; a kept-instance sandbox is refused (``backend`` names who)."""
        if sandbox.config.keep_instance:
            raise ConfigurationError(f"{backend} runs isolated calls only (no keep_instance)")
        with self._lock:
            key = self._keys.get(id(sandbox))
            if key is None:
                key = self._keys[id(sandbox)] = uuid.uuid4().hex
                self._held.append(sandbox)
            return key


class ProcessBackend:
    """Where a ``LoadBalancer`` runs its jobs instead of threads: worker processes, for crash
    isolation. Each worker runs one job at a time; a worker that dies (a fault in native
    code, a kill) ends only the job it ran, with ``HostError``, while jobs on the other
    workers go on to their own results, and a fresh worker replaces it for the next jobs.
    The configuration travels by pickling: callbacks must be picklable (module-level
    functions). Close it when done: running jobs finish, then every worker is stopped."""

    def __init__(self, max_workers: int | str | None = None) -> None:
        workers = count_option("max_workers", max_workers)
        if workers is not None and workers < 1:
            raise ConfigurationError(f"max_workers must be >= 1, got {workers}")
        self._max_workers = workers or os.cpu_count() or 1
        self._context = multiprocessing.get_context("spawn")
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()  # every live worker, idle or busy
        self._slots = 0  # workers live or being started
        self._closing = False
        self._keys = SandboxKeys()

    def run(
        self,
        sandbox: Any,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        seconds: float | None,
    ) -> Any:
        """Run one job in a worker process and return its value (or raise its error)."""
        key = self._keys.key(sandbox, "a process backend")

        def ship(config: SandboxConfig, limits: ResourceLimits | None, left: float | None) -> Any:
            try:
                job = pickle.dumps((key, config, function, args, kwargs, left, limits))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise _unsendable(config, exc) from None
            worker = self._acquire()
            answer: bytes | None = None
            try:
                answer = worker.run(job)
            except _WorkerDied as died:
                raise HostError(
                    f"the worker process running this job died ({died}); the job is lost, the "
                    "jobs on the other workers are not, and a fresh worker replaces it"
                ) from None
            finally:
                self._release(worker, answer is not None)
            try:
                return pickle.loads(answer)
            except Exception as exc:
                raise HostError(f"the worker's answer cannot be read: {exc!r}") from exc

        return run_job(sandbox, seconds, ship)

    def _acquire(self) -> _Worker:
        """An idle worker, or a new one when fewer than ``max_workers`` exist; else wait."""
        with self._cond:
            while self._closing or (not self._idle and self._slots >= self._max_workers):
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._slots += 1
        try:
            worker = _Worker(self._context)
        except BaseException:
            with self._cond:
                self._slots -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._workers.add(worker)
        return worker

    def _release(self, worker: _Worker, reusable: bool) -> None:
        """Back to the idle workers after an answered job; otherwise (it died, or the wait
        for it was interrupted mid-job) stop it and free its slot."""
        with self._cond:
            if reusable:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
                self._slots -= 1
            self._cond.notify_all()
        if not reusable:
            worker.stop(kill=True)  # dead, or mid-job: nothing of it is worth waiting for

    def _pids(self) -> list[int]:
        """The live workers' process ids (for tests)."""
        with self._cond:
            return [w.pid for w in self._workers]

    def close(self) -> None:
        """Let running jobs finish, then stop every worker process (waits for them). The
        backend can be used again afterwards: it starts new workers."""
        with self._cond:
            while self._closing:
                self._cond.wait()
            self._closing = True
            while len(self._idle) < self._slots:  # jobs running, or workers starting
                self._cond.wait()
            workers, self._idle = self._idle, []
            self._workers.clear()
            self._slots = 0
        try:
            for worker in workers:
                worker.stop()
        finally:
            with self._cond:
                self._closing = False
                self._cond.notify_all()

    def __enter__(self) -> ProcessBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _WorkerDied(Exception):
    """The worker process ended before answering (its exit status is the message)."""


class _Worker:
    """One worker process and this side of its pipe."""

    def __init__(self, context: Any) -> None:
        mine, theirs = context.Pipe()
        self.process = context.Process(
            target=worker_main, args=(theirs,), name="wasm-sandbox-worker", daemon=True
        )
        try:
            self.process.start()
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()  # only the worker holds its end: its death is an EOF here
        self.conn: multiprocessing.connection.Connection = mine
        self.pid: int = self.process.pid

    def run(self, job: bytes) -> bytes:
        """Send one pickled job and wait for its pickled answer; ``_WorkerDied`` if the
        process ends first (its pipe's EOF, or its sentinel: a process is never waited on
        through a pipe alone)."""
        try:
            self.conn.send_bytes(job)
            ready = multiprocessing.connection.wait([self.conn, self.process.sentinel])
            if self.conn not in ready and not self.conn.poll(0):
                raise EOFError
            return self.conn.recv_bytes()
        except (EOFError, OSError):
            raise _WorkerDied(self._status()) from None

    def _status(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is None:
            return "its pipe broke"
        if code >= 0:
            return f"exit status {code}"
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"

    def stop(self, kill: bool = False) -> None:
        """End the process and reap it: an idle worker exits at the EOF on its pipe (and is
        killed if it lingers); with ``kill``, at once."""
        self.conn.close()
        if not kill:
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.process.close()


def _unsendable(config: SandboxConfig, exc: Exception) -> ConfigurationError:
    """The error for a configuration that does not pickle, naming the host function that
    does not (they run in the worker process: one must be importable there)."""
    for function in config.host_functions:
        try:
            pickle.dumps(function)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            return ConfigurationError(
                f"host function {function.name!r} cannot be sent to a worker process, where "
                f"it would run ({err}): define it at the top level of a module"
            )
    return ConfigurationError(
        f"this sandbox's configuration cannot be sent to a worker process: {exc}"
    )


def worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: answer pickled jobs one at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            job = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(_answer(job))


def _answer(job: bytes) -> bytes:
    """The pickled ``(ok, value or error)`` of one pickled job."""
    try:
        key, config, function, args, kwargs, seconds, limits = pickle.loads(job)
    except Exception as exc:
        answer: Answer = (
            False,
            ConfigurationError(
                f"this sandbox's configuration cannot be sent to a worker process: {exc}"
            ),
            None,
        )
    else:
        answer = remote_call(key, config, function, args, kwargs, seconds, limits)
    try:
        return pickle.dumps(answer)
    except Exception as exc:
        return pickle.dumps(
            (False, HostError(f"the job's answer cannot be sent back: {exc!r}"), None)
        )

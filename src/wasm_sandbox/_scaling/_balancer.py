"""The load balancer: many executions of one sandbox spread over a pool of worker threads,
behind a bounded queue with an explicit overflow strategy.

Workers are threads: a guest running WebAssembly holds no GIL (wasmtime's calls release it),
so compute-heavy jobs run in parallel. Every submitted job ends with its value, its guest's
error, or an explicit ``Overflow`` / ``Timeout``: nothing is lost silently.
"""

from __future__ import annotations

import collections
import concurrent.futures
import enum
import os
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, ExecutionTimeout, Overflow, Timeout
from .._invocation import Invocation, sandbox_core
from .._units import count_value, duration_within

if TYPE_CHECKING:
    from .._sandbox import WasmSandbox
    from ._ray import RayBackend
    from ._remote import ProcessBackend

__all__ = ["BalancerStats", "LoadBalancer", "OverflowStrategy"]

_LATENCIES = 10_000  # latencies kept for the percentiles


class OverflowStrategy(enum.Enum):
    """What ``submit`` does when the queue is full."""

    DROP_OLDEST = "drop_oldest"
    """The oldest queued job ends with ``Overflow``; the new one is queued."""
    DROP_NEWEST = "drop_newest"
    """The new job ends with ``Overflow`` (its future fails; nothing is raised)."""
    REJECT = "reject"
    """``submit``/``execute`` raise ``Overflow`` at once."""
    BLOCK = "block"
    """``submit`` waits for room (at most ``timeout_duration``, then ``Timeout``)."""


@dataclass(frozen=True, slots=True)
class BalancerStats:
    """The balancer's counters and latencies (seconds, submission to completion)."""

    queued: int
    running: int
    completed: int
    failed: int
    dropped: int
    timed_out: int
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None


@dataclass(slots=True, eq=False)
class _Job:
    function: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    future: concurrent.futures.Future[Any]
    submitted: float
    deadline: float | None
    settled: bool = False  # its end is counted (and running no longer counts it)


class LoadBalancer:
    """Runs ``sandbox.call(function, ...)`` jobs on a pool of worker threads.

    ``LoadBalancer(sandbox).max_concurrent_executions(4).queue_size(100)
    .timeout_duration(timedelta(seconds=60)).overflow_strategy(OverflowStrategy.REJECT)``,
    then ``execute("fn", *args)`` (blocking), ``await execute_async(...)`` or ``submit(...)``
    (a ``concurrent.futures.Future``). Close it (or use ``with``) to stop the workers; jobs
    still queued then end with ``Overflow``.
    """

    def __init__(self, sandbox: WasmSandbox | None = None) -> None:
        self._sandbox = sandbox
        self._backend: RayBackend | ProcessBackend | None = None
        self._workers_wanted = max(1, os.cpu_count() or 1)
        self._capacity = 1000
        self._timeout: float | None = None
        self._strategy = OverflowStrategy.REJECT
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._running = self._completed = self._failed = self._dropped = self._timed_out = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=_LATENCIES)

    # --- configuration --------------------------------------------------------------------

    def backend(self, backend: RayBackend | ProcessBackend | None) -> LoadBalancer:
        """Run the jobs in worker processes (``ProcessBackend``, crash isolation) or on a
        Ray cluster (``RayBackend``) instead of in this process's threads; the worker threads
        then only wait for their jobs."""
        self._backend = backend
        return self

    def sandbox(self, sandbox: WasmSandbox) -> LoadBalancer:
        """The sandbox whose functions the jobs call."""
        self._sandbox = sandbox
        return self

    def max_concurrent_executions(self, count: int | str) -> LoadBalancer:
        """How many jobs run at once (worker threads; default: the CPU count)."""
        self._check_started()
        self._workers_wanted = _positive("max_concurrent_executions", count, 4096)
        return self

    def queue_size(self, size: int | str) -> LoadBalancer:
        """How many jobs may wait (an int or a count such as ``"10k"``; default 1000)."""
        self._capacity = _positive("queue_size", size, 10**7)
        return self

    def timeout_duration(self, timeout: timedelta | float | str | None) -> LoadBalancer:
        """Longest a job may take from submission to its end: a timedelta, seconds or a
        duration string (``"30s"``); None: no limit."""
        if timeout is None:
            self._timeout = None
        else:
            self._timeout = duration_within("timeout_duration", timeout).total_seconds()
        return self

    def overflow_strategy(self, strategy: OverflowStrategy) -> LoadBalancer:
        """What happens to a job submitted while the queue is full."""
        if not isinstance(strategy, OverflowStrategy):
            raise TypeError(f"expected an OverflowStrategy, got {type(strategy).__name__}")
        self._strategy = strategy
        return self

    # --- jobs ------------------------------------------------------------------------------

    def submit(self, function: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Queue one job; its future ends with the value or an error."""
        if self._sandbox is None:
            raise ConfigurationError("no sandbox: LoadBalancer(sandbox) or .sandbox(sandbox)")
        now = time.monotonic()
        deadline = None if self._timeout is None else now + self._timeout
        job = _Job(function, args, kwargs, concurrent.futures.Future(), now, deadline)
        with self._cond:
            if self._closed:
                raise Overflow("the load balancer is closed")
            self._start_workers()
            while len(self._queue) >= self._capacity:
                if not self._make_room(job):
                    return job.future
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def _make_room(self, job: _Job) -> bool:
        """With the lock held and the queue full: False when ``job`` was refused."""
        strategy = self._strategy
        if strategy is OverflowStrategy.REJECT:
            self._dropped += 1
            raise Overflow(f"the queue is full ({self._capacity} jobs): job refused")
        if strategy is OverflowStrategy.DROP_NEWEST:
            self._dropped += 1
            job.future.set_exception(Overflow(f"the queue is full ({self._capacity} jobs)"))
            return False
        if strategy is OverflowStrategy.DROP_OLDEST:
            oldest = self._queue.popleft()
            self._dropped += 1
            oldest.future.set_exception(
                Overflow(f"dropped for a newer job: the queue is full ({self._capacity} jobs)")
            )
            return True
        left = None if job.deadline is None else job.deadline - time.monotonic()
        if (left is not None and left <= 0) or not self._cond.wait(left):
            self._timed_out += 1
            job.future.set_exception(Timeout("no room in the queue within timeout_duration"))
            return False
        if self._closed:
            job.future.set_exception(Overflow("the load balancer was closed"))
            return False
        return True

    def execute(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """Run one job and return its value (blocking)."""
        return self.submit(function, *args, **kwargs).result()

    async def execute_async(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """Coroutine twin of ``execute``."""
        import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

        future = await asyncio.to_thread(self.submit, function, *args, **kwargs)
        return await asyncio.wrap_future(future)

    def stats(self) -> BalancerStats:
        """The counters now."""
        with self._cond:
            latencies = sorted(self._latencies)
            return BalancerStats(
                queued=len(self._queue),
                running=self._running,
                completed=self._completed,
                failed=self._failed,
                dropped=self._dropped,
                timed_out=self._timed_out,
                latency_p50=_percentile(latencies, 50),
                latency_p90=_percentile(latencies, 90),
                latency_p99=_percentile(latencies, 99),
            )

    # --- workers ---------------------------------------------------------------------------

    def _check_started(self) -> None:
        if self._threads:
            raise ConfigurationError("set max_concurrent_executions before the first job")

    def _start_workers(self) -> None:
        while len(self._threads) < self._workers_wanted:
            thread = threading.Thread(
                target=self._work, name=f"wasm-sandbox-worker-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._running += 1
                self._cond.notify_all()  # a BLOCKed submitter may have room now
            try:
                self._run(job)
            finally:
                with self._cond:
                    if not job.settled:  # cancelled before it ran, or a bug: still counted
                        job.settled = True
                        self._running -= 1

    def _run(self, job: _Job) -> None:
        sandbox = self._sandbox
        if sandbox is None:  # submit refuses a balancer without a sandbox: not reached
            self._finish(job, error=ConfigurationError("this load balancer has no sandbox"))
            return
        if not job.future.set_running_or_notify_cancel():
            return
        if job.deadline is not None and time.monotonic() >= job.deadline:
            self._finish(job, error=Timeout("the job waited in the queue past timeout_duration"))
            return
        try:
            value = self._call(sandbox, job)
        except ExecutionTimeout as exc:
            if job.deadline is not None and time.monotonic() >= job.deadline - 0.001:
                error = Timeout("the job ran past timeout_duration")
                error.__cause__ = exc
                self._finish(job, error=error)
            else:
                self._finish(job, error=exc)
        except BaseException as exc:
            self._finish(job, error=exc)
        else:
            self._finish(job, value=value)

    def _call(self, sandbox: WasmSandbox, job: _Job) -> Any:
        if self._backend is not None:
            left = None if job.deadline is None else max(0.0, job.deadline - time.monotonic())
            return self._backend.run(sandbox, job.function, job.args, dict(job.kwargs), left)
        invocation = Invocation.call(job.function, job.args, job.kwargs, job.deadline)
        return sandbox_core(sandbox).invoke(invocation).value

    def _finish(self, job: _Job, value: Any = None, error: BaseException | None = None) -> None:
        with self._cond:  # counted before its caller can see the result, so stats() agree
            job.settled = True
            self._running -= 1
            self._latencies.append(time.monotonic() - job.submitted)
            if error is None:
                self._completed += 1
            elif isinstance(error, Timeout):
                self._timed_out += 1
            else:
                self._failed += 1
        if error is None:
            job.future.set_result(value)
        else:
            job.future.set_exception(error)

    # --- life ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers once running jobs end; queued jobs end with ``Overflow``."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._dropped += len(pending)
            self._cond.notify_all()
        for job in pending:
            job.future.set_exception(Overflow("the load balancer was closed"))
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def __enter__(self) -> LoadBalancer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _positive(name: str, value: int | str, high: int) -> int:
    """A count option (an int, or a count string such as ``"10k"``) within ``1..high``."""
    count = count_value(name, value)
    if not 1 <= count <= high:
        raise ConfigurationError(f"{name} must be within 1..{high}, got {count}")
    return count


def _percentile(ordered: list[float], pct: int) -> float | None:
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[pct - 1]

"""Jobs run in other processes (``ProcessBackend``, ``RayBackend``): the sandbox is built
from its ``SandboxConfig`` once per worker process, and the job returns its value or its
error object, so results and errors are the same as local ones.

A sandbox's ``AutoScaler`` stays in the driver (the process that submits the jobs): it
chooses each job's limits, the worker runs the job under them and reports what it used, and
the driver feeds that back to the scaler (``run_job``); the configuration travels without it.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import dataclasses
import multiprocessing
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._errors import ExecutionTimeout, MemoryLimitExceeded

if TYPE_CHECKING:
    from ._builder import SandboxConfig
    from ._limits import ResourceLimits

__all__ = ["ProcessBackend", "SandboxKeys", "remote_call", "run_job"]

_SANDBOXES: dict[str, Any] = {}  # per worker process (Ray or ours): key -> WasmSandbox

Usage = tuple[int, float]  # what a scaled job used: peak memory bytes, seconds
Answer = tuple[bool, Any, Usage | None]  # (True, value) or (False, the error), and usage
Ship = Callable[["SandboxConfig", "ResourceLimits | None", float | None], Answer]


def remote_call(
    key: str, config: SandboxConfig, function: str, args: tuple[Any, ...],
    kwargs: dict[str, Any], seconds: float | None, limits: ResourceLimits | None = None,
) -> Answer:  # fmt: skip
    """One job in a worker process (Ray or local): (True, value) or (False, the error); with
    ``limits`` (chosen by the driver's auto-scaler), run under them and report the usage."""
    from ._sandbox import WasmSandbox  # noqa: PLC0415 - _sandbox imports the balancer, us

    report: Any = None
    try:
        sandbox = _SANDBOXES.get(key)
        if sandbox is None:
            sandbox = _SANDBOXES[key] = WasmSandbox(config)
        ctx = sandbox._context()
        if limits is not None:
            sandbox._execution._rescale(ctx, limits)
        if seconds is not None:
            end = time.monotonic() + seconds
            ctx.deadline = end if ctx.deadline is None else min(ctx.deadline, end)
        outcome = sandbox._call(function, args, ctx, kwargs=kwargs)
        if limits is not None:
            report = outcome.report
        return True, outcome.value, _usage(report)
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
            from ._errors import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError(f"{backend} runs isolated calls only (no keep_instance)")
        with self._lock:
            key = self._keys.get(id(sandbox))
            if key is None:
                key = self._keys[id(sandbox)] = uuid.uuid4().hex
                self._held.append(sandbox)
            return key


class ProcessBackend:
    """Where a ``LoadBalancer`` runs its jobs instead of threads: worker processes, for crash
    isolation. A worker that dies (a fault in native code, a kill) ends only the job it ran,
    with ``HostError``; the pool is restarted for the next jobs. The configuration travels by
    pickling: callbacks must be picklable (module-level functions). Close it when done."""

    __module__ = "wasm_sandbox"

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
            from ._errors import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError(f"max_workers must be >= 1, got {max_workers}")
        self._max_workers = max_workers
        self._pool: Any = None
        self._lock = threading.Lock()
        self._keys = SandboxKeys()

    def _executor(self) -> Any:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self._max_workers, mp_context=context
                )
            return self._pool

    def run(
        self,
        sandbox: Any,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        seconds: float | None,
    ) -> Any:
        """Run one job in a worker process and return its value (or raise its error)."""
        from ._errors import ConfigurationError, HostError  # noqa: PLC0415

        key = self._keys.key(sandbox, "a process backend")

        def ship(config: SandboxConfig, limits: ResourceLimits | None, left: float | None) -> Any:
            pool = self._executor()
            try:
                job = (key, config, function, args, kwargs, left, limits)
                return pool.submit(remote_call, *job).result()
            except concurrent.futures.process.BrokenProcessPool:
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                raise HostError(
                    "the worker process running this job died; the job is lost and the pool "
                    "restarted for the next ones"
                ) from None
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise ConfigurationError(
                    f"this sandbox's configuration cannot be sent to a worker process: {exc}"
                ) from None

        return run_job(sandbox, seconds, ship)

    def close(self) -> None:
        """Stop the worker processes."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

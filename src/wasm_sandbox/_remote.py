"""Jobs run in other processes (``ProcessBackend``, ``RayBackend``): the sandbox is built
from its ``SandboxConfig`` once per worker process, and the job returns its value or its
error object, so results and errors are the same as local ones."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import pickle
import threading
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._builder import SandboxConfig

__all__ = ["ProcessBackend", "SandboxKeys", "remote_call"]

_SANDBOXES: dict[str, Any] = {}  # per Ray worker process: key -> WasmSandbox


def remote_call(
    key: str, config: SandboxConfig, function: str, args: tuple[Any, ...],
    kwargs: dict[str, Any], seconds: float | None,
) -> tuple[bool, Any]:  # fmt: skip
    """One job in a worker process (Ray or local): (True, value) or (False, the error)."""
    import time  # noqa: PLC0415 - runs in the worker

    from ._sandbox import WasmSandbox  # noqa: PLC0415

    try:
        sandbox = _SANDBOXES.get(key)
        if sandbox is None:
            sandbox = _SANDBOXES[key] = WasmSandbox(config)
        ctx = sandbox._context()
        if seconds is not None:
            end = time.monotonic() + seconds
            ctx.deadline = end if ctx.deadline is None else min(ctx.deadline, end)
        return True, sandbox._call(function, args, ctx, kwargs=kwargs).value
    except Exception as exc:
        exc.__traceback__ = None
        return False, exc


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
        pool = self._executor()
        try:
            future = pool.submit(remote_call, key, sandbox.config, function, args, kwargs, seconds)
            ok, result = future.result()
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
        if ok:
            return result
        raise result

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

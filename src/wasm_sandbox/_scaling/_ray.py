"""Scaling out: the load balancer's jobs as Ray tasks (``pip install 'wasm-sandbox[ray]'``).

Each Ray worker process builds the sandbox from its ``SandboxConfig`` once (the compiled
module comes from that machine's cache) and runs the job under the same limits. The task
returns the value or the error object itself, so results and errors are the same as local
ones. Configurations travel by Ray's pickling: a source given as a path, and mounted
directories, must exist on the worker machines.
"""

from __future__ import annotations

from typing import Any

from .._runtime._traps import ensure_trap_handlers
from ._remote import SandboxKeys, remote_call, run_job

__all__ = ["RayBackend"]


class RayBackend:
    """Where a ``LoadBalancer`` runs its jobs instead of local threads: a Ray cluster.

    ``RayBackend()`` uses the Ray runtime already initialised in this process, or starts a
    local one (``ray.init(**init_kwargs)``); ``RayBackend(address="ray://head:10001")``
    connects to a cluster. The balancer's ``max_concurrent_executions`` bounds the tasks in
    flight."""

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        try:
            import ray  # noqa: PLC0415 - an optional dependency
        except ImportError:
            raise ImportError(
                "the Ray backend needs Ray: pip install 'wasm-sandbox[ray]'"
            ) from None
        self._ray = ray
        self.address = address
        self._init_kwargs = init_kwargs
        self._task: Any = None
        self._keys = SandboxKeys()

    def _ensure(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, **self._init_kwargs)
        ensure_trap_handlers()  # ray.init replaces the handlers wasmtime's traps need
        if self._task is None:
            self._task = ray.remote(remote_call)

    def run(
        self,
        sandbox: Any,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        seconds: float | None,
    ) -> Any:
        """Run one job on the cluster and return its value (or raise its error)."""
        self._ensure()
        key = self._keys.key(sandbox, "a Ray backend")

        def ship(config: Any, limits: Any, left: float | None) -> Any:
            ref = self._task.remote(key, config, function, args, dict(kwargs), left, limits)
            return self._ray.get(ref)

        return run_job(sandbox, seconds, ship)

"""Scaling out: the load balancer's jobs as Ray tasks (``pip install 'wasm-sandbox[ray]'``).

Each Ray worker process builds the sandbox from its ``SandboxConfig`` once and runs the job
under the same limits. The compiled module comes from that machine's cache; a worker whose
cache lacks it receives the driver's cache entry through Ray's object store (put there once
per backend) instead of compiling it (the CPython runtime: 85 s). The task returns the value
or the error object itself, so results and errors are the same as local ones. Configurations
travel by Ray's pickling: a source given as a path, and mounted directories, must exist on
the worker machines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._invocation import sandbox_core
from .._runtime._engine import (
    CacheEntry,
    EntryLabel,
    default_cache_dir,
    install_entry,
    read_entry,
)
from .._runtime._traps import ensure_trap_handlers
from ._remote import Answer, SandboxKeys, remote_call, run_job

if TYPE_CHECKING:
    from .._builder import SandboxConfig
    from .._config._limits import ResourceLimits

__all__ = ["RayBackend", "ray_call"]

log = logging.getLogger("wasm_sandbox")

Shipped = tuple[EntryLabel, Any]  # a cache entry's label, and the ObjectRef of the entry


class RayBackend:
    """Where a ``LoadBalancer`` runs its jobs instead of local threads: a Ray cluster.

    ``RayBackend()`` uses the Ray runtime already initialised in this process, or starts a
    local one (``ray.init(**init_kwargs)``); ``RayBackend(address="ray://head:10001")``
    connects to a cluster. ``task_options``: Ray's options for every job's task (Ray's
    ``.options()``), e.g. ``{"resources": {"gpu_host": 1}}`` to run them where that custom
    resource is, or ``{"num_cpus": 2}``. The balancer's ``max_concurrent_executions`` bounds
    the tasks in flight.

    Workers never compile what this process has: the first job of a sandbox puts its
    compiled module's cache entry (for a Python or JavaScript guest, the runtime's) into
    Ray's object store, where it stays for the backend's life, and a worker whose cache
    lacks it installs it before building the sandbox."""

    def __init__(
        self,
        address: str | None = None,
        *,
        task_options: Mapping[str, Any] | None = None,
        **init_kwargs: Any,
    ) -> None:
        try:
            import ray  # noqa: PLC0415 - an optional dependency
        except ImportError:
            raise ImportError(
                "the Ray backend needs Ray: pip install 'wasm-sandbox[ray]'"
            ) from None
        self._ray = ray
        self.address = address
        self._init_kwargs = init_kwargs
        self._task_options = dict(task_options or {})
        self._task: Any = None
        self._keys = SandboxKeys()
        self._shipped: dict[str, Shipped] = {}  # sandbox key -> its entry in the store
        self._entries: dict[tuple[tuple[str, bool, bool], str], Shipped] = {}
        self._ship_lock = threading.Lock()

    def _ensure(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, **self._init_kwargs)
        ensure_trap_handlers()  # ray.init replaces the handlers wasmtime's traps need
        if self._task is None:
            task = ray.remote(ray_call)
            self._task = task.options(**self._task_options) if self._task_options else task

    def _ship(self, sandbox: Any, key: str) -> Shipped:
        """The cache entry of ``sandbox``'s compiled module in the object store, put there by
        its first job (one put per entry: sandboxes of one runtime share it). Read from this
        process's cache, or serialized from memory when that does not hold it."""
        with self._ship_lock:
            shipped = self._shipped.get(key)
            if shipped is None:
                config = sandbox.config
                plan = sandbox_core(sandbox).plan
                identity = (plan.handle.settings, plan.compiled.digest)
                shipped = self._entries.get(identity)
                if shipped is None:
                    cache_dir = (
                        (config.cache_dir or default_cache_dir()) if config.use_cache else None
                    )
                    entry = read_entry(plan.handle, plan.compiled, cache_dir)
                    shipped = self._entries[identity] = (entry.label, self._ray.put(entry))
                self._shipped[key] = shipped
            return shipped

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
        shipped = self._ship(sandbox, key)

        def ship(config: Any, limits: Any, left: float | None) -> Any:
            ref = self._task.remote(
                shipped, key, config, function, args, dict(kwargs), left, limits
            )
            return self._ray.get(ref)

        return run_job(sandbox, seconds, ship)


def ray_call(
    shipped: Shipped, key: str, config: SandboxConfig, function: str,
    args: tuple[Any, ...], kwargs: dict[str, Any], seconds: float | None,
    limits: ResourceLimits | None,
) -> Answer:  # fmt: skip
    """One job as a Ray task: ``remote_call``, where a worker about to build the sandbox
    first installs the driver's cache entry (``shipped``) if its own cache lacks it. The
    entry travels inside a tuple, so Ray fetches it only when it is needed."""

    def receive() -> None:
        _receive(shipped, config)

    return remote_call(key, config, function, args, kwargs, seconds, limits, receive)


def _receive(shipped: Shipped, config: SandboxConfig) -> None:
    """Install the shipped entry into this machine's cache unless it is there (or does not
    fit this machine); a failure only means the build compiles the module itself."""
    if not config.use_cache:
        return
    label, ref = shipped
    cache_dir = config.cache_dir or default_cache_dir()
    path = label.path(cache_dir)
    if path is None or path.is_file():
        return
    import ray  # noqa: PLC0415 - an optional dependency, present on a Ray worker

    try:
        entry = ray.get(ref)
    except Exception as exc:  # the object lost with its node, say: compile instead
        log.warning("the driver's compiled module %s did not arrive: %r", label.name, exc)
        return
    if isinstance(entry, CacheEntry):
        install_entry(entry, cache_dir)

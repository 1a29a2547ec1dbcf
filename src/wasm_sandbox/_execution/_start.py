"""The state every fresh instance of a script runtime starts from.

Booting our driver inside a new Python instance is most of the cost of a fresh execution.
Instead, the runtime is booted once (per process, module, mounts and setup), its state
snapshotted (``_runtime._snapshot``), and every new instance is made from that snapshot: a
copy of the few megabytes the boot changed. What must differ between executions is drawn
again in each (``GuestInstance.reseed``: the environment, Python's ``random`` and numpy's
global stream, QuickJS's ``Math.random`` state); everything else (``os.urandom``, the clock)
is read from the host at each use anyway.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Hashable

from .. import _errors as e
from .._runtime._snapshot import Snapshot
from ._calls import Call
from ._execute import Execution
from ._plan import ExecutionPlan

__all__ = ["boot_snapshot", "run_and_capture", "shared_boot_snapshot"]

log = logging.getLogger("wasm_sandbox")

_KEPT = 16  # boot snapshots kept per process (a Python one is about 2 MiB)
_boots: collections.OrderedDict[Hashable, Snapshot] = collections.OrderedDict()
_lock = threading.Lock()


def boot_snapshot(plan: ExecutionPlan, call: Call, env: list[bytes]) -> Snapshot:
    """Run ``call`` on a new instance of ``plan`` under its limits and snapshot the
    instance it leaves; the call's failure (a limit, a guest error) is raised."""
    return run_and_capture(plan, call, env)[0]


def run_and_capture(
    plan: ExecutionPlan, call: Call, env: list[bytes]
) -> tuple[Snapshot, tuple[str, ...]]:
    """``boot_snapshot``, and what the call did outside the sandbox (its external effects:
    a network connection, a change to a writable host directory)."""
    execution = Execution(plan, keep_instance=True, internal=True)
    try:
        ctx = plan.context([b"wsbx-boot"], env, None)
        execution.execute(ctx, call)
        return execution.capture(), tuple(ctx.counters.effects)
    finally:
        execution.close()


def shared_boot_snapshot(
    plan: ExecutionPlan, call: Call, env: list[bytes], key: Hashable
) -> Snapshot | None:
    """The snapshot of a plain boot (``call``: the driver's), shared by every plan whose
    ``key`` is equal; None when the boot fails under this plan's limits (its executions then
    boot each instance, and meet the same limit there)."""
    with _lock:
        found = _boots.get(key)
        if found is not None:
            _boots.move_to_end(key)
            return found
    try:
        snapshot = boot_snapshot(plan, call, env)
    except (e.ExecutionError, e.SnapshotError) as exc:
        log.debug("no boot snapshot (%s); instances boot one by one", exc)
        return None
    with _lock:
        _boots[key] = snapshot
        while len(_boots) > _KEPT:
            _boots.popitem(last=False)
    return snapshot

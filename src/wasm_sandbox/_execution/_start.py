"""The state every fresh instance of a script runtime starts from.

Booting our driver inside a new Python instance is most of the cost of a fresh execution.
Instead, the runtime is booted once (``_preinit.boot_state``: per module, mounts and
environment, kept in the process and on disk), its state snapshotted (``_runtime._snapshot``),
and every new instance is made from that snapshot: a copy of the few megabytes the boot
changed. What must differ between executions is drawn
again in each (``GuestInstance.reseed``: the environment, Python's ``random`` and numpy's
global stream, QuickJS's ``Math.random`` state); everything else (``os.urandom``, the clock)
is read from the host at each use anyway.
"""

from __future__ import annotations

from .._runtime._snapshot import Snapshot
from ._calls import Call
from ._execute import Execution
from ._plan import ExecutionPlan

__all__ = ["run_and_capture"]


def run_and_capture(
    plan: ExecutionPlan, call: Call, env: list[bytes]
) -> tuple[Snapshot, tuple[str, ...]]:
    """Run ``call`` on a new instance of ``plan`` under its limits and snapshot the instance
    it leaves (the call's failure is raised: a limit, a guest error); and what the call did
    outside the sandbox (its external effects: a network connection, a change to a writable
    host directory)."""
    execution = Execution(plan, keep_instance=True, internal=True)
    try:
        ctx = plan.context([b"wsbx-boot"], env, None, streamed=False)  # state every call shares
        execution.execute(ctx, call)
        return execution.capture(), tuple(ctx.counters.effects)
    finally:
        execution.close()

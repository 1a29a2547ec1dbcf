"""``host.call``: the one import outside preview1, the door through which a script runtime's
guest talks to the host (the Python runtime's ``_host.call(frame) -> bytes``).

A frame is opaque bytes; the execution's ``door`` handler answers it. An empty answer costs
nothing; a non-empty one is placed in guest memory by its ``deliver`` (which calls the guest's
``host_alloc``, re-entering it from this host call). Without a handler (any other guest that
imports the door) the call is refused, as the runtime expects when no host is bound.
"""

from __future__ import annotations

from ._abi import GuestMemory
from ._context import WasiContext
from ._errno import WasiError
from ._registry import syscall

__all__ = ["MAX_FRAME", "NO_HOST"]

NO_HOST = -1  # the runtime's "no host is bound to the door"
HOST_FAULT = -2  # the runtime's "the host faulted": its guest raises OSError
MAX_FRAME = 256 << 20  # a result frame larger than this is refused (the guest sees OSError)


@syscall("iiii", module="host", name="call")
def host_call(
    ctx: WasiContext, mem: GuestMemory, ptr: int, length: int, out_ptr: int, out_len: int
) -> int:
    """Hand one frame to the execution's door handler; answer with an empty frame."""
    door = ctx.door
    if door is None:
        return NO_HOST
    if length > MAX_FRAME:
        return HOST_FAULT
    try:
        frame = mem.read(ptr, length)
        mem.set_u32(out_ptr, 0)
        mem.set_u32(out_len, 0)
    except WasiError:
        return HOST_FAULT
    response = door.answer(frame)
    if not response:
        return 0
    if not door.deliver(response, out_ptr, out_len):
        return HOST_FAULT
    return 0

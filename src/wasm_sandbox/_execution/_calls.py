"""The kinds of invocation an ``Execution`` runs, one class each: a numeric function call, a
data-ABI call, a WASI command, and a script runtime's turn. Each says whether it is a command
(exit codes are results) and whether a new reactor instance runs ``_initialize`` first,
and runs itself on a
ready instance, answering ``(value, exit code)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .. import _errors as e
from .._guests._data import decode_result
from .._guests._turns import ScriptTurn
from .._runtime._engine import GuestInstance
from .._wasi._context import WasiContext

COMMAND_EXPORT = "_start"  # a WASI command's entry point

__all__ = ["Call", "Command", "DataCall", "NumericCall", "TurnCall"]


class Call(Protocol):
    """One kind of invocation."""

    @property
    def command(self) -> bool:
        """True for a WASI command: a nonzero exit code is a result, not an error."""
        ...

    @property
    def initialize(self) -> bool:
        """True when a new reactor instance runs its ``_initialize`` before this call."""
        ...

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int]:
        """Call into ``instance`` (started, with its budget set): (value, exit code)."""
        ...

    def rescue_output(self, instance: GuestInstance) -> None:
        """After a limit stopped the guest: have ``instance`` write out what it printed but
        still buffers (a script runtime's ``sys.stdout``). Called under a small budget of
        its own; a failure is ignored (the instance is being given up)."""
        ...


@dataclass(frozen=True, slots=True)
class NumericCall:
    """An exported function called with numbers; its result is the value."""

    export: str
    args: tuple[Any, ...]
    command = False
    initialize = True

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int]:
        """Call the export; (its result, 0)."""
        return instance.invoke(self.export, self.args, fuel=None), 0

    def rescue_output(self, instance: GuestInstance) -> None:
        """Nothing: a compiled guest's own buffers (C's stdio) are its own."""


@dataclass(frozen=True, slots=True)
class DataCall:
    """A data-ABI call: ``payload`` in through the guest's ``alloc``, a JSON envelope out."""

    export: str
    payload: bytes
    command = False
    initialize = True

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int]:
        """Place the input, call, read and free the output; (the decoded value, 0)."""
        in_len = len(self.payload)
        in_ptr = int(instance.invoke("alloc", (in_len,), fuel=None)) & 0xFFFFFFFF
        if in_ptr == 0 and in_len > 0:
            raise e.GuestError("OutOfMemory", f"the guest's alloc({in_len}) for the input failed")
        if not instance.write_memory(in_ptr, self.payload):
            raise e.GuestError(
                "ProtocolError", f"alloc({in_len}) returned a pointer outside memory"
            )
        packed = int(instance.invoke(self.export, (in_ptr, in_len), fuel=None))
        out_ptr, out_len = (packed >> 32) & 0xFFFFFFFF, packed & 0xFFFFFFFF
        data = instance.read_memory(out_ptr, out_len)
        if data is None:
            raise e.GuestError("ProtocolError", f"{self.export} returned an output outside memory")
        instance.invoke("dealloc", (out_ptr, out_len), fuel=None)
        instance.invoke("dealloc", (in_ptr, in_len), fuel=None)
        return decode_result(data), 0

    def rescue_output(self, instance: GuestInstance) -> None:
        """Nothing: a compiled guest's own buffers (C's stdio) are its own."""


@dataclass(frozen=True, slots=True)
class Command:
    """A WASI command's ``_start``; ``proc_exit`` ends it with an exit code."""

    command = True
    initialize = False

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int]:
        """Run ``_start``; (None, 0) when it returns (an exit is a stop, see ``_ending``)."""
        return instance.invoke(COMMAND_EXPORT, (), fuel=None), 0

    def rescue_output(self, instance: GuestInstance) -> None:
        """Nothing: a compiled guest's own buffers (C's stdio) are its own."""


@dataclass(frozen=True, slots=True)
class TurnCall:
    """One turn of a script runtime (Python, JavaScript): the answer comes through the door
    (Python) or the engine's API (JavaScript). ``command``: a ``run()`` of the script, whose
    exit code is a result; else a ``call()``, where an exit is an error."""

    turn: ScriptTurn
    command: bool = False
    initialize = True

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int]:
        """Run the turn; (its value, 0), or (None, exit code) for a command that exited."""
        value, exited = self.turn.run(instance, ctx)
        if exited is None:
            return value, 0
        if not self.command:
            raise e.GuestExit(exited)
        return None, exited

    def rescue_output(self, instance: GuestInstance) -> None:
        """The runtime's buffered output, written out (see ``ScriptTurn.rescue_output``)."""
        self.turn.rescue_output(instance)

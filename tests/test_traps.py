"""Guest traps map to distinct, documented errors; the host and the next execution are fine."""

from __future__ import annotations

import re

import pytest

import wasm_sandbox as ws
from tests.conftest import sandbox

TRAPS_WAT = b"""(module
  (memory (export "memory") 1)
  (table 2 funcref)
  (type $v (func))
  (type $i (func (param i32)))
  (func $target (param i32))
  (elem (i32.const 1) $target)
  (func $rec (export "stack") (call $rec))
  (func $trap_here (export "unreachable") unreachable)
  (func (export "oob") (result i32) i32.const 70000 i32.load)
  (func (export "div0") (result i32) i32.const 1 i32.const 0 i32.div_s)
  (func (export "overflow") (result i32) i32.const 0x80000000 i32.const -1 i32.div_s)
  (func (export "conv") (result i32) f32.const nan i32.trunc_f32_s)
  (func (export "null_call") i32.const 0 call_indirect (type $v))
  (func (export "bad_sig") i32.const 1 call_indirect (type $v))
  (func (export "table_oob") i32.const 5 call_indirect (type $v))
  (func (export "ok") (result i32) i32.const 42))"""


@pytest.fixture(scope="module")
def traps() -> ws.WasmSandbox:
    return sandbox(TRAPS_WAT)


@pytest.mark.parametrize(
    ("export", "error", "code"),
    [
        ("stack", ws.StackOverflow, "stack_overflow"),
        ("unreachable", ws.UnreachableExecuted, "unreachable"),
        ("oob", ws.MemoryAccessOutOfBounds, "memory_out_of_bounds"),
        ("div0", ws.IntegerDivisionByZero, "integer_division_by_zero"),
        ("overflow", ws.IntegerOverflow, "integer_overflow"),
        ("conv", ws.InvalidConversionToInteger, "bad_conversion_to_integer"),
        ("null_call", ws.IndirectCallError, "indirect_call_to_null"),
        ("bad_sig", ws.IndirectCallError, "bad_signature"),
        ("table_oob", ws.TableAccessOutOfBounds, "table_out_of_bounds"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_trap_has_its_own_error(
    traps: ws.WasmSandbox, export: str, error: type, code: str
) -> None:
    """The trap raises its class with its trap code, and the sandbox keeps working."""
    with pytest.raises(error) as info:
        traps.call(export)
    assert isinstance(info.value, ws.GuestTrap)
    assert info.value.trap_code == code
    assert info.value.report.outcome == error.__name__
    assert traps.call("ok") == 42


def test_trap_error_is_exactly_one_class(traps: ws.WasmSandbox) -> None:
    """A trap raises exactly its own GuestTrap subclass, in no other branch of the error tree
    (never also a resource-limit error), and its wasm_backtrace names the trapping function."""
    with pytest.raises(ws.GuestTrap) as info:
        traps.call("unreachable")
    assert type(info.value) is ws.UnreachableExecuted
    other_branches = (
        ws.ResourceLimitExceeded,
        ws.GuestError,
        ws.GuestExit,
        ws.ExecutionCancelled,
        ws.SecurityViolation,
        ws.SessionLost,
        ws.HostError,
    )
    assert not isinstance(info.value, other_branches)
    backtrace = info.value.wasm_backtrace
    assert backtrace.startswith("error while executing at wasm backtrace:\n"), backtrace
    assert re.search(r"^ +0: +0x[0-9a-f]+ - <unknown>!trap_here$", backtrace, re.M), backtrace


def test_c_abort_is_unreachable(c_guest) -> None:
    """C abort() ends in the unreachable trap."""
    with pytest.raises(ws.UnreachableExecuted):
        sandbox(c_guest("probe")).run(["abort"])


def test_c_stack_overflow(c_guest) -> None:
    """Unbounded recursion in C is a StackOverflow (or an out-of-bounds shadow-stack access)."""
    with pytest.raises((ws.StackOverflow, ws.MemoryAccessOutOfBounds)):
        sandbox(c_guest("probe")).run(["stack"])


def test_many_failures_do_not_affect_later_executions(traps: ws.WasmSandbox) -> None:
    """A hundred traps in a row leave the engine healthy."""
    for _ in range(100):
        with pytest.raises(ws.GuestTrap):
            traps.call("stack")
    assert traps.call("ok") == 42

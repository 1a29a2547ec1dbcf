"""Every preview1 syscall, called by a real guest with arbitrary arguments, answers with an
errno (or ends the guest the documented way); the host never raises."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasm_sandbox as ws
from tests.conftest import sandbox
from wasm_sandbox._wasi._errno import Errno
from wasm_sandbox._wasi._registry import SYSCALLS

_TYPES = {"i": "i32", "I": "i64"}
_ERRNOS = {int(e) for e in Errno}


@cache
def _guest(name: str) -> ws.WasmSandbox:
    """A module importing ``name`` and exporting ``go`` with the same parameters.

    It has two pages of memory, a little of it filled with data, so that valid and invalid
    pointers are both likely.
    """
    sc = SYSCALLS[name]
    params = " ".join(_TYPES[p] for p in sc.params)
    result = "(result i32)" if sc.results else ""
    gets = " ".join(f"local.get {i}" for i in range(len(sc.params)))
    call = f"{gets} call $f" + ("" if sc.results else " i32.const 0")
    wat = f"""(module
      (import "wasi_snapshot_preview1" "{name}" (func $f (param {params}) {result}))
      (memory (export "memory") 2)
      (data (i32.const 0) "\\10\\00\\00\\00\\04\\00\\00\\00\\00\\00\\00\\00abcdefgh/etc/passwd")
      (func (export "go") (param {params}) (result i32) {call}))"""
    # poll_oneoff may legitimately sleep (then the deadline stops it); nothing else may block.
    timeout = 0.2 if name == "poll_oneoff" else 10.0
    return sandbox(wat.encode(), timeout_duration=timeout, max_fuel=None, max_output_bytes=1024)


def _arg(kind: str) -> st.SearchStrategy[int]:
    interesting = st.sampled_from([0, 1, 2, 3, 8, 16, 65535, 65536, 131071, 131072])
    if kind == "i":
        return st.one_of(interesting, st.integers(0, 2**32 - 1), st.integers(-(2**31), -1))
    return st.one_of(interesting, st.integers(-(2**63), 2**63 - 1))


@st.composite
def _calls(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    name = draw(st.sampled_from(sorted(SYSCALLS)))
    args = tuple(draw(_arg(kind)) for kind in SYSCALLS[name].params)
    return name, args


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_calls())
def test_any_arguments_give_an_errno_never_a_host_error(call: tuple[str, tuple[int, ...]]) -> None:
    """Garbage in, errno out: no HostError, no crash, for every syscall."""
    name, args = call
    try:
        errno = _guest(name).call("go", *args)
    except ws.GuestExit:
        assert name == "proc_exit"
    except ws.ExecutionTimeout:
        assert name == "poll_oneoff"  # a long sleep or a wait on stdin, stopped on time
    else:
        assert errno in _ERRNOS, (name, args, errno)


@pytest.mark.parametrize("name", sorted(SYSCALLS))
def test_every_syscall_links_and_answers(name: str) -> None:
    """Each syscall can be imported and called with zeros."""
    args = (0,) * len(SYSCALLS[name].params)
    try:
        assert _guest(name).call("go", *args) in _ERRNOS
    except ws.GuestExit as exit_:
        assert name == "proc_exit" and exit_.exit_code == 0

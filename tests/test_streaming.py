"""Output that is never lost: what a Python guest printed before a limit stopped it is in the
error (its buffered ``sys.stdout`` is written out after the stop), for run(), call() and a
session's statement."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from wasm_sandbox._guests import _python, _reactor

SPIN = "import sys\nprint('spinning')\nsys.stderr.write('half a line')\nwhile True: pass\n"


@pytest.mark.parametrize(
    "limit",
    [{"timeout_duration": 0.3}, {"max_fuel": 300_000_000}],
    ids=["timeout", "fuel"],
)
def test_python_run_stopped_by_a_limit_keeps_what_it_printed(limit: dict[str, object]) -> None:
    """print() then spin: the error's stdout (and stderr, even without a newline) hold it."""
    sandbox = script_sandbox(SPIN, "python", **limit)
    with pytest.raises((ws.ExecutionTimeout, ws.FuelExhausted)) as caught:
        sandbox.run()
    assert caught.value.stdout == b"spinning\n"
    assert caught.value.stderr == b"half a line"
    assert caught.value.report.stdout_bytes == len(b"spinning\n")


def test_python_call_stopped_by_a_timeout_keeps_what_it_printed() -> None:
    source = "def spin(n):\n    print('working on', n)\n    while True: pass\n"
    sandbox = script_sandbox(source, "python", timeout_duration=0.3)
    with pytest.raises(ws.ExecutionTimeout) as caught:
        sandbox.call("spin", 7)
    assert caught.value.stdout == b"working on 7\n"


def test_session_statement_stopped_by_a_timeout_keeps_what_it_printed() -> None:
    """The statement's output is in the error; the session goes on from before it."""
    sandbox = script_sandbox("", "python", timeout_duration=0.3)
    with sandbox.session() as session:
        session.exec("x = 41")
        with pytest.raises(ws.ExecutionTimeout) as caught:
            session.exec("print('x is', x)\nwhile True: pass")
        assert caught.value.stdout == b"x is 41\n"
        assert session.eval("x + 1") == 42


def test_the_rescue_does_not_extend_the_time_limit_noticeably() -> None:
    sandbox = script_sandbox(SPIN, "python", timeout_duration=0.2)
    started = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout) as caught:
        sandbox.run()
    took = time.monotonic() - started
    assert caught.value.stdout == b"spinning\n"
    assert took < 0.2 + 0.1
    assert caught.value.report.execution_time.total_seconds() < 0.2 + 0.05


def test_a_guest_that_spins_in_its_flush_is_still_stopped() -> None:
    """The rescue runs guest code (whatever sys.stdout now is) under its own small budget:
    a flush that never returns is cut off, and the error is the original one."""
    source = (
        "import sys\n"
        "class Stuck:\n"
        "    def write(self, text): return len(text)\n"
        "    def flush(self):\n"
        "        while True: pass\n"
        "sys.stdout = Stuck()\n"
        "while True: pass\n"
    )
    sandbox = script_sandbox(source, "python", timeout_duration=0.2)
    started = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout):
        sandbox.run()
    assert time.monotonic() - started < 0.2 + 0.1


def test_javascript_stopped_by_a_timeout_keeps_what_it_logged() -> None:
    """QuickJS's console.log writes through: nothing to rescue, nothing lost."""
    sandbox = script_sandbox("console.log('spinning'); for (;;) {}", "javascript",
                             timeout_duration=0.3)  # fmt: skip
    with pytest.raises(ws.ExecutionTimeout) as caught:
        sandbox.run()
    assert caught.value.stdout == b"spinning\n"


def test_the_reactor_flag_is_found_in_the_runtime_and_nowhere_else(tmp_path: Path) -> None:
    """The byte ``turn`` guards itself with is found by decoding the module's ``turn``; a file
    that is not such a module gives None (and then no rescue is tried)."""
    runtime = _python.find_python_runtime(tmp_path)
    flag = _reactor.turn_flag(runtime.wasm_digest)
    assert flag is not None and flag > 0
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\1\0\0\0" + b"\x07\x01\x00")
    _reactor.register_module("junk", junk)
    assert _reactor.turn_flag("junk") is None
    assert _reactor.turn_flag("never registered") is None

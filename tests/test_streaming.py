"""Output that streams and is never lost.

Streaming: ``on_stdout``/``on_stderr`` receive each write's bytes, in order, on a thread that
is not the guest's, all of them before ``run()``/``call()`` returns, none past the output cap;
a slow callback holds the guest (on its deadline), never the host's memory. Rescue: what a
Python guest printed before a limit stopped it is in the error (its buffered ``sys.stdout`` is
written out after the stop), for run(), call() and a session's statement."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from wasm_sandbox._guests import _python, _reactor
from wasm_sandbox._observe import _output


class Recorder:
    """Records what each callback received, where and when."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.threads: set[int] = set()
        self.times: list[float] = []

    def stream(self, name: str) -> Callable[[bytes], None]:
        def receive(chunk: bytes) -> None:
            assert type(chunk) is bytes
            self.threads.add(threading.get_ident())
            self.times.append(time.monotonic())
            self.chunks.append((name, chunk))

        return receive

    def joined(self, name: str) -> bytes:
        return b"".join(chunk for which, chunk in self.chunks if which == name)

    def lines(self) -> list[tuple[str, bytes]]:
        """(stream, line) in the order received."""
        return [
            (name, line) for name, chunk in self.chunks for line in chunk.splitlines(keepends=True)
        ]


def streamed(builder: ws.SandboxBuilder, recorder: Recorder, **options: Any) -> ws.WasmSandbox:
    builder.on_stdout(recorder.stream("out")).on_stderr(recorder.stream("err"))
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def script(source: str, language: str) -> ws.SandboxBuilder:
    return ws.WasmSandbox.builder().source(source).language(language).max_fuel(None)


def test_a_c_guest_streams_in_order_off_its_thread_before_run_returns(
    c_guest: Callable[[str], Path],
) -> None:
    recorder = Recorder()
    sandbox = streamed(ws.WasmSandbox.builder().source(c_guest("lines")), recorder)
    result = sandbox.run(args=["40"])
    expected = [("err" if i % 2 else "out", f"line {i}\n".encode()) for i in range(40)]
    assert recorder.lines() == expected  # in order across both streams, all before return
    assert recorder.joined("out") == result.stdout
    assert recorder.joined("err") == result.stderr
    assert threading.get_ident() not in recorder.threads  # the guest ran on this thread
    assert result.resource_report.output_callback_errors == ()


def test_python_output_streams_line_by_line_as_it_is_printed() -> None:
    """Line-buffered when streaming: the first line arrives while the guest still sleeps."""
    source = (
        "import sys, time\n"
        "print('first')\n"
        "print('to stderr', file=sys.stderr)\n"
        "time.sleep(0.3)\n"
        "print('second')\n"
    )
    recorder = Recorder()
    result = streamed(script(source, "python"), recorder).run()
    assert recorder.lines() == [
        ("out", b"first\n"), ("err", b"to stderr\n"), ("out", b"second\n"),
    ]  # fmt: skip
    assert recorder.times[-1] - recorder.times[0] > 0.2
    assert recorder.joined("out") == result.stdout == b"first\nsecond\n"
    assert threading.get_ident() not in recorder.threads


def test_python_call_and_session_statements_stream() -> None:
    recorder = Recorder()
    source = "def greet(name):\n    print('hello', name)\n    return len(name)\n"
    sandbox = streamed(script(source, "python"), recorder)
    assert sandbox.call("greet", "ada") == 3
    assert recorder.lines() == [("out", b"hello ada\n")]
    with sandbox.session() as session:
        session.exec("x = 2\nprint('x is', x)")
        assert recorder.lines()[-1] == ("out", b"x is 2\n")
        session.exec("print('twice', x * 2)")
        assert recorder.lines()[-1] == ("out", b"twice 4\n")


def test_a_failed_session_statement_is_not_streamed_again_by_its_replay() -> None:
    """A restore replays the statements since the checkpoint with their output discarded:
    the callbacks see each statement's output once."""
    recorder = Recorder()
    sandbox = streamed(script("", "python"), recorder, timeout_duration=0.5)
    with sandbox.session() as session:
        session.exec("print('one')")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("print('spin')\nwhile True: pass")
        session.exec("print('three')")
    assert recorder.lines() == [("out", b"one\n"), ("out", b"spin\n"), ("out", b"three\n")]


def test_javascript_output_streams_as_it_is_logged() -> None:
    source = (
        "console.log('first');\n"
        "const end = Date.now() + 300; while (Date.now() < end) {}\n"
        "console.log('second');\n"
    )
    recorder = Recorder()
    result = streamed(script(source, "javascript"), recorder).run()
    assert recorder.lines() == [("out", b"first\n"), ("out", b"second\n")]
    assert recorder.times[-1] - recorder.times[0] > 0.2
    assert recorder.joined("out") == result.stdout
    assert threading.get_ident() not in recorder.threads
    assert streamed(script("function f() { console.log('in f'); return 1 }", "javascript"),
                    recorder).call("f") == 1  # fmt: skip
    assert recorder.lines()[-1] == ("out", b"in f\n")


def test_bytes_past_the_output_cap_are_not_delivered() -> None:
    recorder = Recorder()
    sandbox = streamed(
        script("for i in range(500):\n    print('0123456789')\n", "python"),
        recorder,
        max_output_bytes=1000,
    )
    result = sandbox.run()
    assert result.stdout_truncated and len(result.stdout) == 1000
    assert recorder.joined("out") == result.stdout
    assert result.resource_report.stdout_bytes == 5500


def test_a_callback_that_raises_is_dropped_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[bytes] = []

    def broken(chunk: bytes) -> None:
        calls.append(chunk)
        raise RuntimeError("callback bug")

    sandbox = script("for i in range(5):\n    print(i)\n", "python").on_stdout(broken).build()
    for _ in range(2):  # dropped for one execution only
        calls.clear()
        result = sandbox.run()
        assert result.stdout == b"0\n1\n2\n3\n4\n"  # the guest never notices
        assert len(calls) == 1
        report = result.resource_report
        assert report.output_callback_errors == ("on_stdout: RuntimeError: callback bug",)
    assert "on_stdout" in caplog.text and "not called again" in caplog.text


def test_a_callback_keyboard_interrupt_stops_the_guest_and_is_raised() -> None:
    seen: list[bytes] = []

    def interrupt(chunk: bytes) -> None:
        seen.append(chunk)
        if len(seen) == 3:
            raise KeyboardInterrupt

    source = "i = 0\nwhile True:\n    print(i)\n    i += 1\n"
    sandbox = script(source, "python").on_stdout(interrupt).timeout_duration(10).build()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sandbox.run()
    assert time.monotonic() - started < 2
    assert len(seen) == 3  # nothing is delivered after it
    quiet = script("print('still usable')", "python").build()
    assert quiet.run().stdout == b"still usable\n"


def test_a_slow_callback_holds_the_guest_not_the_host_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most QUEUE_BYTES (+ one piece) wait for the callback; the guest waits for room,
    and that wait is on its time limit: the run ends in ExecutionTimeout, and every byte
    kept is still delivered before run() raises."""
    most: list[int] = [0]
    put = _output.OutputStreams._put

    def watched(self: _output.OutputStreams, stream: int, piece: bytes) -> None:
        put(self, stream, piece)
        most[0] = max(most[0], self._queued)

    monkeypatch.setattr(_output.OutputStreams, "_put", watched)
    received: list[int] = []

    def slow(chunk: bytes) -> None:
        received.append(len(chunk))
        time.sleep(0.02)

    source = (
        "import sys\n"
        "for i in range(64):\n"
        "    sys.stdout.buffer.write(b'x' * 65536)\n"
        "    sys.stdout.flush()\n"
    )
    sandbox = script(source, "python").on_stdout(slow).timeout_duration(0.4).build()
    with pytest.raises(ws.ExecutionTimeout) as caught:
        sandbox.run()
    assert 0 < most[0] <= _output.QUEUE_BYTES + _output.PIECE
    assert sum(received) == len(caught.value.stdout) > 0
    assert len(caught.value.stdout) < 64 * 65536  # the guest was held back


def test_streaming_does_not_line_buffer_other_sandboxes() -> None:
    """The runtime's boot state is shared by sandboxes of the same runtime: streaming is set
    per execution, never captured into it."""
    source = "for i in range(200):\n    print(i)\n"
    streamed(script(source, "python"), Recorder()).run()
    plain = script(source, "python").build().run()
    assert plain.resource_report.syscalls < 20  # block-buffered: a few writes, not 200


def test_on_stdout_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_stdout must be callable"):
        ws.WasmSandbox.builder().on_stdout(42)  # type: ignore[arg-type]


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


# --- messages an agent can act on ------------------------------------------------------------


def test_a_python_memory_error_says_how_much_it_tried_in_sizes_for_people() -> None:
    """The seed's wording, then the sizes: ``(tried to allocate 300 MiB; the limit is 128
    MiB)``; the output printed before is kept."""
    source = "print('before')\nblob = bytearray(300 * 2**20)\n"
    sandbox = script_sandbox(source, "python", memory_limit="128MiB")
    with pytest.raises(ws.MemoryLimitExceeded) as caught:
        sandbox.run()
    message = str(caught.value)
    assert message.startswith(f"Memory limit exceeded: used {caught.value.used}, limit 134217728 (")
    assert message.endswith("; the limit is 128 MiB)")
    assert "(tried to allocate 3" in message  # 300 MiB and the heap it already had
    assert caught.value.stdout == b"before\n"


PRINT_THEN_GROW = b"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\\n")
  ;; use(pages): print "hi", then grow memory to `pages` pages (trap when refused)
  (func (export "use") (param $pages i32) (result i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then unreachable))))
    (memory.size)))"""


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streamed"])
def test_an_auto_scaler_does_not_retry_an_execution_whose_output_was_streamed(
    streaming: bool,
) -> None:
    """A memory-cap failure is retried at a raised cap, unless its output already reached a
    callback: the retry would deliver it a second time."""
    scaler = ws.AutoScaler().memory_policy(ws.ScalingPolicy(min_limit=65536, max_limit=16 * 65536))
    builder = ws.WasmSandbox.builder().source(PRINT_THEN_GROW).memory_limit(4 * 65536)
    chunks: list[bytes] = []
    if streaming:
        builder.on_stdout(chunks.append)
    sandbox = builder.auto_scaler(scaler).build()
    if not streaming:
        assert sandbox.call("use", 6) == 6  # retried at 8 pages
        return
    with pytest.raises(ws.MemoryLimitExceeded) as caught:
        sandbox.call("use", 6)
    assert chunks == [b"hi\n"] and caught.value.stdout == b"hi\n"


def test_the_asyncio_twin_streams_and_no_delivery_thread_outlives_its_execution() -> None:
    """An awaited run() has had its chunks delivered when it returns; the delivery threads
    of fifty streamed executions are all gone afterwards."""
    chunks: list[bytes] = []

    async def main() -> bytes:
        sandbox = await script("print('async hi')", "python").on_stdout(chunks.append).build_async()
        result = await sandbox.run()
        assert chunks == [b"async hi\n"]
        return result.stdout

    assert asyncio.run(main()) == b"async hi\n"
    sandbox = script("print('hi')", "python").on_stdout(chunks.append).build()
    sandbox.run()
    threads = threading.active_count()
    for _ in range(50):
        sandbox.run()
    assert threading.active_count() <= threads
    assert not any(t.name == "wasm-sandbox-output" for t in threading.enumerate())

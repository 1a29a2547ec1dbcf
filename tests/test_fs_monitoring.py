"""I/O monitoring: the io_callback sees each file operation with guest paths, a raising
callback never breaks the guest, and the report counts operations and bytes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import wasm_sandbox as ws


def _sandbox(c_guest, tmp_path: Path, callback) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(c_guest("fs_ops"))
    builder.mount_directory(tmp_path, "/work", read_only=False)
    if callback is not None:
        builder.io_callback(callback)
    return builder.build()


def _run(c_guest, tmp_path: Path, callback) -> ws.ExecutionResult:
    return _sandbox(c_guest, tmp_path, callback).run(["/work"])


def test_callback_sees_every_operation_in_order(c_guest, tmp_path: Path) -> None:
    """Open, write, close, read, rename, mkdir, list, delete: each with its guest path."""
    seen: list[ws.IoOperation] = []
    result = _run(c_guest, tmp_path, seen.append)
    assert result.stdout == b"done 11\n"
    assert seen == [
        ws.FileOpen("/work/a.txt"),
        ws.FileWrite("/work/a.txt", 11),
        ws.FileClose("/work/a.txt"),
        ws.FileOpen("/work/a.txt"),
        ws.FileRead("/work/a.txt", 11),
        ws.FileClose("/work/a.txt"),
        ws.FileRename("/work/a.txt", "/work/b.txt"),
        ws.DirectoryCreate("/work/dir"),
        ws.FileOpen("/work"),
        ws.DirectoryList("/work"),
        ws.FileClose("/work"),
        ws.FileDelete("/work/b.txt"),
        ws.DirectoryDelete("/work/dir"),
    ]
    report = result.resource_report
    assert (report.bytes_read, report.bytes_written) == (11, 11)
    assert report.file_operations >= len(seen)


def test_operations_can_be_matched(c_guest, tmp_path: Path) -> None:
    """IoOperation values work with structural pattern matching, as the seed's example does."""
    written = 0

    def on_io(operation: ws.IoOperation) -> None:
        nonlocal written
        match operation:
            case ws.FileWrite(path=_, bytes=count):
                written += count
            case _:
                pass

    _run(c_guest, tmp_path, on_io)
    assert written == 11


def test_a_raising_callback_is_logged_once_dropped_for_the_run_and_reported(
    c_guest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises on the first of 13 operations is called once in that run,
    logged once with its traceback, listed in the report; the guest's run is unchanged; the
    next run calls it again (its scope is one execution)."""
    calls = 0

    def broken(operation: ws.IoOperation) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("observer bug")

    sandbox = _sandbox(c_guest, tmp_path, broken)
    with caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        result = sandbox.run(["/work"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"done 11\n", b"")
    assert calls == 1
    assert result.resource_report.io_callback_errors == ("RuntimeError: observer bug",)
    [record] = [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
    assert record.levelno == logging.ERROR and "io_callback" in record.getMessage()
    assert "not called again for this execution" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError

    again = sandbox.run(["/work"])
    assert again.stdout == b"done 11\n" and calls == 2
    assert again.resource_report.io_callback_errors == ("RuntimeError: observer bug",)


@pytest.mark.parametrize(
    "stop", [KeyboardInterrupt(), SystemExit(3)], ids=["KeyboardInterrupt", "SystemExit"]
)
def test_keyboard_interrupt_or_system_exit_from_the_callback_stops_the_guest_and_propagates(
    c_guest, tmp_path: Path, caplog: pytest.LogCaptureFixture, stop: BaseException
) -> None:
    """KeyboardInterrupt and SystemExit are requests to stop, not the callback's errors:
    raised in the guest's host call, they stop the guest (nothing unwinds into wasmtime), the
    run raises the same exception, nothing is logged as a callback error, and the sandbox
    runs the next time."""
    calls = 0

    def stopping(operation: ws.IoOperation) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise stop

    sandbox = _sandbox(c_guest, tmp_path, stopping)
    with (
        caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"),
        pytest.raises(type(stop)) as info,
    ):
        sandbox.run(["/work"])
    assert info.value is stop
    assert calls == 1  # the guest stopped at its first file operation
    assert not [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
    result = sandbox.run(["/work"])
    assert result.stdout == b"done 11\n" and calls == 14


def test_monitoring_without_callback_logs_at_debug(
    c_guest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """enable_io_monitoring without a callback sends the operations to the debug log."""
    builder = ws.WasmSandbox.builder().source(c_guest("fs_ops")).enable_io_monitoring()
    sb = builder.mount_directory(tmp_path, "/work", read_only=False).build()
    with caplog.at_level(logging.DEBUG, logger="wasm_sandbox.io"):
        sb.run(["/work"])
    assert "FileWrite(path='/work/a.txt', bytes=11)" in caplog.text


def test_non_callable_callback_is_refused() -> None:
    """io_callback must be callable."""
    with pytest.raises(TypeError, match="io_callback must be callable"):
        ws.WasmSandbox.builder().io_callback(42)  # type: ignore[arg-type]

"""WasmSandbox and AsyncWasmSandbox: sources, calls, isolation, kept instances, reports,
asyncio, cancellation, interruption and misbehaving callbacks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import wasmtime

import wasm_sandbox as ws
from tests.conftest import sandbox
from wasm_sandbox._wasi._context import WasiContext

CALC = b"""(module
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "add64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add)
  (func (export "mulf") (param f64 f32) (result f64) local.get 0 local.get 1 f64.promote_f32 f64.mul)
  (func (export "pair") (result i32 i64) i32.const 1 i64.const 2)
  (func (export "nothing"))
  (func (export "bump") (result i32) global.get $n i32.const 1 i32.add global.set $n global.get $n)
  (func (export "spin") (loop br 0))
  (func (export "takes_ref") (param externref)))"""


@pytest.fixture(scope="module")
def calc() -> ws.WasmSandbox:
    return sandbox(CALC)


# --- sources ---------------------------------------------------------------------------------


def test_source_from_wat_and_wasm_files_and_bytes(tmp_path: Path) -> None:
    """.wat and .wasm paths (str or Path) and binary or text bytes all load."""
    binary = wasmtime.wat2wasm(CALC)
    (tmp_path / "calc.wat").write_bytes(CALC)
    (tmp_path / "calc.wasm").write_bytes(binary)
    sources: list[Path | str | bytes] = [
        tmp_path / "calc.wat",
        str(tmp_path / "calc.wasm"),
        bytes(binary),
        CALC,
    ]
    for source in sources:
        assert sandbox(source).call("add", 2, 3) == 5


@pytest.mark.parametrize("name", ["missing.wasm", "missing.c", "missing.py"])
def test_a_missing_source_is_a_sandbox_error_and_a_file_not_found_error(
    tmp_path: Path, name: str
) -> None:
    """A source file that does not exist raises SourceNotFound: a SandboxError (one ``except``
    catches every failure) and a FileNotFoundError (errno ENOENT, the path as ``filename``
    and in the message), also from the one-liners."""
    path = tmp_path / name
    with pytest.raises(ws.SourceNotFound) as info:
        ws.WasmSandbox.builder().source(path).build()
    error = info.value
    assert isinstance(error, ws.SandboxError) and isinstance(error, FileNotFoundError)
    assert (error.errno, error.filename, error.path) == (errno.ENOENT, str(path), str(path))
    assert str(error) == f"source file not found: {path}"
    assert error.cli_exit_status == 66
    with pytest.raises(FileNotFoundError, match="source file not found"):
        ws.run(path, "f")


def test_bad_sources(tmp_path: Path) -> None:
    """Missing files, garbage, bad WAT and unknown suffixes give clear errors."""
    with pytest.raises(FileNotFoundError, match="source file not found"):
        sandbox(tmp_path / "missing.wasm")
    (tmp_path / "junk.wasm").write_bytes(b"\0asm\x01\0\0\0\xff\xff")
    with pytest.raises(ws.InvalidModule, match="Invalid module"):
        sandbox(tmp_path / "junk.wasm")
    with pytest.raises(ws.InvalidModule, match="not a WebAssembly binary"):
        (tmp_path / "text.wasm").write_text("hello")
        sandbox(tmp_path / "text.wasm")
    with pytest.raises(ws.InvalidModule, match="does not assemble"):
        sandbox(b'(module (func (export "f") i32.bogus))')
    with pytest.raises(ws.InvalidModule, match="neither a WebAssembly binary"):
        sandbox(b"\x00\x01\x02")
    with pytest.raises(ws.UnsupportedSource, match=r"unknown source type '\.exe'"):
        sandbox(tmp_path / "prog.exe")
    with pytest.raises(TypeError, match="source must be a path"):
        sandbox(42)  # type: ignore[arg-type]


def test_invalid_module_validation_error() -> None:
    """A module that parses but fails validation is InvalidModule, never a wasmtime error."""
    with pytest.raises(ws.InvalidModule):
        sandbox(b'(module (func (export "f") (result i32) f32.const 1))')


# --- calls -----------------------------------------------------------------------------------


def test_numeric_calls_and_results(calc: ws.WasmSandbox) -> None:
    """i32, i64, f32 and f64 arguments and single, multiple and no results."""
    assert calc.call("add", 5, 3) == 8
    assert calc.call("add", 2**31 - 1, 1) == -(2**31)  # i32 wraps as wasm does
    assert calc.call("add64", 2**40, 2**40) == 2**41
    assert calc.call("mulf", 1.5, 2.0) == 3.0
    assert calc.call("pair") == (1, 2)
    assert calc.call("nothing") is None


def test_exports_lists_functions_without_internals(calc: ws.WasmSandbox) -> None:
    """exports shows the module's functions with their signatures, not our hook's."""
    assert calc.exports["add"] == (("i32", "i32"), ("i32",))
    assert not any(name.startswith("__wsbx") for name in calc.exports)


def test_function_not_found_lists_exports(calc: ws.WasmSandbox) -> None:
    """Calling a missing export raises FunctionNotFound naming the available ones."""
    with pytest.raises(
        ws.FunctionNotFound, match=r"Function not found: 'sub'; exported functions: add"
    ):
        calc.call("sub", 1, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1,), r"add\(i32, i32\) takes 2 argument\(s\), got 1"),
        ((1, "2"), "argument 1 of add \\(i32\\) must be an int, got str"),
        ((1, 2.0), "must be an int, got float"),
        ((1, True), "must be an int, got bool"),
        ((1, 2**32), "out of range"),
    ],
)
def test_wrong_arguments_are_invalid_arguments(
    calc: ws.WasmSandbox, args: tuple[object, ...], message: str
) -> None:
    """Arity, type and range are checked before the guest runs."""
    with pytest.raises(ws.InvalidArguments, match=message):
        calc.call("add", *args)


def test_unsupported_parameter_types(calc: ws.WasmSandbox) -> None:
    """Reference parameters cannot be passed from Python: a clear error."""
    with pytest.raises(ws.InvalidArguments, match="cannot be passed from Python"):
        calc.call("takes_ref", None)


def test_calls_are_isolated_by_default(calc: ws.WasmSandbox) -> None:
    """Each call gets a fresh instance: a global never carries over."""
    assert [calc.call("bump") for _ in range(3)] == [1, 1, 1]


def test_keep_instance_keeps_state_until_closed() -> None:
    """With keep_instance, globals persist across calls; close() starts afresh."""
    with sandbox(CALC, keep_instance=True) as kept:
        assert [kept.call("bump") for _ in range(3)] == [1, 2, 3]
        kept.close()
        assert kept.call("bump") == 1


def test_kept_instance_survives_a_trap_and_timeout() -> None:
    """A kept instance is usable after a call that failed."""
    kept = sandbox(CALC, keep_instance=True, timeout_duration=0.1, max_fuel=None)
    kept.call("bump")
    with pytest.raises(ws.ExecutionTimeout):
        kept.call("spin")
    assert kept.call("bump") == 2


def test_sandboxes_are_isolated_from_each_other() -> None:
    """Two sandboxes of the same module never share an instance."""
    a, b = sandbox(CALC, keep_instance=True), sandbox(CALC, keep_instance=True)
    a.call("bump")
    a.call("bump")
    assert b.call("bump") == 1


def test_profiling_reports_measured_figures(calc: ws.WasmSandbox) -> None:
    """call_with_profiling gives the value, a positive time and the fuel it burned."""
    result = calc.call_with_profiling("add", 1, 2)
    assert result.value == 3
    assert result.execution_time > timedelta(0)
    assert 0 < result.fuel_consumed == result.instruction_count < 100


def test_profiling_on_unmetered_sandbox_uses_a_metered_twin() -> None:
    """Without max_fuel no fuel is counted, yet profiling still measures it."""
    sb = sandbox(CALC, max_fuel=None)
    assert sb.call_with_detailed_monitoring("add", 1, 2).resource_report.fuel_consumed is None
    assert sb.call_with_profiling("add", 1, 2).fuel_consumed > 0
    with pytest.raises(ws.ConfigurationError, match="fuel_metering"):
        sandbox(CALC, max_fuel=None, keep_instance=True).call_with_profiling("add", 1, 2)


def test_detailed_monitoring_report(calc: ws.WasmSandbox) -> None:
    """The report has every seed field, measured, plus the limits in force."""
    report = calc.call_with_detailed_monitoring("add", 1, 2).resource_report
    assert report.peak_memory_bytes == 65536
    assert report.fuel_consumed and report.fuel_consumed > 0
    assert (report.file_operations, report.network_requests, report.bytes_transferred) == (0, 0, 0)
    assert report.memory_limit_bytes == 64 << 20
    assert report.outcome == "ok"
    assert "peak memory" in report.format_table()
    assert '"peak_memory_bytes": 65536' in report.to_json()


def test_run_requires_start(calc: ws.WasmSandbox) -> None:
    """run() on a module without _start is FunctionNotFound whose message points to call()
    and lists what there is to call."""
    with pytest.raises(ws.FunctionNotFound) as info:
        calc.run()
    assert str(info.value).startswith(
        "this module has no _start (it is not a WASI command): call one of its exports with "
        "call(name, ...): add, add64, mulf, pair, nothing, bump"
    )
    assert info.value.name == "_start" and "add" in info.value.available


def test_run_of_a_c_library_points_to_call() -> None:
    """A C source without main is a library: run() names its functions, not the plumbing
    (``_initialize``, the data ABI's ``alloc``/``dealloc``)."""
    source = '#include "wasm_sandbox.h"\nint add(int a, int b) { return a + b; }'
    library = ws.WasmSandbox.builder().source(source).language("c").build()
    with pytest.raises(ws.FunctionNotFound, match=r"with call\(name, \.\.\.\): add$"):
        library.run()
    assert library.call("add", 2, 3) == 5


def test_call_of_function_that_exits_raises_guest_exit() -> None:
    """proc_exit inside call() is GuestExit with the code (run() would return it)."""
    wat = b"""(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "quit") i32.const 9 call $exit))"""
    with pytest.raises(ws.GuestExit) as info:
        sandbox(wat).call("quit")
    assert info.value.exit_code == 9


def test_start_section_runs_under_limits() -> None:
    """A module's start function runs once per instance, under fuel and time limits."""
    wat = b"""(module (global $g (mut i32) (i32.const 0))
      (func $init global.get $g i32.const 10 i32.add global.set $g) (start $init)
      (func (export "get") (result i32) global.get $g))"""
    assert sandbox(wat).call("get") == 10
    spin = b"""(module (func $init (loop br 0)) (start $init) (func (export "get")))"""
    with pytest.raises(ws.FuelExhausted):
        sandbox(spin, max_fuel=10_000).call("get")


def test_reactor_initialize_is_called() -> None:
    """A WASI reactor's _initialize runs before the first call."""
    wat = b"""(module (global $g (mut i32) (i32.const 0))
      (func (export "_initialize") i32.const 5 global.set $g)
      (func (export "get") (result i32) global.get $g))"""
    assert sandbox(wat).call("get") == 5


def test_optimization_levels_all_work() -> None:
    """SPEED, SIZE and NONE compile and run the same module."""
    for level in ws.OptimizationLevel:
        assert sandbox(CALC, optimization_level=level).call("add", 2, 2) == 4


def test_config_without_builder() -> None:
    """WasmSandbox(SandboxConfig(...)) works without the builder."""
    config = ws.SandboxConfig(source=CALC, limits=ws.ResourceLimits(max_fuel=1000))
    assert ws.WasmSandbox(config).call("add", 1, 1) == 2


# --- threads, asyncio, interruption -------------------------------------------------------


def test_concurrent_calls_from_threads(calc: ws.WasmSandbox) -> None:
    """Isolated calls from many threads at once all get their own correct results."""
    results: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(50):
            value = calc.call("add", n, i)
            with lock:
                results.append(value - n - i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 200


def test_async_twin() -> None:
    """build_async() gives an AsyncWasmSandbox with the same methods as coroutines."""

    async def main() -> None:
        sb = await ws.WasmSandbox.builder().source(CALC).build_async()
        assert isinstance(sb, ws.AsyncWasmSandbox)
        assert await sb.call("add", 4, 5) == 9
        assert (await sb.call_with_profiling("add", 1, 1)).value == 2
        assert (await sb.call_with_detailed_monitoring("add", 1, 1)).resource_report.outcome == "ok"
        with pytest.raises(ws.FunctionNotFound):
            await sb.call("missing")

    asyncio.run(main())


def test_async_call_does_not_block_the_event_loop() -> None:
    """While a guest spins, other tasks on the loop keep running."""

    async def main() -> int:
        sb = (
            await ws.WasmSandbox.builder()
            .source(CALC)
            .max_fuel(None)
            .timeout_duration(0.5)
            .build_async()
        )
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        with pytest.raises(ws.ExecutionTimeout):
            await sb.call("spin")
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 20


def test_cancelling_the_task_stops_the_guest() -> None:
    """Cancelling an awaiting task stops the guest promptly and frees the worker thread: with
    a single worker thread, the next call runs right after the cancellation."""

    async def main() -> float:
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=1)
        )
        sb = (
            await ws.WasmSandbox.builder()
            .source(CALC)
            .max_fuel(None)
            .timeout_duration(None)
            .build_async()
        )
        task = asyncio.create_task(sb.call("spin"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        elapsed = time.monotonic() - started
        # a guest still spinning would hold the only thread: this call could never start
        assert await asyncio.wait_for(sb.call("add", 2, 3), timeout=5) == 5
        return elapsed

    assert asyncio.run(main()) < 0.5


def test_async_run_with_stdin(c_guest) -> None:
    """AsyncWasmSandbox.run passes args and stdin like the blocking one."""

    async def main() -> ws.ExecutionResult:
        sb = await ws.WasmSandbox.builder().source(c_guest("probe")).build_async()
        async with sb:
            return await sb.run(["cat"], stdin=b"async")

    assert asyncio.run(main()).stdout == b"async"


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs main thread"
)
def test_keyboard_interrupt_stops_the_guest_and_propagates() -> None:
    """Ctrl-C during a long guest call raises KeyboardInterrupt promptly; the host survives."""
    sb = sandbox(CALC, max_fuel=None, timeout_duration=None)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sb.call("spin")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 1.0
    assert sb.call("add", 1, 1) == 2


def test_bug_in_host_layer_is_host_error_and_sandbox_survives(
    monkeypatch: pytest.MonkeyPatch, c_guest
) -> None:
    """An unexpected exception inside a syscall becomes HostError (cause chained), never a
    crash or a raw exception through wasmtime. A host bug cannot be provoked by a real guest,
    so one is injected here."""
    sb = sandbox(c_guest("probe"))

    def broken(self: WasiContext, fd: int) -> int:
        raise RuntimeError("injected host bug")

    monkeypatch.setattr(WasiContext, "require_fd", broken)
    with pytest.raises(ws.HostError, match="injected host bug") as info:
        sb.run(["hello"])
    assert isinstance(info.value.__cause__, RuntimeError)
    monkeypatch.undo()
    assert sb.run(["hello"]).stdout == b"hello from wasm\n"


def _figures(report: dict[str, object]) -> str:
    """What the log message must say about a report (as ``summary_line`` writes it)."""
    fuel = report["fuel_consumed"]
    fuel_text = (
        "fuel not metered" if fuel is None else f"fuel {fuel} (limit {report['fuel_limit']})"
    )
    return (
        f"{report['outcome']} in "
        + r"[0-9.]+ ms, "
        + re.escape(
            f"{fuel_text}, peak memory 64 KiB (limit 64 MiB), files 0 B read / 0 B written, "
            "network 0 B sent / 0 B received"
        )
    )


def test_verbose_resource_logging_message_carries_the_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """verbose_resource_logging logs every execution at INFO; the message itself states the
    outcome, time, fuel, peak memory and file and network bytes (so a plain formatter shows
    them), and the whole report is a structured field."""
    with caplog.at_level("INFO", logger="wasm_sandbox"):
        sandbox(CALC, verbose_resource_logging=True).call("add", 1, 2)
        with pytest.raises(ws.FuelExhausted) as info:
            sandbox(CALC, verbose_resource_logging=True, max_fuel=1000).call("spin")
    records = [r for r in caplog.records if r.name == "wasm_sandbox"]
    assert [r.levelname for r in records] == ["INFO", "INFO"]
    finished, failed = (r.getMessage() for r in records)
    assert records[0].report["outcome"] == "ok"  # type: ignore[attr-defined]
    assert re.fullmatch("execution finished: " + _figures(records[0].report), finished)  # type: ignore[attr-defined]
    assert records[1].report["outcome"] == "FuelExhausted"  # type: ignore[attr-defined]
    assert re.fullmatch(
        "execution failed: " + _figures(records[1].report) + re.escape(f" ({info.value})"),  # type: ignore[attr-defined]
        failed,
    )


def test_debug_mode_compiles_with_debug_info_and_logs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """debug_mode compiles native debug info (DWARF) into the guest's machine code, where a
    plain build has none, and logs the build and one record with the report's figures per
    execution, at DEBUG level."""
    # a module no other test compiles, so it is not already in the process's module cache
    fresh = f'(module (func (export "f{uuid.uuid4().hex}")))'.encode()
    for debug in (False, True):
        cache = tmp_path / f"debug-{debug}"
        sandbox(fresh, debug_mode=debug, cache_dir=cache)
        (artifact,) = cache.rglob("*.cwasm")  # the compiled code, an ELF object
        assert (b".debug_info" in artifact.read_bytes()) is debug
    with caplog.at_level("DEBUG", logger="wasm_sandbox"):
        sb = sandbox(CALC, debug_mode=True)
        assert sb.call("add", 2, 3) == 5
        assert sb.call("add", 2, 4) == 6
        with pytest.raises(ws.UnreachableExecuted):
            sandbox(b'(module (func (export "u") unreachable))', debug_mode=True).call("u")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "wasm_sandbox"]
    assert [m for _, m in messages if m == "sandbox built"] == ["sandbox built"] * 2
    executions = [(level, m) for level, m in messages if m.startswith("execution")]
    assert [(level, m.split(":")[0]) for level, m in executions] == [
        ("DEBUG", "execution finished"),
        ("DEBUG", "execution finished"),
        ("DEBUG", "execution failed"),
    ]
    assert re.match(r"execution finished: ok in [0-9.]+ ms, fuel 4 \(limit", executions[0][1])
    assert executions[2][1].startswith("execution failed: UnreachableExecuted in ")


def test_no_execution_records_without_verbose_or_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Without verbose_resource_logging or debug_mode, executions log nothing."""
    with caplog.at_level("DEBUG", logger="wasm_sandbox"):
        sandbox(CALC).call("add", 1, 2)
    assert not [r for r in caplog.records if r.getMessage().startswith("execution")]


FILE_WRITER_C = """
#include <stdio.h>
int main(void) {
    FILE *f = fopen("/tmp/out.txt", "w");
    fputs("hello", f);
    fclose(f);
    char buf[16];
    f = fopen("/tmp/out.txt", "r");
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == 5 ? 0 : 1;
}
"""


def test_plain_basic_config_shows_the_execution_figures(tmp_path: Path) -> None:
    """In a fresh process, logging.basicConfig(level=INFO) with its default format prints the
    execution's figures (file bytes included) from verbose_resource_logging on stderr."""
    script = tmp_path / "show.py"
    script.write_text(
        "import logging, sys\n"
        "import wasm_sandbox as ws\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "box = (ws.WasmSandbox.builder().source(sys.argv[1]).language('c')\n"
        "       .memory_fs('/tmp').verbose_resource_logging(True).build())\n"
        "print(box.run().exit_code)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), FILE_WRITER_C],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(ws.__file__).parent.parent)},
    )
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
    lines = [line for line in done.stderr.splitlines() if "execution" in line]
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        r"INFO:wasm_sandbox:execution finished: ok in [0-9.]+ ms, fuel \d+ \(limit 10000000000\), "
        r"peak memory [0-9.]+ KiB \(limit 64 MiB\), files 5 B read / 5 B written, "
        r"network 0 B sent / 0 B received",
        lines[0],
    )


def test_kept_instance_whose_start_failed_is_not_kept() -> None:
    """If the start function fails, the half-built instance is dropped and retried next call."""
    wat = b"""(module (global $runs (mut i32) (i32.const 0))
      (func $init (if (i32.eqz (global.get $runs)) (then (loop br 0)))) (start $init)
      (func (export "get") (result i32) global.get $runs))"""
    kept = sandbox(wat, keep_instance=True, max_fuel=10_000)
    for _ in range(2):  # start spins each time: every call pays it again, none is kept
        with pytest.raises(ws.FuelExhausted):
            kept.call("get")


def test_report_names_the_profile() -> None:
    """The report says which profile the limits came from, or None for hand-set limits."""
    light = (
        ws.WasmSandbox.builder()
        .source(CALC)
        .resource_profile(ws.ResourceProfile.LIGHTWEIGHT)
        .build()
    )
    assert light.call_with_detailed_monitoring("add", 1, 1).resource_report.profile == "lightweight"
    assert (
        sandbox(CALC).call_with_detailed_monitoring("add", 1, 1).resource_report.profile
        == "standard"
    )
    custom = sandbox(CALC, memory_limit=1 << 20)
    assert custom.call_with_detailed_monitoring("add", 1, 1).resource_report.profile is None

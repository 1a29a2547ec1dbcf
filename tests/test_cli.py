"""The ``wasm-sandbox`` command, run for real in a subprocess against real guests: help and
version, output pass-through, the report, exit statuses for every limit, --json, --invoke,
guest arguments, environment and stdin, profiles, and clear messages for bad usage."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox
from tests.netservers import echo_server

SRC = Path(__file__).resolve().parents[1] / "src"
MiB = 1024 * 1024

ADD_WAT = """(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
"""

RUN_OPTIONS = [
    "--memory",
    "--memory-growth",
    "--fuel",
    "--timeout",
    "--profile",
    "--json",
    "--env",
    "--stdin",
    "--invoke",
    "--opt-level",
    "--no-cache",
    "--max-output",
    "--mount",
    "--memory-fs",
    "--io-limit",
    "--strict-io",
    "--max-module-size",
    "--max-functions",
    "--build-timeout",
    "--build-memory",
    "-c CODE",
    "--language",
    "--quiet",
    "--allow-network",
    "--allow-private",
    "--strict-network",
]


@dataclass(frozen=True)
class Cli:
    """What one run of the command did."""

    status: int
    out: str
    err: str
    seconds: float

    def json(self) -> dict[str, Any]:
        """stdout parsed as exactly one JSON object (extra text makes json.loads fail)."""
        payload = json.loads(self.out)
        assert isinstance(payload, dict), payload
        return payload


CliRunner = Callable[..., Cli]


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compiled-module cache for this module's command runs (first compile only once)."""
    return tmp_path_factory.mktemp("cli-cache")


def _run_cli(
    *args: object,
    cache_dir: Path,
    stdin: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> Cli:
    env = dict(
        os.environ, PYTHONPATH=str(SRC), WASM_SANDBOX_CACHE_DIR=str(cache_dir), **(env or {})
    )
    io: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "wasm_sandbox", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=timeout,
        check=False,
        **io,
    )
    return Cli(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@pytest.fixture
def cli(cli_cache: Path) -> CliRunner:
    """``cli("run", file, ...)`` runs ``python -m wasm_sandbox`` with an isolated cache."""

    def run(
        *args: object,
        stdin: str | None = None,
        cache_dir: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Cli:
        cache = cache_dir or cli_cache
        return _run_cli(*args, cache_dir=cache, stdin=stdin, env=env, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def probe(c_guest: Callable[[str], Path]) -> Path:
    return c_guest("probe")


@pytest.fixture
def add_wat(tmp_path: Path) -> Path:
    path = tmp_path / "add.wat"
    path.write_text(ADD_WAT)
    return path


def _no_traceback(result: Cli) -> None:
    assert "Traceback" not in result.err, result.err
    assert "Traceback" not in result.out, result.out


# --- help and version ------------------------------------------------------------------------


def test_run_help_documents_every_option_and_the_exit_statuses(cli: CliRunner) -> None:
    """`run --help` lists every option of `run` and what each exit status means."""
    result = cli("run", "--help")
    assert result.status == 0, result.err
    for option in RUN_OPTIONS:
        assert option in result.out, f"{option} missing from run --help"
    assert "exit status" in result.out
    for status, meaning in [
        ("1", "raised or reported an error"),
        ("2", "bad command line"),
        ("65", "invalid module"),
        ("66", "does not exist"),
        ("69", "compiler or runtime"),
        ("70", "trapped"),
        ("71", "internal error"),
        ("75", "lost session"),
        ("120", "memory limit"),
        ("121", "fuel"),
        ("122", "file-system limit"),
        ("123", "network limit"),
        ("124", "timeout"),
        ("126", "network policy"),
        ("130", "interrupted"),
    ]:
        lines = [line for line in result.out.splitlines() if line.split()[:1] == [status]]
        assert lines and meaning in lines[0], f"exit status {status} ({meaning}) not documented"
    assert "proc_exit (GuestExit)" in result.out


def test_every_error_class_has_a_documented_exit_status(cli: CliRunner) -> None:
    """Each public error class's cli_exit_status is one that `run --help` documents."""
    documented = {
        int(line.split()[0])
        for line in cli("run", "--help").out.splitlines()
        if line[:2] == "  " and line.split()[:1] and line.split()[0].isdigit()
    }
    errors = [
        cls
        for name in wasm_sandbox.__all__
        if isinstance(cls := getattr(wasm_sandbox, name), type) and issubclass(cls, Exception)
    ]
    assert len(errors) > 30
    for cls in errors:
        assert issubclass(cls, wasm_sandbox.SandboxError), cls
        assert cls.cli_exit_status in documented, cls


def test_top_level_help_names_the_run_command_and_exit_statuses(cli: CliRunner) -> None:
    """`--help` names the `run` command and documents the exit statuses too."""
    result = cli("--help")
    assert result.status == 0, result.err
    assert "run" in result.out
    assert "exit status" in result.out
    assert "124" in result.out and "120" in result.out


ROOT = SRC.parent
_EXAMPLE_PATH = re.compile(r"[\w./-]+\.(?:wasm|wat|c|rs|py|js)\b")


@pytest.mark.parametrize("command", [[], ["run"], ["prepare"]], ids=["top", "run", "prepare"])
def test_every_file_the_help_names_exists(cli: CliRunner, command: list[str]) -> None:
    """The help's examples run as written from the repository: every guest file it names
    exists there."""
    text = cli(*command, "--help").out
    named = set(_EXAMPLE_PATH.findall(text))
    assert command != ["run"] or {"examples/hello.wat", "examples/calculator.rs"} <= named
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"--help names files the repository lacks: {missing}"


def test_every_example_path_in_the_docs_exists() -> None:
    """Paths README.md and the docs pages give under examples/, tests/, bench/ and src/ exist
    (results a benchmark run writes aside)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    text = "".join(page.read_text() for page in pages)
    named = set(re.findall(r"\b(?:examples|tests|bench|src)/[\w./-]*\w", text))
    named = {path for path in named if not path.startswith("bench/results/")}
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"the documentation names paths the repository lacks: {missing}"


def test_version_prints_the_package_version(cli: CliRunner) -> None:
    """`--version` prints the program name and the package's version, then exits 0."""
    result = cli("--version")
    assert result.status == 0
    assert result.out.strip() == f"wasm-sandbox {wasm_sandbox.__version__}"


def test_no_command_is_a_usage_error(cli: CliRunner) -> None:
    """Without a command the usage is shown and the status is 2."""
    result = cli()
    assert result.status == 2
    assert "usage:" in result.err
    _no_traceback(result)


# --- a normal run ----------------------------------------------------------------------------


def test_guest_stdout_passes_through_and_report_goes_to_stderr(cli: CliRunner, probe: Path) -> None:
    """The guest's stdout is the command's stdout, untouched; the report table is on stderr."""
    result = cli("run", probe, "--", "hello")
    assert result.status == 0, result.err
    assert result.out == "hello from wasm\n"
    for text in ("Resource Usage Report", "peak memory", "fuel consumed", "execution time"):
        assert text in result.err


def test_exit_status_is_the_guests_exit_code(cli: CliRunner, probe: Path) -> None:
    """A guest that calls exit(7) makes the command exit with 7, not an error status."""
    result = cli("run", probe, "--", "exit", "7")
    assert result.status == 7, result.err
    assert "outcome" in result.err and "exit" in result.err
    _no_traceback(result)


# --- limits and their exit statuses ----------------------------------------------------------


def test_memory_limit_exits_120_with_exact_message(cli: CliRunner, probe: Path) -> None:
    """--memory 8MiB stops a guest allocating 64 MiB: status 120 and the limit in bytes."""
    result = cli("run", "--memory", "8MiB", probe, "--", "alloc", "64")
    assert result.status == 120, result.err
    assert "Memory limit exceeded: used " in result.err
    assert ", limit 8388608" in result.err
    assert "allocated" not in result.out
    _no_traceback(result)


def test_memory_growth_limit_exits_120(cli: CliRunner, probe: Path) -> None:
    """--memory-growth 64KiB refuses the guest's 1 MiB malloc: status 120, per-grow cap named."""
    result = cli("run", "--memory-growth", "64KiB", probe, "--", "alloc", "1")
    assert result.status == 120, result.err
    assert "limit 65536" in result.err
    assert "memory_growth_limit" in result.err


def test_fuel_limit_exits_121_with_exact_message(cli: CliRunner, probe: Path) -> None:
    """--fuel 1M stops a spinning guest: status 121, used == limit == 1000000."""
    result = cli("run", "--fuel", "1M", probe, "--", "spin")
    assert result.status == 121, result.err
    assert "Fuel exhausted: used 1000000, limit 1000000" in result.err
    _no_traceback(result)


def test_timeout_exits_124_on_time(cli: CliRunner, probe: Path) -> None:
    """--timeout 300ms stops a spinning guest (unlimited fuel) within a sane time: status 124."""
    result = cli("run", "--timeout", "300ms", "--fuel", "unlimited", probe, "--", "spin")
    assert result.status == 124, result.err
    assert "Execution timeout after 0.3 seconds" in result.err
    assert 0.3 <= result.seconds < 10, result.seconds
    _no_traceback(result)


def test_timeout_report_in_json_measures_the_run(cli: CliRunner, probe: Path) -> None:
    """With --json the timed-out run's report shows the limit and about that much time."""
    result = cli("run", "--json", "--timeout", "300ms", probe, "--", "sleep", "10000")
    assert result.status == 124, result.err
    payload = result.json()
    assert payload["outcome"] == "ExecutionTimeout"
    assert payload["report"]["timeout"] == 0.3
    assert 0.3 <= payload["report"]["execution_time"] < 1.0


def test_trap_exits_70(cli: CliRunner, probe: Path) -> None:
    """A guest that aborts (wasm unreachable) makes the command exit with 70."""
    result = cli("run", probe, "--", "abort")
    assert result.status == 70, result.err
    assert "UnreachableExecuted" in result.err
    assert "Resource Usage Report" in result.err
    _no_traceback(result)


def test_trap_message_says_what_trapped(cli: CliRunner, probe: Path) -> None:
    """The trap's error message names its cause (the wasm `unreachable` instruction), not
    only a header such as 'error while executing at wasm backtrace:'."""
    payload = cli("run", "--json", probe, "--", "abort").json()
    assert payload["outcome"] == "UnreachableExecuted"
    message = payload["error"]
    assert message.startswith("Guest trapped")
    assert "unreachable" in message.lower(), message
    assert not message.endswith(":"), message


# --- --json ----------------------------------------------------------------------------------


def test_json_success_is_one_object_with_output_and_report(cli: CliRunner, probe: Path) -> None:
    """--json prints one JSON object on stdout: outcome, exit code, guest output, report."""
    result = cli("run", "--json", probe, "--", "hello")
    assert result.status == 0, result.err
    payload = result.json()
    assert payload["outcome"] == "ok"
    assert payload["exit_code"] == 0
    assert payload["stdout"] == "hello from wasm\n"
    assert payload["stderr"] == ""
    assert payload["stdout_truncated"] is False
    report = payload["report"]
    assert report["outcome"] == "ok"
    assert report["stdout_bytes"] == len("hello from wasm\n")
    assert report["peak_memory_bytes"] > 0
    assert report["fuel_consumed"] > 0
    assert report["memory_limit_bytes"] == 64 * MiB
    assert "Resource Usage Report" not in result.err


def test_json_exit_code_is_reported_and_is_the_status(cli: CliRunner, probe: Path) -> None:
    """A non-zero guest exit is outcome 'exit' in JSON, and still the command's status."""
    result = cli("run", "--json", probe, "--", "exit", "7")
    assert result.status == 7
    payload = result.json()
    assert (payload["outcome"], payload["exit_code"]) == ("exit", 7)


def test_json_error_has_class_name_message_and_report(cli: CliRunner, probe: Path) -> None:
    """On a limit error --json gives the error's class, its message and the report."""
    result = cli("run", "--json", "--memory", "8MiB", probe, "--", "alloc", "64")
    assert result.status == 120
    payload = result.json()
    assert payload["outcome"] == "MemoryLimitExceeded"
    assert payload["error"].startswith("Memory limit exceeded: used ")
    assert ", limit 8388608 (tried to allocate " in payload["error"]
    assert payload["error"].endswith("; the limit is 8 MiB)")
    report = payload["report"]
    assert report["outcome"] == "MemoryLimitExceeded"
    assert report["memory_limit_hit"] is True
    assert report["memory_limit_bytes"] == 8 * MiB
    assert report["peak_memory_bytes"] <= 8 * MiB


def test_json_fuel_error(cli: CliRunner, probe: Path) -> None:
    """FuelExhausted in --json: exact message and fuel figures in the report."""
    result = cli("run", "--json", "--fuel", "1M", probe, "--", "spin")
    assert result.status == 121
    payload = result.json()
    assert payload["outcome"] == "FuelExhausted"
    assert payload["error"] == "Fuel exhausted: used 1000000, limit 1000000"
    assert payload["report"]["fuel_consumed"] == 1_000_000
    assert payload["report"]["fuel_limit"] == 1_000_000


def test_json_invalid_module_is_an_error_object(cli: CliRunner, tmp_path: Path) -> None:
    """An invalid module under --json is still one JSON object naming InvalidModule; status 65."""
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x99\x99\x99\x99garbage")
    result = cli("run", "--json", bad)
    assert result.status == 65
    payload = result.json()
    assert payload["outcome"] == "InvalidModule"
    assert payload["error"].startswith("Invalid module")


def test_build_budget_refuses_a_module_with_status_65(cli: CliRunner, tmp_path: Path) -> None:
    """--max-functions refuses a module defining more, before compiling it: BuildLimitExceeded."""
    many = tmp_path / "many.wat"
    many.write_text("(module" + ' (func (export "f"))' + " (func)" * 99 + ")")
    result = cli("run", "--json", "--max-functions", "50", many)
    assert result.status == 65
    payload = result.json()
    assert payload["outcome"] == "BuildLimitExceeded"
    assert payload["error"] == (
        "Build limit exceeded: max_functions (the module defines 100 functions, limit 50)"
    )


def test_build_timeout_compiles_in_a_child_and_runs(cli: CliRunner, add_wat: Path) -> None:
    """With a build budget (--build-timeout, --build-memory, --max-module-size) the module is
    compiled in a child process, and the invoked function still returns its value."""
    result = cli(
        "run", "--build-timeout", "30s", "--build-memory", "1GiB", "--max-module-size", "1MiB",
        "--invoke", "add", add_wat, "--", "5", "3",
    )  # fmt: skip
    assert (result.status, result.out) == (0, "8\n"), result.err


# --- --invoke --------------------------------------------------------------------------------


def test_invoke_calls_an_export_with_numeric_args(cli: CliRunner, add_wat: Path) -> None:
    """`--invoke add FILE -- 5 3` prints the function's result, 8."""
    result = cli("run", "--invoke", "add", add_wat, "--", "5", "3")
    assert result.status == 0, result.err
    assert result.out == "8\n"
    assert "Resource Usage Report" in result.err


def test_invoke_accepts_negative_numbers_after_double_dash(cli: CliRunner, add_wat: Path) -> None:
    """Arguments after `--` that look like options (-5) are numbers for the function."""
    result = cli("run", "--invoke", "add", add_wat, "--", "-5", "3")
    assert result.status == 0, result.err
    assert result.out == "-2\n"


def test_invoke_json_has_the_value(cli: CliRunner, add_wat: Path) -> None:
    """--invoke with --json puts the return value in the object."""
    payload = cli("run", "--json", "--invoke", "add", add_wat, "--", "5", "3").json()
    assert payload["outcome"] == "ok"
    assert payload["value"] == 8
    assert payload["report"]["outcome"] == "ok"


def test_invoke_of_a_missing_export_is_a_clear_error(cli: CliRunner, add_wat: Path) -> None:
    """Invoking an export that does not exist fails (65) with a message listing those that
    do."""
    result = cli("run", "--invoke", "nope", add_wat)
    assert result.status == 65
    assert "nope" in result.err and "add" in result.err
    _no_traceback(result)


def test_invoke_with_a_non_numeric_argument_is_a_usage_error(cli: CliRunner, add_wat: Path) -> None:
    """A non-number argument for --invoke is refused with status 2 and a clear message."""
    result = cli("run", "--invoke", "add", add_wat, "--", "5", "x")
    assert result.status == 2
    assert "numbers" in result.err and "'x'" in result.err
    _no_traceback(result)


QUIT_WAT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (func (export "quit") (param i32) local.get 0 call $exit))
"""


@pytest.mark.parametrize("code", [3, 0, 300])
def test_invoke_of_a_function_that_exits_has_the_guests_exit_status(
    cli: CliRunner, tmp_path: Path, code: int
) -> None:
    """--invoke of a function that calls proc_exit(n) exits with n (modulo 256, as a process
    exit status is), not 71: the guest's outcome, not an internal error."""
    wat = tmp_path / "quit.wat"
    wat.write_text(QUIT_WAT)
    result = cli("run", "--invoke", "quit", wat, "--", code)
    assert result.status == code & 0xFF, result.err
    assert f"GuestExit: Guest exited with code {code}" in result.err
    assert "internal error" not in result.err
    _no_traceback(result)


def test_invoke_of_a_raising_guest_function_exits_1(cli: CliRunner, tmp_path: Path) -> None:
    """--invoke of a JavaScript function that throws exits 1 (GuestError), as a script with
    an uncaught exception does, and shows the guest's error."""
    js = tmp_path / "fail.js"
    js.write_text("function fail(n) { throw new RangeError(`bad ${n}`); }\n")
    result = cli("run", "--invoke", "fail", js, "--", "7", timeout=120)
    assert result.status == 1, result.err
    assert "GuestError: RangeError: bad 7" in result.err
    _no_traceback(result)


def test_missing_compiler_exits_69(cli: CliRunner, tmp_path: Path) -> None:
    """A C source whose compiler is not installed exits 69, naming the packages."""
    source = tmp_path / "prog.c"
    source.write_text("int main(void) { return 0; }\n")
    result = cli("run", source, env={"WASM_SANDBOX_CLANG": str(tmp_path / "no-such-clang")})
    assert result.status == 69, result.err
    assert "ToolchainNotFound" in result.err or "apt-get install clang-14" in result.err
    _no_traceback(result)


def test_initial_memory_over_the_limit_exits_120(cli: CliRunner, tmp_path: Path) -> None:
    """A module whose initial memory is larger than --memory is refused at build with the
    memory limit's status."""
    wat = tmp_path / "big.wat"
    wat.write_text('(module (memory (export "memory") 4) (func (export "_start")))')
    result = cli("run", "--memory", "64KiB", wat)
    assert result.status == 120, result.err
    assert "initial memory, 256 KiB, is larger than memory_bytes, 64 KiB" in result.err
    _no_traceback(result)


def test_ctrl_c_exits_130(cli_cache: Path, probe: Path, tmp_path: Path) -> None:
    """SIGINT while the command runs a spinning guest stops it: exit 130, no traceback. The
    guest's stdin is a FIFO, so the test knows when the command is past start-up (it opens
    the FIFO after building the sandbox)."""
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(SRC), WASM_SANDBOX_CACHE_DIR=str(cli_cache))
    command = [sys.executable, "-m", "wasm_sandbox", "run", "--fuel", "unlimited"]
    proc = subprocess.Popen(
        [*command, "--stdin", str(fifo), str(probe), "--", "spin"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with open(fifo, "wb"):  # returns once the command opened it: it is in main()
            pass  # EOF: the guest starts spinning
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"wasm-sandbox: interrupted" in err
    assert b"Traceback" not in err


# --- guest arguments, environment, stdin -----------------------------------------------------


def test_guest_args_after_double_dash_reach_the_guest(cli: CliRunner, probe: Path) -> None:
    """Everything after `--` is the guest's argv (after argv[0], the file name)."""
    result = cli("run", probe, "--", "args", "--flag", "two words", "-x")
    assert result.status == 0, result.err
    assert result.out == f"[{probe.name}][args][--flag][two words][-x]\n"


def test_env_option_sets_guest_variables(cli: CliRunner, probe: Path) -> None:
    """--env NAME=VALUE (repeatable; the value may contain '=') reaches the guest's getenv."""
    first = cli("run", "--env", "A=B", "--env", "C=x=y", probe, "--", "env", "A")
    assert (first.status, first.out) == (0, "B\n"), first.err
    second = cli("run", "--env", "A=B", "--env", "C=x=y", probe, "--", "env", "C")
    assert second.out == "x=y\n"


def test_host_environment_is_not_passed_to_the_guest(cli: CliRunner, probe: Path) -> None:
    """Without --env the guest sees no variables, not even PYTHONPATH from the host."""
    result = cli("run", probe, "--", "env", "PYTHONPATH")
    assert result.out == "(unset)\n"


def test_stdin_option_feeds_a_file(cli: CliRunner, probe: Path, tmp_path: Path) -> None:
    """--stdin FILE gives the file's bytes to the guest as its standard input."""
    data = tmp_path / "input.txt"
    data.write_text("from a file\n")
    result = cli("run", "--stdin", data, probe, "--", "cat")
    assert result.status == 0, result.err
    assert result.out == "from a file\n"
    assert "read 12 bytes" in result.err


def test_parent_stdin_is_piped_to_the_guest(cli: CliRunner, probe: Path) -> None:
    """Without --stdin, the command's own standard input reaches the guest."""
    result = cli("run", probe, "--", "cat", stdin="piped through\n")
    assert result.status == 0, result.err
    assert result.out == "piped through\n"
    assert "read 14 bytes" in result.err


def test_missing_stdin_file_is_a_usage_error(cli: CliRunner, probe: Path, tmp_path: Path) -> None:
    """A --stdin file that does not exist is refused with status 2, naming the file."""
    result = cli("run", "--stdin", tmp_path / "absent.txt", probe, "--", "cat")
    assert result.status == 2
    assert "absent.txt" in result.err
    _no_traceback(result)


# --- profiles, output cap, optimisation, cache -----------------------------------------------


def test_profile_lightweight_applies_its_limits(cli: CliRunner, probe: Path) -> None:
    """--profile lightweight: 16 MiB, 100M fuel and 5 s are the limits in the report."""
    payload = cli("run", "--json", "--profile", "lightweight", probe, "--", "hello").json()
    report = payload["report"]
    assert report["memory_limit_bytes"] == 16 * MiB
    assert report["fuel_limit"] == 100_000_000
    assert report["timeout"] == 5.0


def test_explicit_limit_overrides_the_profile(cli: CliRunner, probe: Path) -> None:
    """--memory given with --profile replaces only the profile's memory cap."""
    payload = cli(
        "run", "--json", "--profile", "lightweight", "--memory", "32MiB", probe, "--", "hello"
    ).json()
    assert payload["report"]["memory_limit_bytes"] == 32 * MiB
    assert payload["report"]["fuel_limit"] == 100_000_000


def test_profile_lightweight_memory_is_enforced(cli: CliRunner, probe: Path) -> None:
    """Under the lightweight profile a 64 MiB allocation hits the 16 MiB cap: status 120."""
    result = cli("run", "--profile", "lightweight", probe, "--", "alloc", "64")
    assert result.status == 120
    assert ", limit 16777216" in result.err


def test_max_output_truncates_and_says_so(cli: CliRunner, probe: Path) -> None:
    """--max-output caps the captured stdout and a note says the output was truncated."""
    result = cli("run", "--max-output", "100", probe, "--", "print", "1000")
    assert result.status == 0, result.err
    assert result.out == "x" * 100
    assert "truncated" in result.err


@pytest.mark.parametrize("level", ["speed", "size", "none"])
def test_every_opt_level_runs_the_guest(cli: CliRunner, probe: Path, level: str) -> None:
    """Each --opt-level compiles a working guest."""
    result = cli("run", "--opt-level", level, probe, "--", "hello")
    assert (result.status, result.out) == (0, "hello from wasm\n"), result.err


def test_no_cache_writes_nothing_and_default_writes_an_artifact(
    cli: CliRunner, probe: Path, tmp_path: Path
) -> None:
    """--no-cache leaves the cache directory untouched; without it a .cwasm is written."""
    cache = tmp_path / "cache"
    result = cli("run", "--no-cache", probe, "--", "hello", cache_dir=cache)
    assert result.out == "hello from wasm\n"
    assert not cache.exists() or not any(cache.iterdir())
    result = cli("run", probe, "--", "hello", cache_dir=cache)
    assert result.out == "hello from wasm\n"
    assert len(list(cache.glob("*.cwasm"))) == 1


# --- bad usage -------------------------------------------------------------------------------


def test_bad_memory_size_is_a_clear_usage_error(cli: CliRunner, probe: Path) -> None:
    """--memory banana: status 2 and a message quoting the bad size."""
    result = cli("run", "--memory", "banana", probe)
    assert result.status == 2
    assert "banana" in result.err and "size" in result.err
    _no_traceback(result)


def test_memory_below_one_page_is_a_clear_error(cli: CliRunner, probe: Path) -> None:
    """A memory cap below one wasm page is refused (65) before running, naming the minimum."""
    result = cli("run", "--memory", "1k", probe)
    assert result.status == 65
    assert "65536" in result.err
    _no_traceback(result)


def test_env_without_equals_is_a_clear_usage_error(cli: CliRunner, probe: Path) -> None:
    """--env NOEQUALS: status 2 and a message showing the expected NAME=VALUE form."""
    result = cli("run", "--env", "NOEQUALS", probe)
    assert result.status == 2
    assert "NAME=VALUE" in result.err and "NOEQUALS" in result.err
    _no_traceback(result)


def test_missing_file_is_a_clear_error(cli: CliRunner, tmp_path: Path) -> None:
    """A guest file that does not exist: exit 66 (SourceNotFound, sysexits' EX_NOINPUT), a
    message naming it as not found; also with --language (the command reads it then)."""
    for extra in ([], ["--language", "c"]):
        result = cli("run", *extra, tmp_path / "absent.wasm")
        assert result.status == 66, result.err
        assert "not found" in result.err.lower() and "absent.wasm" in result.err
        _no_traceback(result)


def test_a_module_without_start_points_to_invoke(cli: CliRunner) -> None:
    """run of a library module (no _start) says to --invoke one of its functions, named."""
    result = cli("run", ROOT / "examples" / "calculator.wat")
    assert result.status == 65
    assert (
        "calculator.wat has no _start (it is not a WASI command): call one of its exports "
        "with --invoke NAME [-- ARG...]: add, fib" in result.err
    )
    _no_traceback(result)


def _code(*args: object, cache: Path, stdin: str | None = None) -> Cli:
    """The command on the run's cache, which holds the prepared Python and JS runtimes."""
    return _run_cli("run", *args, cache_dir=cache, stdin=stdin, timeout=120)


def test_inline_code_runs_as_python_with_its_arguments(_isolated_cache: Path) -> None:
    """-c CODE runs Python given inline, ARGs after -- (or after the code) as its argv, and
    prints the report; --quiet leaves only the guest's output and exit status, and one line
    when it fails."""
    argv = "import sys; print(sys.argv[1:]); sys.exit(3)"
    result = _code("-c", argv, "--", "a", "-b", cache=_isolated_cache)
    assert (result.status, result.out) == (3, "['a', '-b']\n")
    assert "peak memory" in result.err
    assert _code("-c", argv, "a", cache=_isolated_cache).out == "['a']\n"
    quiet = _code("--quiet", "-c", "print(2 + 2)", cache=_isolated_cache)
    assert (quiet.status, quiet.out, quiet.err) == (0, "4\n", "")
    stopped = _code("-q", "--timeout", "300ms", "-c", "while True: pass", cache=_isolated_cache)
    assert stopped.status == 124 and stopped.out == ""
    assert stopped.err.count("\n") == 1 and "ExecutionTimeout" in stopped.err
    _no_traceback(stopped)


def test_language_names_what_the_source_is(_isolated_cache: Path, tmp_path: Path) -> None:
    """--language: JavaScript with -c, a C source in a file whose extension does not tell,
    and sources read from stdin ('-'): Python, and a WAT module without --language."""
    js = _code("-q", "--language", "javascript", "-c", "console.log(6 * 7)", cache=_isolated_cache)
    assert (js.status, js.out) == (0, "42\n")
    source = tmp_path / "prog.txt"
    source.write_text('#include <stdio.h>\nint main(void) { puts("from C"); return 5; }\n')
    c = _code("-q", "--language", "c", source, cache=_isolated_cache)
    assert (c.status, c.out) == (5, "from C\n")
    piped = _code("-q", "--language", "python", "-", cache=_isolated_cache, stdin="print('piped')")
    assert (piped.status, piped.out) == (0, "piped\n")
    wat = (ROOT / "examples" / "hello.wat").read_text()
    module = _code("-q", "-", cache=_isolated_cache, stdin=wat)
    assert (module.status, module.out) == (0, "Hello from inside the sandbox!\n")
    assert _code("-q", cache=_isolated_cache).status == 2  # neither FILE nor -c


ECHO_CLIENT = """import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    s.sendall(b"ping")
    print(s.recv(4).decode())
"""


def test_network_flags_allow_what_they_name(_isolated_cache: Path) -> None:
    """No network by default (the guest's connect fails: exit 1; with --strict-network the
    refusal stops it: exit 126); --allow-network HOST:PORT lets it through."""
    with echo_server() as server:
        target = ("127.0.0.1", server.port)
        allowed = _code(
            "-q", "--allow-network", f"127.0.0.1:{server.port}", "-c", ECHO_CLIENT, "--",
            *target, cache=_isolated_cache,
        )  # fmt: skip
        assert (allowed.status, allowed.out) == (0, "ping\n"), allowed.err
        refused = _code("-q", "-c", ECHO_CLIENT, "--", *target, cache=_isolated_cache)
        assert refused.status == 1 and refused.out == ""
        strict = _code(
            "-q", "--strict-network", "-c", ECHO_CLIENT, "--", *target, cache=_isolated_cache
        )
        assert strict.status == 126 and "SecurityViolation" in strict.err


def test_allow_private_lets_a_name_reach_a_private_address(_isolated_cache: Path) -> None:
    """A name pattern that resolves to a private or loopback address is refused unless
    --allow-private (here: this machine's host name); alone, --allow-private is a usage
    error."""
    name = socket.gethostname()
    try:
        address = ipaddress.ip_address(socket.gethostbyname(name))
    except (OSError, ValueError):
        pytest.skip(f"the host name {name!r} does not resolve")
    if not (address.is_private or address.is_loopback) or not name.replace("-", "").isalnum():
        pytest.skip(f"the host name {name!r} resolves to {address}, not a private address")
    with echo_server(str(address)) as server:
        flags = ["-q", "--allow-network", f"{name}:{server.port}"]
        args = ["-c", ECHO_CLIENT, "--", name, server.port]
        assert _code(*flags, *args, cache=_isolated_cache).status == 1
        allowed = _code(*flags, "--allow-private", *args, cache=_isolated_cache)
        assert (allowed.status, allowed.out) == (0, "ping\n"), allowed.err
    alone = _code("--allow-private", "-c", "pass", cache=_isolated_cache)
    assert alone.status == 2 and "--allow-network" in alone.err


def test_python_scripts_run(_isolated_cache: Path, tmp_path: Path) -> None:
    """wasm-sandbox run FILE.py runs the script on the WebAssembly CPython, with its argv,
    exit status and limits. The runtime is compiled (once per test run) in this process
    first, into the cache the command then uses."""
    wasm_sandbox.WasmSandbox.builder().source("x = 1").language("python").max_fuel(None).build()
    source = tmp_path / "main.py"
    source.write_text("import sys\nprint('hi', sys.argv[1:])\nsys.exit(4)\n")
    run = ["run", "--fuel", "unlimited"]
    result = _run_cli(*run, source, "--", "a", cache_dir=_isolated_cache, timeout=120)
    assert (result.status, result.out) == (4, "hi ['a']\n")
    source.write_text("while True: pass\n")
    result = _run_cli(*run, "--timeout", "300ms", source, cache_dir=_isolated_cache, timeout=120)
    assert result.status == 124 and "timeout" in result.err.lower()
    _no_traceback(result)


def test_rust_and_c_sources_are_compiled_and_run(cli: CliRunner, tmp_path: Path) -> None:
    """wasm-sandbox run FILE.rs / FILE.c compiles the source, then runs it under limits."""
    rust = tmp_path / "main.rs"
    rust.write_text('fn main() { println!("hello from rust"); std::process::exit(3); }\n')
    result = cli("run", rust)
    assert (result.status, result.out) == (3, "hello from rust\n")
    c = tmp_path / "calc.c"
    c.write_text("int add(int a, int b) { return a + b; }\n")
    assert cli("run", "--invoke", "add", c, "--", "5", "3").out.splitlines()[0] == "8"


def test_compile_error_is_reported_with_diagnostics(cli: CliRunner, tmp_path: Path) -> None:
    """A source that does not compile exits 65 with the compiler's message."""
    c = tmp_path / "bad.c"
    c.write_text("int main(void) { return undefined_name; }\n")
    result = cli("run", c)
    assert result.status == 65
    assert "bad.c" in result.err and "undeclared identifier" in result.err
    _no_traceback(result)


def test_unknown_suffix_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    """A file that is neither .wasm nor .wat is refused with a message naming the suffix."""
    source = tmp_path / "prog.txt"
    source.write_text("hello")
    result = cli("run", source)
    assert result.status != 0
    assert "'.txt'" in result.err
    _no_traceback(result)


def test_garbage_wasm_file_exits_65(cli: CliRunner, tmp_path: Path) -> None:
    """Garbage bytes in x.wasm: status 65 and an 'Invalid module' message."""
    bad = tmp_path / "x.wasm"
    bad.write_bytes(bytes(range(256)) * 4)
    result = cli("run", bad)
    assert result.status == 65
    assert "Invalid module" in result.err
    _no_traceback(result)


def test_wasm_header_with_broken_body_exits_65(cli: CliRunner, tmp_path: Path) -> None:
    """A file with the \\0asm magic but a malformed body is also an invalid module: 65."""
    bad = tmp_path / "x.wasm"
    bad.write_bytes(b"\0asm\x01\x00\x00\x00\x01\xff\xff\xff\xff")
    result = cli("run", bad)
    assert result.status == 65
    assert "Invalid module" in result.err
    _no_traceback(result)


def test_bad_wat_exits_65_naming_the_problem(cli: CliRunner, tmp_path: Path) -> None:
    """WAT text that does not assemble: status 65 and a message saying so."""
    bad = tmp_path / "bad.wat"
    bad.write_text('(module (func (export "f") i32.bogus))')
    result = cli("run", bad)
    assert result.status == 65
    assert "WAT" in result.err
    _no_traceback(result)


def test_module_with_unavailable_imports_exits_65(cli: CliRunner, tmp_path: Path) -> None:
    """A module importing host functions the sandbox lacks is refused (65), naming them."""
    wat = tmp_path / "imports.wat"
    wat.write_text('(module (import "env" "secret" (func)) (func (export "_start")))')
    result = cli("run", wat)
    assert result.status == 65
    assert "env.secret" in result.err
    _no_traceback(result)


# --- files ----------------------------------------------------------------------------------


def test_mount_makes_a_directory_visible_read_only(cli: CliRunner, c_guest, tmp_path: Path) -> None:
    """--mount HOST:GUEST exposes the directory read-only; writes fail with EROFS."""
    (tmp_path / "in.txt").write_text("mounted text")
    fs = c_guest("fs_limits")
    assert (
        cli("run", "--mount", f"{tmp_path}:/data", fs, "--", "cat", "/data/in.txt").out
        == "mounted text"
    )
    result = cli("run", "--mount", f"{tmp_path}:/data", fs, "--", "write", "/data", "10")
    assert result.out == "open: errno 69\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_mount_rw_memory_fs_and_strict_io(cli: CliRunner, c_guest, tmp_path: Path) -> None:
    """':rw' mounts are writable; --io-limit sets file limits; --strict-io exits 122."""
    fs = c_guest("fs_limits")
    ok = cli("run", "--mount", f"{tmp_path}:/w:rw", fs, "--", "write", "/w", "3000")
    assert ok.out == "wrote 3000\n" and (tmp_path / "big").stat().st_size == 3000
    limited = cli("run", "--mount", f"{tmp_path}:/w:rw", "--io-limit", "max_file_size=1KiB",
                  "--strict-io", "--json", fs, "--", "write", "/w", "3000")  # fmt: skip
    assert limited.status == 122
    assert (
        limited.json()["error"] == "I/O limit exceeded: max_file_size (attempted 2024, limit 1024)"
    )
    scratch = cli("run", "--memory-fs", "/tmp:2000", fs, "--", "write", "/tmp", "3000")
    # The file's entry costs 256 bytes plus its name ("big"), the rest holds its contents.
    assert scratch.out == f"wrote {2000 - 256 - 3} then errno 51\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mount", "nocolon"], "--mount expects HOST:GUEST"),
        (["--io-limit", "max_speed=3"], "--io-limit expects FIELD=VALUE"),
        (["--io-limit", "max_file_size=lots"], "invalid size"),
    ],
)
def test_bad_file_options_are_usage_errors(
    cli: CliRunner, add_wat: Path, args: list[str], message: str
) -> None:
    """Malformed file options exit 2 with a clear message and no traceback."""
    result = cli("run", *args, add_wat)
    assert result.status == 2
    assert message in result.err
    _no_traceback(result)


def test_mount_of_a_missing_directory_is_an_invalid_configuration(
    cli: CliRunner, add_wat: Path, tmp_path: Path
) -> None:
    """A mount that cannot be honoured is refused before anything runs (exit 65)."""
    result = cli("run", "--mount", f"{tmp_path / 'missing'}:/data", add_wat)
    assert result.status == 65
    assert "host_path does not exist" in result.err

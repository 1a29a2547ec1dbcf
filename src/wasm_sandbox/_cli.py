"""The ``wasm-sandbox`` command: run a guest under limits and print its resource report.

Built only on the public API, so it behaves exactly as the library does.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, BinaryIO, NoReturn

from . import (
    ExecutionCancelled,
    ExecutionError,
    ExecutionTimeout,
    FuelExhausted,
    FunctionNotFound,
    GuestError,
    GuestTrap,
    HostCallLimitExceeded,
    HostError,
    InvalidModule,
    IoLimitExceeded,
    MemoryLimitExceeded,
    NetworkLimitExceeded,
    NetworkPolicy,
    OptimizationLevel,
    ResourceProfile,
    SandboxBuilder,
    SandboxError,
    SecurityViolation,
    SessionLost,
    SourceNotFound,
    ToolchainNotFound,
    WasmSandbox,
    __version__,
    export_prepared,
    import_prepared,
    parse_count,
    parse_duration,
    parse_size,
    prepare,
)
from ._config._mounts import mount_from_spec
from ._mcp._command import add_command as add_mcp_command
from ._mcp._command import run_command as run_mcp_command
from ._observe._report import ResourceReport
from ._units import format_duration, format_size

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

_STATUSES = (
    (
        GuestError.cli_exit_status,
        "the --invoke'd function raised or reported an error (GuestError)",
    ),
    (EXIT_USAGE, "bad command line"),
    (
        InvalidModule.cli_exit_status,
        "invalid module, unsupported source, compile error, invalid limits or mounts, unknown "
        "function, bad arguments, or over the build budget",
    ),
    (SourceNotFound.cli_exit_status, "the source FILE does not exist"),
    (
        ToolchainNotFound.cli_exit_status,
        "the compiler or runtime a C, Rust, Python or JavaScript guest needs is not installed",
    ),
    (GuestTrap.cli_exit_status, "the guest trapped (unreachable, out-of-bounds access, ...)"),
    (HostError.cli_exit_status, "internal error of wasm-sandbox (HostError)"),
    (SessionLost.cli_exit_status, "a lost session, a balancer's full queue (library only)"),
    (MemoryLimitExceeded.cli_exit_status, "memory limit exceeded (also by the initial memory)"),
    (FuelExhausted.cli_exit_status, "fuel exhausted"),
    (IoLimitExceeded.cli_exit_status, "file-system limit hit (with --strict-io)"),
    (NetworkLimitExceeded.cli_exit_status, "network limit hit (with --strict-network)"),
    (ExecutionTimeout.cli_exit_status, "wall-clock timeout"),
    (HostCallLimitExceeded.cli_exit_status, "max_host_calls reached (library only)"),
    (SecurityViolation.cli_exit_status, "network policy refusal (with --strict-network)"),
    (ExecutionCancelled.cli_exit_status, "interrupted (Ctrl-C) or cancelled"),
)


def _status_table() -> str:
    """The exit statuses, one per line: each error class's ``cli_exit_status``."""
    lines = [
        "  the guest's own exit code when it ran to an exit (0 when _start returned), also",
        "        when an --invoke'd function ended the guest with proc_exit (GuestExit)",
    ]
    for status, text in _STATUSES:
        lines += textwrap.wrap(text, 88, initial_indent=f"  {status:<6}", subsequent_indent=" " * 8)
    return "\n".join(lines)


_EPILOG = f"""\
sizes: 65536, 64KiB, 64MiB, 1GiB (binary) or 64k, 64M, 1G (decimal)
counts: 1000000, 10M, 1.5G          durations: 30, 30s, 500ms, 2m, 1h

exit status:
{_status_table()}

examples (the files are in the project's repository):
  wasm-sandbox run examples/hello.wat
  wasm-sandbox run --memory 16MiB --fuel 10M --timeout 2s examples/hello.wat -- --flag value
  wasm-sandbox run --invoke add examples/calculator.wat -- 5 3
  wasm-sandbox run --invoke add examples/calculator.rs -- 5 3
  wasm-sandbox run --memory 16MiB examples/memory_hog.wat
  wasm-sandbox run -c 'import sys; print(sys.argv[1:])' -- a b
  wasm-sandbox run --quiet --language javascript -c 'console.log(6 * 7)'
  wasm-sandbox run --allow-network example.com:443 -c 'import urllib.request as u; print(u.urlopen("https://example.com").status)'
  wasm-sandbox run --json --profile lightweight examples/hello.wat
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasm-sandbox",
        description="Run untrusted code in a WebAssembly sandbox under enforced memory, fuel "
        "and time limits: WebAssembly modules (.wasm, .wat), C and Rust sources (.c, .rs, "
        "compiled first), Python and JavaScript scripts (.py, .js) or code given with -c.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wasm-sandbox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prepare_ = commands.add_parser(
        "prepare",
        help="compile the Python and JavaScript runtimes ahead of time (first use in ms)",
        description="Compile the script runtimes named (default: both) into the compiled-"
        "module cache, so the first Python or JavaScript sandbox of every program starts in "
        "milliseconds instead of compiling the runtime (a minute or more for Python). Prints "
        "where each artifact is and how large. --export writes the prepared artifacts to one "
        "bundle file; --import installs a bundle (made for the same wasmtime and CPU) instead "
        "of compiling: how a CI job or a cluster image ships compiled runtimes.",
    )
    prepare_.add_argument(
        "runtimes", nargs="*", metavar="RUNTIME", help="python, javascript (default: both)"
    )
    prepare_.add_argument(
        "--cache-dir", metavar="DIR", help="the cache to fill (default: the user cache dir)"
    )
    prepare_.add_argument("--quiet", action="store_true", help="no progress line while compiling")
    bundle = prepare_.add_mutually_exclusive_group()
    bundle.add_argument(
        "--export", metavar="FILE", help="then write the prepared artifacts to the bundle FILE"
    )
    bundle.add_argument(
        "--import",
        dest="import_",
        metavar="FILE",
        help="install the artifacts of the bundle FILE instead of compiling (no RUNTIME)",
    )
    run = commands.add_parser(
        "run",
        help="run a guest (.wasm .wat .c .rs .py .js, or -c CODE) and print its resource report",
        description="Run FILE (or -c CODE) as a WASI command (or call one export with --invoke), "
        "then print a resource report: a table on stderr (none with --quiet), or with --json "
        "one JSON object on stdout.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="the guest: a .wasm or .wat module, a .c or .rs source (compiled first), a .py or "
        ".js script, or '-' to read it from stdin (a module, or any source with --language); "
        "none with -c",
    )
    run.add_argument(
        "-c",
        dest="code",
        metavar="CODE",
        help="run CODE given inline instead of a FILE (Python unless --language says "
        "otherwise); ARGs after -- are its arguments",
    )
    run.add_argument(
        "--language",
        choices=list(_LANGUAGES),
        help="what FILE, '-' or -c CODE is written in, when the extension does not tell "
        "(default for -c: python)",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no resource report: only the guest's output and exit status (and one line on "
        "stderr when it fails)",
    )
    run.add_argument(
        "guest_args", nargs="*", metavar="ARG", help="arguments for the guest (after --)"
    )
    run.add_argument(
        "--profile",
        choices=["lightweight", "standard", "high-performance"],
        default="standard",
        help="base limits (default: standard = 64MiB, 30s, 10G fuel)",
    )
    run.add_argument("--memory", metavar="SIZE", help="linear-memory cap, e.g. 64MiB")
    run.add_argument("--memory-growth", metavar="SIZE", help="cap on one memory.grow, e.g. 16MiB")
    run.add_argument("--fuel", metavar="COUNT", help="fuel budget, e.g. 10M; 'unlimited' for none")
    run.add_argument(
        "--timeout", metavar="DURATION", help="wall-clock limit, e.g. 30s; 'unlimited' for none"
    )
    run.add_argument(
        "--max-output", metavar="SIZE", help="stdout/stderr capture cap (default 16MiB)"
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="guest environment variable (repeatable)",
    )
    run.add_argument(
        "--stdin",
        metavar="PATH",
        help="file given to the guest as stdin ('-': this process's stdin, the default)",
    )
    run.add_argument(
        "--invoke",
        metavar="FUNCTION",
        help="call this export with the numeric ARGs instead of running _start",
    )
    run.add_argument(
        "--opt-level",
        choices=["speed", "size", "none"],
        default="speed",
        help="compiler optimisation (default: speed)",
    )
    run.add_argument(
        "--no-cache", action="store_true", help="do not read or write the compiled-module cache"
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (outcome, output, report) on stdout",
    )
    build = run.add_argument_group("build budget (for modules you do not trust)")
    build.add_argument(
        "--max-module-size", metavar="SIZE", help="refuse a larger module (default 1GiB)"
    )
    build.add_argument(
        "--max-functions",
        metavar="COUNT",
        help="refuse a module defining more functions (default 1M)",
    )
    build.add_argument(
        "--build-timeout",
        metavar="DURATION",
        help="compile in a child process killed after DURATION, e.g. 10s",
    )
    build.add_argument(
        "--build-memory",
        metavar="SIZE",
        help="compile in a child process with at most SIZE of memory, e.g. 1GiB",
    )
    files = run.add_argument_group("files (nothing is visible to the guest unless mounted)")
    files.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOST:GUEST[:rw]",
        help="mount a host directory at a guest path, read-only unless ':rw' (repeatable)",
    )
    files.add_argument(
        "--memory-fs",
        action="append",
        default=[],
        metavar="GUEST[:SIZE]",
        help="an empty in-memory scratch directory, default 64MiB (repeatable)",
    )
    files.add_argument(
        "--io-limit",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a file-system limit: max_file_size, max_total_file_size, max_open_files, "
        "max_file_operations, max_directory_entries, io_batch_size, buffer_size (repeatable)",
    )
    files.add_argument(
        "--strict-io",
        action="store_true",
        help="stop the guest at the first file-system limit it hits (exit 122)",
    )
    network = run.add_argument_group("network (none unless allowed)")
    network.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="let the guest connect to HOST:PORT (a name, *.domain or IP; a port, a range "
        "8000-8100 or *); repeatable",
    )
    network.add_argument(
        "--allow-private",
        action="store_true",
        help="let allowed names reach private, loopback and link-local addresses too",
    )
    network.add_argument(
        "--strict-network",
        action="store_true",
        help="stop the guest at a refused connection (exit 126) or a network limit (exit 123) "
        "instead of giving it the error",
    )
    add_mcp_command(commands)
    return parser


_LANGUAGES = ("python", "javascript", "c", "rust", "wat", "wasm")


_IO_FIELDS = {
    "max_file_size": parse_size,
    "max_total_file_size": parse_size,
    "buffer_size": parse_size,
    "max_open_files": parse_count,
    "max_file_operations": parse_count,
    "max_directory_entries": parse_count,
    "io_batch_size": parse_count,
}


def _files(builder: SandboxBuilder, args: argparse.Namespace) -> None:
    for spec in args.mount:
        builder.mount(mount_from_spec(spec))  # a bad shape: ValueError, a usage error
    for spec in args.memory_fs:
        guest, _, size = spec.partition(":")
        if size:
            builder.memory_fs(guest, parse_size(size))
        else:
            builder.memory_fs(guest)
    changes = {}
    for item in args.io_limit:
        name, sep, value = item.partition("=")
        if not sep or name not in _IO_FIELDS:
            _fail(f"--io-limit expects FIELD=VALUE with FIELD one of {', '.join(_IO_FIELDS)}")
        changes[name] = _IO_FIELDS[name](value)
    if changes:
        builder.resource_limits(builder.config().limits.replace(**changes))
    builder.strict_io_limits(args.strict_io)


def _build_budget(builder: SandboxBuilder, args: argparse.Namespace) -> None:
    if args.max_module_size is not None:
        builder.max_module_size(parse_size(args.max_module_size))
    if args.max_functions is not None:
        builder.max_functions(parse_count(args.max_functions))
    if args.build_timeout is not None:
        builder.build_timeout(parse_duration(args.build_timeout))
    if args.build_memory is not None:
        builder.build_memory_limit(parse_size(args.build_memory))


def _fail(message: str) -> NoReturn:
    print(f"wasm-sandbox: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _source(builder: SandboxBuilder, args: argparse.Namespace) -> None:
    """FILE, '-' (the source on stdin) or -c CODE, in ``--language`` when given."""
    if args.code is not None:
        builder.source(args.code).language(args.language or "python")
    elif args.file == "-":
        builder.source(sys.stdin.buffer.read())
        if args.language is not None:
            builder.language(args.language)
    elif args.language is not None:
        try:
            with open(args.file, "rb") as f:
                builder.source(f.read()).language(args.language)
        except FileNotFoundError:
            raise SourceNotFound(args.file) from None
    else:
        builder.source(args.file)


def _network(builder: SandboxBuilder, args: argparse.Namespace) -> None:
    if args.allow_network:
        policy = NetworkPolicy(allow=tuple(args.allow_network), allow_private=args.allow_private)
        builder.network_policy(policy)
    elif args.allow_private:
        _fail("--allow-private widens --allow-network patterns: give at least one")
    builder.strict_network(args.strict_network)


def _build(args: argparse.Namespace) -> WasmSandbox:
    builder = WasmSandbox.builder()
    _source(builder, args)
    builder.resource_profile(ResourceProfile.by_name(args.profile))
    try:
        if args.memory is not None:
            builder.memory_limit(parse_size(args.memory))
        if args.memory_growth is not None:
            builder.memory_growth_limit(parse_size(args.memory_growth))
        if args.fuel is not None:
            builder.max_fuel(None if args.fuel == "unlimited" else parse_count(args.fuel))
        if args.timeout is not None:
            builder.timeout_duration(
                None if args.timeout == "unlimited" else parse_duration(args.timeout)
            )
        if args.max_output is not None:
            builder.max_output_bytes(parse_size(args.max_output))
        _build_budget(builder, args)
        _files(builder, args)
        _network(builder, args)
    except SandboxError:
        raise  # a limit or mount that cannot be honoured: exit 65, not a usage error
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep:
            _fail(f"--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    levels = {
        "speed": OptimizationLevel.SPEED,
        "size": OptimizationLevel.SIZE,
        "none": OptimizationLevel.NONE,
    }
    builder.env(env).args(args.guest_args).optimization_level(levels[args.opt_level])
    if args.no_cache:
        builder.cache_dir(None)
    return builder.build()


def _number(text: str) -> int | float:
    try:
        return int(text, 0)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            _fail(f"--invoke arguments must be numbers, got {text!r}")


def _stdin(args: argparse.Namespace) -> bytes | BinaryIO:
    if args.file == "-" and args.code is None and args.stdin in (None, "-"):
        return b""  # stdin held the source
    if args.stdin not in (None, "-"):
        try:
            with open(args.stdin, "rb") as f:
                return f.read()
        except OSError as exc:
            _fail(f"cannot read --stdin {args.stdin}: {exc.strerror}")
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return b""
    try:
        stream.fileno()
    except (OSError, ValueError):
        return b""
    return stream  # type: ignore[no-any-return]


def _emit(args: argparse.Namespace, payload: dict[str, Any], report: ResourceReport | None) -> None:
    if args.json:
        if report is not None:
            payload["report"] = report.to_dict()
        print(json.dumps(payload, indent=2, sort_keys=True))
        return
    if report is not None and not args.quiet:
        print(report.format_table(), file=sys.stderr)


def _write_output(stdout: bytes, stderr: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(stdout)
    sys.stdout.buffer.flush()
    sys.stderr.flush()
    sys.stderr.buffer.write(stderr)
    sys.stderr.buffer.flush()


def _invoke(args: argparse.Namespace, sandbox: WasmSandbox) -> int:
    result = sandbox.call_with_detailed_monitoring(args.invoke, *map(_number, args.guest_args))
    value = list(result.value) if isinstance(result.value, tuple) else result.value
    if not args.json:
        _write_output(result.stdout, result.stderr)
        print(value)
    _emit(args, {"outcome": "ok", "value": value}, result.resource_report)
    return 0


def _failed(args: argparse.Namespace, exc: SandboxError) -> int:
    payload: dict[str, Any] = {"outcome": type(exc).__name__, "error": str(exc)}
    if isinstance(exc, ExecutionError):
        if args.json:
            payload["stdout"] = exc.stdout.decode("utf-8", "replace")
            payload["stderr"] = exc.stderr.decode("utf-8", "replace")
        else:
            _write_output(exc.stdout, exc.stderr)
    if not args.json:
        print(f"wasm-sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
    _emit(args, payload, getattr(exc, "report", None))
    return exc.cli_exit_status


def _no_start(args: argparse.Namespace, exc: FunctionNotFound) -> FunctionNotFound:
    """The library's "no _start" error, in the command's terms: ``--invoke``."""
    what = "-c CODE" if args.code is not None else (args.file or "the module")
    if not exc.available:
        message = f"{what} has no _start (it is not a WASI command) and exports no function"
    else:
        message = (
            f"{what} has no _start (it is not a WASI command): call one of its exports with "
            f"--invoke NAME [-- ARG...]: {FunctionNotFound.listed(exc.available)}"
        )
    return FunctionNotFound("_start", exc.available, message)


def _prepare(args: argparse.Namespace) -> int:
    """``wasm-sandbox prepare``: compile the runtimes (or import a bundle of them), print
    where they are; with ``--export``, then write them to a bundle."""
    try:
        if args.import_:
            prepared = import_prepared(args.import_, cache_dir=args.cache_dir)
        else:
            prepared = prepare(
                *args.runtimes,
                cache_dir=args.cache_dir,
                progress=False if args.quiet else None,
            )
        for runtime in prepared:
            if runtime.imported:
                how = f"installed from {args.import_}"
            elif runtime.compiled:
                how = f"compiled in {format_duration(runtime.seconds)}"
            else:
                how = "already prepared"
            size = format_size(runtime.size_bytes)
            print(f"{runtime.name}: {runtime.artifact} ({size}, {how})")
        if args.export:
            bundle = export_prepared(args.export, *args.runtimes, cache_dir=args.cache_dir)
            print(f"bundle: {bundle} ({format_size(bundle.stat().st_size)})")
    except SandboxError as exc:
        print(f"wasm-sandbox: {exc}", file=sys.stderr)
        return exc.cli_exit_status
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        sandbox = _build(args)
    except SandboxError as exc:
        diagnostics = getattr(exc, "diagnostics", "")
        payload = {"outcome": type(exc).__name__, "error": str(exc)}
        if diagnostics:
            payload["diagnostics"] = diagnostics
        _emit(args, payload, None)
        if not args.json:
            print(f"wasm-sandbox: {exc}", file=sys.stderr)
            if diagnostics:
                print(diagnostics, file=sys.stderr)
        return exc.cli_exit_status
    except OSError as exc:  # FILE is a directory, or unreadable
        _fail(f"cannot read {args.file}: {exc.strerror or exc}")
    try:
        if args.invoke:
            return _invoke(args, sandbox)
        run = sandbox.run(stdin=_stdin(args))
    except FunctionNotFound as exc:
        if exc.name != "_start":
            return _failed(args, exc)
        return _failed(args, _no_start(args, exc))
    except SandboxError as exc:
        return _failed(args, exc)
    if args.json:
        _emit(
            args,
            {
                "outcome": "ok" if run.exit_code == 0 else "exit",
                "exit_code": run.exit_code,
                "stdout": run.stdout.decode("utf-8", "replace"),
                "stderr": run.stderr.decode("utf-8", "replace"),
                "stdout_truncated": run.stdout_truncated,
                "stderr_truncated": run.stderr_truncated,
            },
            run.resource_report,
        )
    else:
        _write_output(run.stdout, run.stderr)
        if (run.stdout_truncated or run.stderr_truncated) and not args.quiet:
            print("wasm-sandbox: guest output was truncated at --max-output", file=sys.stderr)
        _emit(args, {}, run.resource_report)
    return run.exit_code & 0xFF


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wasm-sandbox`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "prepare" and args.import_ and args.runtimes:
        parser.error("prepare --import installs the runtimes its bundle holds: name no RUNTIME")
    if args.command == "run":
        if args.code is not None and args.file is not None:  # then FILE was a guest argument
            args.guest_args, args.file = [args.file, *args.guest_args], None
        if args.code is None and args.file is None:
            parser.error("run needs a FILE (or '-' for stdin) or -c CODE")
    try:
        if args.command == "prepare":
            return _prepare(args)
        if args.command == "mcp":
            return run_mcp_command(args)
        return _run(args)
    except KeyboardInterrupt:
        print("wasm-sandbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())

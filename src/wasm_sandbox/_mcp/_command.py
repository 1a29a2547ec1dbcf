"""``wasm-sandbox mcp``: its flags (the sandbox's limits, what the code may see, the session
cap and expiry, the transport), parsed with the CLI's size and duration parsers into
``ServerOptions``; then the server, or a clear message when the ``mcp`` SDK is missing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._config._mounts import mount_from_spec
from .._errors import SandboxError, ToolchainNotFound
from .._units import parse_count, parse_duration, parse_size
from ._options import TRANSPORTS, ServerOptions

__all__ = ["add_command", "run_command"]

EXIT_USAGE = 2
MISSING_SDK = (
    "wasm-sandbox mcp needs the MCP SDK (the 'mcp' package), which is not installed: "
    "pip install 'wasm-sandbox[mcp]'"
)

_EPILOG = """\
Register it with an MCP client (Claude Desktop's claude_desktop_config.json, or any client's
"mcpServers" JSON):
  {"mcpServers": {"wasm-sandbox": {"command": "wasm-sandbox",
                                   "args": ["mcp", "--memory", "512MiB", "--timeout", "20s"]}}}

tools: run_python(code), run_javascript(code), session_open(language),
       session_exec(session_id, code), session_close(session_id)
sizes: 64MiB, 1GiB          durations: 30s, 500ms, 2m          counts: 10G
"""


def add_command(commands: Any) -> None:
    """Add the ``mcp`` command to the CLI's subparsers ``commands``."""
    mcp = commands.add_parser(
        "mcp",
        help="serve run_python / run_javascript and sessions as MCP tools (stdio or HTTP)",
        description="An MCP (Model Context Protocol) server whose tools run Python and "
        "JavaScript code in sandboxes under the limits below: fresh for each run_python / "
        "run_javascript call, or kept between calls in sessions. Needs the extra: pip "
        "install 'wasm-sandbox[mcp]'.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    limits = mcp.add_argument_group("limits of every run and session statement")
    limits.add_argument("--memory", metavar="SIZE", default="256MiB", help="default 256MiB")
    limits.add_argument(
        "--timeout", metavar="DURATION", default="30s", help="wall-clock, default 30s; 'unlimited'"
    )
    limits.add_argument(
        "--fuel", metavar="COUNT", default="unlimited", help="instruction budget (default none)"
    )
    world = mcp.add_argument_group("what the code may see (nothing unless given)")
    world.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOST:GUEST[:ro|rw]",
        help="a host directory at a guest path, read-only unless ':rw' (repeatable)",
    )
    world.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="PATTERN",
        help="allow connections to host:port, *.domain:443, 10.0.0.5:8000-8100 (repeatable)",
    )
    world.add_argument(
        "--python-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a host directory or wheel of pure-Python packages Python code may import "
        "(repeatable)",
    )
    sessions = mcp.add_argument_group("sessions")
    sessions.add_argument(
        "--max-sessions", metavar="COUNT", default="16", help="open at once (default 16)"
    )
    sessions.add_argument(
        "--session-idle-timeout",
        metavar="DURATION",
        default="10m",
        help="close a session unused this long (default 10m)",
    )
    transport = mcp.add_argument_group("transport")
    transport.add_argument("--transport", choices=TRANSPORTS, default="stdio")
    transport.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    transport.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")


def options_from(args: argparse.Namespace) -> ServerOptions:
    """The ``ServerOptions`` the flags ask for (``ValueError`` for a malformed value)."""
    return ServerOptions(
        memory=parse_size(args.memory),
        timeout=None if args.timeout == "unlimited" else parse_duration(args.timeout),
        fuel=None if args.fuel == "unlimited" else parse_count(args.fuel),
        mounts=tuple(mount_from_spec(spec) for spec in args.mount),
        allow_network=tuple(args.allow_network),
        python_path=tuple(args.python_path),
        max_sessions=parse_count(args.max_sessions),
        session_idle=parse_duration(args.session_idle_timeout),
        transport=args.transport,
        host=args.host,
        port=args.port,
    )


def run_command(args: argparse.Namespace) -> int:
    """``wasm-sandbox mcp``: serve until the client leaves; the exit status."""
    from ._tools import CodeTools  # noqa: PLC0415 - asyncio (~50 ms) only when serving

    try:
        options = options_from(args)
        tools = CodeTools(options)  # both languages' configurations checked now
    except SandboxError as exc:
        print(f"wasm-sandbox: {exc}", file=sys.stderr)
        return exc.cli_exit_status
    except ValueError as exc:
        print(f"wasm-sandbox: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        from ._server import serve  # noqa: PLC0415 - the optional SDK, imported on use
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("mcp", "pydantic", "anyio"):
            raise
        print(f"wasm-sandbox: {MISSING_SDK}", file=sys.stderr)
        return ToolchainNotFound.cli_exit_status
    if options.host not in ("127.0.0.1", "localhost", "::1") and options.transport == "http":
        print(
            f"wasm-sandbox: warning: listening on {options.host}: anyone who reaches it can "
            "run code in the sandbox (the server has no authentication)",
            file=sys.stderr,
        )
    serve(tools)
    return 0

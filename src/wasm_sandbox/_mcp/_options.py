"""What an MCP server is started with (``wasm-sandbox mcp`` flags): the limits of every run,
what the code may see (mounts, network patterns, Python import directories), the session cap
and idle expiry, and the transport. Validated once, when the server starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .._builder import SandboxBuilder
from .._config._mounts import Mount
from .._errors import ConfigurationError
from .._oneliners import DEFAULT_CODE_MEMORY, DEFAULT_CODE_TIMEOUT, code_builder

__all__ = ["LANGUAGES", "TRANSPORTS", "ServerOptions"]

LANGUAGES = ("python", "javascript")
TRANSPORTS = ("stdio", "http")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerOptions:
    """The configuration of one MCP server (every field has a ``wasm-sandbox mcp`` flag)."""

    memory: int = DEFAULT_CODE_MEMORY
    """Memory cap of each run and each session, in bytes (``--memory``)."""
    timeout: timedelta | None = DEFAULT_CODE_TIMEOUT
    """Wall-clock limit of each run and each session statement; None: none (``--timeout``)."""
    fuel: int | None = None
    """Instruction budget of each run and statement; None (the default): unlimited, the
    timeout bounds the work (``--fuel``)."""
    mounts: tuple[Mount, ...] = ()
    """Host directories the code sees (``--mount HOST:GUEST[:ro|rw]``)."""
    allow_network: tuple[str, ...] = ()
    """``host:port`` patterns the code may connect to; none: no network (``--allow-network``)."""
    python_path: tuple[str, ...] = ()
    """Host directories and wheels of pure-Python packages Python code may import
    (``--python-path``, ``SandboxBuilder.python_path``)."""
    max_sessions: int = 16
    """Sessions open at once; ``session_open`` is refused beyond (``--max-sessions``)."""
    session_idle: timedelta = timedelta(minutes=10)
    """A session unused this long is closed (``--session-idle-timeout``)."""
    transport: str = "stdio"
    """``stdio`` (the client starts the server) or ``http`` (streamable HTTP)."""
    host: str = "127.0.0.1"
    """The address the HTTP transport listens on."""
    port: int = 8000
    """The port the HTTP transport listens on."""

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigurationError(
                f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}"
            )
        if not 1 <= self.max_sessions <= 100_000:
            raise ConfigurationError(
                f"max_sessions must be between 1 and 100000, got {self.max_sessions}"
            )
        if self.session_idle <= timedelta(0):
            raise ConfigurationError(f"session_idle must be positive, got {self.session_idle}")
        if not 1 <= self.port <= 65535:
            raise ConfigurationError(f"port must be between 1 and 65535, got {self.port}")

    def builder(self, language: str) -> SandboxBuilder:
        """The builder of the ``language`` sandbox every tool of that language runs in."""
        builder = code_builder(
            language,
            timeout=self.timeout,
            memory=self.memory,
            fuel=self.fuel,
            mounts=self.mounts,
            network=self.allow_network or None,
            python_path=self.python_path if language == "python" else (),
        )
        return builder

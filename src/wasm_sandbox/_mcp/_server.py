"""The MCP SDK's side of ``wasm-sandbox mcp``: the tools of ``CodeTools`` registered on an
``MCPServer`` (input and output schemas, descriptions stating the server's limits), each
answer returned as structured content plus a text block, and the stdio or streamable-HTTP
transport run until the client leaves or the process is stopped. The only module that
imports ``mcp`` (the optional extra ``[mcp]``).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .. import __version__
from ._answers import Answer, describe_run, describe_session
from ._tools import CodeTools

__all__ = ["serve"]

SERVER_NAME = "wasm-sandbox"
HTTP_PATH = "/mcp"


class ErrorInfo(BaseModel):
    """Why the code did not finish."""

    type: str = Field(description="The exception's type (ZeroDivisionError) or the limit's")
    message: str = Field(description="Its message")
    traceback: str = Field(description="The guest's traceback or stack, or empty")
    limit: str | None = Field(description="timeout, memory, fuel, io or network; null if none")


class CodeAnswer(BaseModel):
    """What running code produced."""

    ok: bool = Field(description="True when the code finished without an error")
    stdout: str = Field(description="What the code printed")
    stderr: str = Field(description="What it wrote to standard error")
    result: Any = Field(description="The value of the last expression (JSON), or null")
    error: ErrorInfo | None = Field(description="Why it did not finish, or null")


class OpenedSession(BaseModel):
    """A session that was opened."""

    session_id: str = Field(description="Pass it to session_exec and session_close")
    language: str = Field(description="python or javascript")


class ClosedSession(BaseModel):
    """A session that was closed."""

    session_id: str
    closed: bool


PythonCode = Annotated[str, Field(description="Python source code (several lines allowed)")]
JavaScriptCode = Annotated[str, Field(description="JavaScript source code")]
SessionCode = Annotated[str, Field(description="Code in the session's language")]
SessionId = Annotated[str, Field(description="The id session_open returned")]
Language = Annotated[Literal["python", "javascript"], Field(description="The session's language")]


def _result(answer: Answer) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=answer.text)],
        structured_content=answer.data,
        is_error=answer.is_error,
    )


def build_server(tools: CodeTools) -> MCPServer[Any]:
    """An ``MCPServer`` offering ``tools``: run_python, run_javascript and the session tools."""
    options = tools.options
    server: MCPServer[Any] = MCPServer(
        SERVER_NAME,
        version=__version__,
        instructions="Runs Python and JavaScript code in isolated WebAssembly sandboxes with "
        "enforced time and memory limits. Use run_python for one-off code, session_open and "
        "session_exec to keep variables between calls.",
        log_level="WARNING",
    )
    writes = any(not mount.read_only for mount in options.mounts)
    runs = ToolAnnotations(
        read_only_hint=not writes and not options.allow_network,
        destructive_hint=writes,
        idempotent_hint=False,
        open_world_hint=bool(options.allow_network),
    )

    async def run_python(code: PythonCode) -> Annotated[CallToolResult, CodeAnswer]:
        return _result(await tools.run("python", code))

    async def run_javascript(code: JavaScriptCode) -> Annotated[CallToolResult, CodeAnswer]:
        return _result(await tools.run("javascript", code))

    async def session_open(
        language: Language = "python",
    ) -> Annotated[CallToolResult, OpenedSession]:
        return _result(await tools.session_open(language))

    async def session_exec(
        session_id: SessionId, code: SessionCode
    ) -> Annotated[CallToolResult, CodeAnswer]:
        return _result(await tools.session_exec(session_id, code))

    async def session_close(session_id: SessionId) -> Annotated[CallToolResult, ClosedSession]:
        return _result(await tools.session_close(session_id))

    server.add_tool(run_python, description=describe_run("python", options), annotations=runs)
    server.add_tool(
        run_javascript, description=describe_run("javascript", options), annotations=runs
    )
    for tool in (session_open, session_exec, session_close):
        server.add_tool(tool, description=describe_session(tool.__name__, options))
    return server


def serve(tools: CodeTools) -> None:
    """Run the server until its client leaves (stdio) or the process is stopped (http)."""
    options = tools.options
    server = build_server(tools)

    async def main() -> None:
        try:
            if options.transport == "stdio":
                await server.run_stdio_async()
            else:
                print(
                    f"wasm-sandbox: MCP server on http://{options.host}:{options.port}"
                    f"{HTTP_PATH} (streamable HTTP)",
                    file=sys.stderr,
                    flush=True,
                )
                await server.run_streamable_http_async(
                    host=options.host, port=options.port, streamable_http_path=HTTP_PATH
                )
        finally:
            await tools.close()

    anyio.run(main)

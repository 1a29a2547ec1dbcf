"""What the MCP server's tools do, without the SDK: run code in a fresh sandbox of the
server's configuration, and open, use and close sessions. Every answer is an ``Answer``,
errors included (a tool never raises for what code does or for a bad session id); every
sandbox call runs on a worker thread (the asyncio twins), never on the event loop.
"""

from __future__ import annotations

import asyncio

from .._errors import SandboxError
from .._sandbox import AsyncWasmSandbox
from .._session import AsyncSession
from ._answers import Answer, code_answer, failure
from ._options import LANGUAGES, ServerOptions
from ._pool import PoolFull, SessionPool, UnknownSession

__all__ = ["CodeTools"]


class CodeTools:
    """The tools of one server: one sandbox per language (built at its first use, then
    shared: each run starts a fresh interpreter) and the pool of open sessions."""

    def __init__(self, options: ServerOptions) -> None:
        """Checks the configuration of both languages now (``ConfigurationError``)."""
        self.options = options
        self._configs = {language: options.builder(language).config() for language in LANGUAGES}
        self._sandboxes: dict[str, AsyncWasmSandbox] = {}
        self._building = {language: asyncio.Lock() for language in LANGUAGES}
        self.sessions = SessionPool(options.max_sessions, options.session_idle.total_seconds())

    async def sandbox(self, language: str) -> AsyncWasmSandbox:
        """The ``language`` sandbox, built off the event loop the first time."""
        async with self._building[language]:
            sandbox = self._sandboxes.get(language)
            if sandbox is None:
                sandbox = await AsyncWasmSandbox.create(self._configs[language])
                self._sandboxes[language] = sandbox
            return sandbox

    async def run(self, language: str, code: str) -> Answer:
        """``code`` run in a fresh ``language`` interpreter."""
        try:
            sandbox = await self.sandbox(language)
        except SandboxError as exc:
            return failure(type(exc).__name__, str(exc))
        result = await sandbox.run_code(code)
        return code_answer(result, self.options, in_session=False)

    async def session_open(self, language: str) -> Answer:
        """A new ``language`` session; its id."""

        async def make() -> AsyncSession:
            return await (await self.sandbox(language)).session()

        try:
            session_id = await self.sessions.open(language, make)
        except PoolFull as exc:
            return failure("TooManySessions", str(exc))
        except SandboxError as exc:
            return failure(type(exc).__name__, str(exc))
        data = {"session_id": session_id, "language": language}
        return Answer(data, f"session_id: {session_id} ({language})")

    async def session_exec(self, session_id: str, code: str) -> Answer:
        """``code`` run in the session ``session_id``."""
        try:
            async with self.sessions.use(session_id) as session:
                result = await session.run_code(code)
        except UnknownSession as exc:
            return failure("UnknownSession", str(exc))
        except SandboxError as exc:  # closed by session_close while this waited for it
            return failure(type(exc).__name__, str(exc))
        return code_answer(result, self.options, in_session=True)

    async def session_close(self, session_id: str) -> Answer:
        """Close the session ``session_id``."""
        if not await self.sessions.close(session_id):
            return failure("UnknownSession", f"no open session {session_id!r}")
        return Answer({"session_id": session_id, "closed": True}, f"closed {session_id}")

    async def close(self) -> None:
        """Close every session and sandbox (the server stops)."""
        await self.sessions.close_all()
        for sandbox in self._sandboxes.values():
            await sandbox.close()

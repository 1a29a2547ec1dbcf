"""The MCP server's open sessions: each under a random id, at most ``limit`` at once, closed
after ``idle`` seconds unused (by a task that runs while any is open), all closed when the
server stops. Asyncio only; the sessions are ``AsyncSession`` objects.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .._session import AsyncSession
from .._units import format_duration

__all__ = ["PoolFull", "SessionPool", "UnknownSession"]


class PoolFull(Exception):
    """``limit`` sessions are open: no other may open until one closes."""


class UnknownSession(Exception):
    """No open session has this id (closed, expired, lost or never opened)."""


@dataclass(slots=True)
class _Entry:
    session: AsyncSession
    language: str
    used: float  # time.monotonic() when its last statement ended (or it opened)
    busy: int = 0  # statements running now: a busy session never expires


class SessionPool:
    """Open sessions by id, capped at ``limit``, each closed after ``idle`` seconds unused."""

    def __init__(self, limit: int, idle: float) -> None:
        self.limit = limit
        self.idle = idle
        self._entries: dict[str, _Entry] = {}
        self._opening = 0
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    async def open(self, language: str, make: Callable[[], Awaitable[AsyncSession]]) -> str:
        """A new session made by ``make``, under a new id (``PoolFull`` at the cap)."""
        await self.expire()
        if len(self._entries) + self._opening >= self.limit:
            raise PoolFull(
                f"{self.limit} sessions are open, this server's limit (--max-sessions): close "
                "one with session_close first"
            )
        self._opening += 1  # its place is taken while it opens
        try:
            session = await make()
        finally:
            self._opening -= 1
        session_id = secrets.token_hex(8)
        self._entries[session_id] = _Entry(session, language, time.monotonic())
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return session_id

    @asynccontextmanager
    async def use(self, session_id: str) -> AsyncIterator[AsyncSession]:
        """The session ``session_id`` for one statement (``UnknownSession`` if none); a
        session that was lost during it leaves the pool."""
        entry = self._entries.get(session_id)
        if entry is None:
            raise UnknownSession(
                f"no open session {session_id!r}: it was closed, was lost, stayed unused for "
                f"{format_duration(self.idle)} (--session-idle-timeout) or never existed; open "
                "one with session_open"
            )
        entry.busy += 1
        try:
            yield entry.session
        finally:
            entry.busy -= 1
            entry.used = time.monotonic()
            if entry.session.closed:
                self._entries.pop(session_id, None)

    async def close(self, session_id: str) -> bool:
        """Close ``session_id``; False when no such session is open."""
        entry = self._entries.pop(session_id, None)
        if entry is None:
            return False
        await entry.session.close()
        return True

    async def expire(self) -> list[str]:
        """Close the sessions unused for ``idle`` seconds; their ids."""
        now = time.monotonic()
        due = [
            sid
            for sid, entry in self._entries.items()
            if not entry.busy and now - entry.used >= self.idle
        ]
        for session_id in due:
            await self.close(session_id)
        return due

    async def close_all(self) -> None:
        """Close every session (the server stops)."""
        if self._reaper is not None:
            self._reaper.cancel()
        for session_id in list(self._entries):
            await self.close(session_id)

    async def _reap(self) -> None:
        """While sessions are open, close each when it has been idle long enough."""
        while self._entries:
            now = time.monotonic()
            idle = [e.used for e in self._entries.values() if not e.busy]
            wake = min(idle) + self.idle if idle else now + self.idle
            await asyncio.sleep(max(wake - now, 0.0) + 0.01)
            await self.expire()

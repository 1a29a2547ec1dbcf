"""HTTP made by the host for script guests that have no sockets of their own (JavaScript's
``fetch``): over a connection opened like any other guest connection (``_net``), so the
policy, TLS, every limit and the counters apply unchanged. HTTP/1.0 with ``Connection: close``:
the answer is read to the end, never chunked.

Bodies stream through the host in bounded pieces, never whole: the request body is pulled
from the guest ``_PIECE`` bytes at a time and sent; the response body is handed to the guest
as it arrives, ``_PIECE`` bytes at a time, and may not exceed the download cap (else the
guest's memory cap: a larger body could not fit in the guest anyway). So one request costs the
host a few MiB, whatever the sizes.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from ._context import WasiContext
from ._errno import Errno, WasiError
from ._fs import FdEntry
from ._net import active_connections, open_connection, socket_read, socket_write, timed_out

__all__ = ["MAX_REQUEST_TEXT", "http_exchange"]

_MAX_HEAD = 64 * 1024  # the response's status line and headers
MAX_REQUEST_TEXT = 64 * 1024  # a request's URL, and its headers together
_PIECE = 1 << 20  # the most of a body the host holds at once
_READ = 64 * 1024
_ADDRESS_SPACE = 1 << 32  # a 32-bit guest's memory: the body bound when memory is unlimited
_PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))  # kept as they are in a request target

Pull = Callable[[int, int], bytes]  # (start, end) -> those bytes of the request body
Push = Callable[[bytes], bool]  # a piece of the response body -> False: the guest gave up


class _Refused(Exception):
    def __init__(self, message: str, errno: Errno) -> None:
        super().__init__(message)
        self.errno = errno


def http_exchange(ctx: WasiContext, request: Any, pull: Pull, push: Push) -> dict[str, Any]:
    """One request, ``{"url", "method", "headers", "size"}`` (the body, ``size`` bytes, is
    read with ``pull``) -> ``{"status", "reason", "headers", "url"}`` once the whole body
    went to ``push``, or ``{"error": message, "errno": n}``. A malformed request is an error
    answer like any other."""
    try:
        host, port, tls, head, size = _prepare(request)
        return _transfer(ctx, host, port, tls, head, size, pull, push) | {"url": request["url"]}
    except _Refused as refused:
        return {"error": str(refused), "errno": int(refused.errno)}


def _prepare(request: Any) -> tuple[str, int, bool, bytes, int]:
    """(host, port, tls, the request's head, the body's size), after checking every field."""
    if not isinstance(request, dict):
        raise _Refused("a request must be an object", Errno.EINVAL)
    url, method, extra, size = (request.get(k) for k in ("url", "method", "headers", "size"))
    if not isinstance(url, str) or len(url) > MAX_REQUEST_TEXT:
        raise _Refused(f"the URL must be at most {MAX_REQUEST_TEXT} characters", Errno.EINVAL)
    try:
        parts = urllib.parse.urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        raise _Refused(f"bad URL {url[:200]!r}", Errno.EINVAL) from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise _Refused(f"unsupported URL {url[:200]!r}: only http:// and https://", Errno.EINVAL)
    method = (method if isinstance(method, str) else "GET").upper() or "GET"
    if not (method.isascii() and method.isalpha()) or len(method) > 32:
        raise _Refused(f"bad method {method[:40]!r}", Errno.EINVAL)
    if size is not None and (type(size) is not int or not 0 <= size < _ADDRESS_SPACE):
        raise _Refused("bad body size", Errno.EINVAL)
    tls = parts.scheme == "https"
    head = _head(method, parts, extra, size or 0)
    return hostname, (443 if tls else 80) if port is None else port, tls, head, size or 0


def _head(method: str, parts: urllib.parse.SplitResult, extra: Any, size: int) -> bytes:
    """The request's line and headers, every header checked."""
    headers = {"Host": parts.netloc.rpartition("@")[2], "Connection": "close"}
    if extra is not None and not isinstance(extra, dict):
        raise _Refused("headers must be an object", Errno.EINVAL)
    for key, value in (extra or {}).items():
        if not isinstance(value, str):
            raise _Refused("header values must be text", Errno.EINVAL)
        if any(c in f"{key}{value}" for c in "\r\n\0"):
            raise _Refused("header names and values cannot contain line breaks", Errno.EINVAL)
        headers[key] = value
    if size:
        headers["Content-Length"] = str(size)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = urllib.parse.quote(target, safe=_PRINTABLE, errors="surrogatepass")
    lines = [f"{method} {target} HTTP/1.0", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    try:
        head = "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise _Refused("the host and headers must be ISO-8859-1 text", Errno.EINVAL) from None
    if len(head) > 2 * MAX_REQUEST_TEXT + 1024:
        raise _Refused("the request's URL and headers are too long", Errno.EINVAL)
    return head


def _transfer(
    ctx: WasiContext, host: str, port: int, tls: bool, head: bytes, size: int, pull: Pull,
    push: Push,
) -> dict[str, Any]:  # fmt: skip
    first = _pull(pull, 0, size)  # a body the guest cannot give is refused before connecting
    try:
        fd = open_connection(ctx, host, port, tls=tls)
    except WasiError as err:
        why = ctx.net.refused if err.errno == Errno.EACCES else None
        raise _Refused(
            f"connection to {host}:{port} failed ({err.errno.name})"
            + (f": {why}" if why is not None else ""),
            err.errno,
        ) from None
    entry = ctx.require_fd(fd)
    # network_timeout bounds each wait and, here, the whole request as well.
    guard = ctx.net
    limit = guard.limits.io_timeout
    started = time.monotonic()
    deadline = None if limit is None else started + limit
    exchange = _Exchange(ctx, entry, deadline)
    try:
        exchange.send(head)
        exchange.send(first)
        for start in range(_PIECE, size, _PIECE):
            exchange.send(_pull(pull, start, size))
        return exchange.receive(_body_bound(ctx), push)
    except WasiError as err:
        expired = deadline is not None and time.monotonic() >= deadline
        if err.errno == Errno.ETIMEDOUT and expired:
            err = timed_out(ctx, guard, "network_timeout", started)  # a limit (strict: stops)
        raise _Refused(f"request to {host}:{port} failed ({err.errno.name})", err.errno) from None
    finally:
        ctx.fds.close_fd(fd)
        guard.active = active_connections(ctx)
        guard.changed()


def _pull(pull: Pull, start: int, size: int) -> bytes:
    """The piece of the request body at ``start`` (at most ``_PIECE`` bytes)."""
    end = min(size, start + _PIECE)
    if start >= end:
        return b""
    piece = pull(start, end)
    if len(piece) != end - start:
        raise _Refused("the request body could not be read from the guest", Errno.EIO)
    return piece


def _body_bound(ctx: WasiContext) -> tuple[int, str]:
    """The largest response body this guest may receive, and what sets it."""
    guard = ctx.net
    if guard.limits.max_download is not None:
        return guard.limits.max_download, "the download limit"
    return ctx.memory_limit or _ADDRESS_SPACE, "the guest's memory limit"


class _Exchange:
    """One connection's request and response, every wait bounded by the deadline."""

    def __init__(self, ctx: WasiContext, entry: FdEntry, deadline: float | None) -> None:
        self.ctx, self.entry, self.deadline = ctx, entry, deadline
        self.buffer = bytearray(_READ)

    def _bound(self) -> None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WasiError(Errno.ETIMEDOUT)
            self.entry.timeout = left

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._bound()
            view = view[socket_write(self.ctx, self.entry, [view]) :]

    def _read(self) -> bytes:
        self._bound()
        count = socket_read(self.ctx, self.entry, [memoryview(self.buffer)])
        return bytes(self.buffer[:count])

    def receive(self, bound: tuple[int, str], push: Push) -> dict[str, Any]:
        """Read the head, then hand the body to ``push`` piece by piece."""
        data = bytearray()
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > _MAX_HEAD:
                raise _Refused("the server's answer is not HTTP", Errno.EPROTO)
            more = self._read()
            if not more:
                raise _Refused("the server's answer is not HTTP", Errno.EPROTO)
            data += more
        answer = _parse_head(bytes(data[:end]))
        most, what = bound
        announced = _decimal(answer["headers"].get("content-length", ""))
        if announced is not None and announced > most:
            raise _Refused(_too_big(announced, most, what), Errno.EFBIG)
        piece, received = data[end + 4 :], len(data) - end - 4
        while more := self._read():
            received += len(more)
            if received > most:
                raise _Refused(_too_big(received, most, what), Errno.EFBIG)
            piece += more
            if len(piece) >= _PIECE:
                _deliver(push, bytes(piece))
                piece = bytearray()
        if piece:
            _deliver(push, bytes(piece))
        return answer


def _deliver(push: Push, piece: bytes) -> None:
    if not push(piece):
        raise _Refused("the guest could not hold the response body (out of memory?)", Errno.ENOMEM)


def _too_big(size: int, most: int, what: str) -> str:
    return f"the response body ({size} bytes or more) exceeds {what} ({most} bytes)"


def _parse_head(head: bytes) -> dict[str, Any]:
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    code = _decimal(status[1]) if len(status) > 1 and len(status[1]) == 3 else None
    if code is None:
        raise _Refused("the server's answer is not HTTP", Errno.EPROTO)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return {
        "status": code,
        "reason": status[2] if len(status) > 2 else "",
        "headers": headers,
    }


def _decimal(text: str) -> int | None:
    """``text`` as a number if it is at most 19 ASCII digits (``"²".isdigit()`` is true too,
    and int() refuses 4,300 digits and more), else None."""
    return int(text) if len(text) < 20 and text.isascii() and text.isdigit() else None

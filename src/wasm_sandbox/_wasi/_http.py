"""HTTP made by the host for script guests that have no sockets of their own (JavaScript's
``fetch``): over a connection opened like any other guest connection (``_net``), so the
policy, TLS, every limit and the counters apply unchanged. HTTP/1.0 with ``Connection: close``:
the answer is read to the end, never chunked."""

from __future__ import annotations

import base64
import time
import urllib.parse
from typing import Any

from ._context import WasiContext
from ._errno import Errno, WasiError
from ._net import active_connections, open_connection, socket_read, socket_write, timed_out

__all__ = ["http_exchange"]

_MAX_HEAD = 64 * 1024


class _Refused(Exception):
    def __init__(self, message: str, errno: Errno) -> None:
        super().__init__(message)
        self.errno = errno


def http_exchange(ctx: WasiContext, request: dict[str, Any]) -> dict[str, Any]:
    """One request: ``{"url", "method", "headers", "body"}`` -> ``{"status", "reason",
    "headers", "text", "body64", "url"}``, or ``{"error": message, "errno": n}``."""
    try:
        host, port, tls, data = _prepare(request)
        response = _transfer(ctx, host, port, tls, data)
        return _parse(response, str(request["url"]))
    except _Refused as refused:
        return {"error": str(refused), "errno": int(refused.errno)}


def _prepare(request: dict[str, Any]) -> tuple[str, int, bool, bytes]:
    url = str(request.get("url", ""))
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Refused(f"unsupported URL {url!r}: only http:// and https://", Errno.EINVAL)
    method = str(request.get("method") or "GET").upper()
    if not method.isalpha():
        raise _Refused(f"bad method {method!r}", Errno.EINVAL)
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise _Refused(f"bad port in {url!r}", Errno.EINVAL) from None
    body = request.get("body")
    payload = body.encode("utf-8") if isinstance(body, str) else b""
    headers = {"Host": parts.netloc.rpartition("@")[2], "Connection": "close"}
    extra = request.get("headers")
    for key, value in extra.items() if isinstance(extra, dict) else ():
        if any(c in f"{key}{value}" for c in "\r\n"):
            raise _Refused("header names and values cannot contain line breaks", Errno.EINVAL)
        headers[str(key)] = str(value)
    if payload:
        headers["Content-Length"] = str(len(payload))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.0", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return parts.hostname, port, tls, "\r\n".join(lines).encode("latin-1") + payload


def _transfer(ctx: WasiContext, host: str, port: int, tls: bool, data: bytes) -> bytes:
    try:
        fd = open_connection(ctx, host, port, tls=tls)
    except WasiError as err:
        raise _Refused(
            f"connection to {host}:{port} failed ({err.errno.name})", err.errno
        ) from None
    entry = ctx.require_fd(fd)
    response = bytearray()
    # network_timeout bounds each wait and, here, the whole request as well.
    guard = ctx.net
    limit = guard.io_timeout if guard is not None else None
    started = time.monotonic()
    end = None if limit is None else started + limit

    def expired() -> bool:
        return end is not None and time.monotonic() >= end

    def bound() -> None:
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                raise WasiError(Errno.ETIMEDOUT)
            entry.timeout = left

    try:
        while data:
            bound()
            data = data[socket_write(ctx, entry, data) :]
        chunk = bytearray(65536)
        while True:
            bound()
            count = socket_read(ctx, entry, [memoryview(chunk)])
            if not count:
                break
            response += chunk[:count]
    except WasiError as err:
        if err.errno == Errno.ETIMEDOUT and guard is not None and expired():
            err = timed_out(ctx, guard, "network_timeout", started)  # a limit (strict: stops)
        raise _Refused(f"request to {host}:{port} failed ({err.errno.name})", err.errno) from None
    finally:
        ctx.fds.close_fd(fd)
        if ctx.net is not None:
            ctx.net.active = active_connections(ctx)
            ctx.net.changed()
    return bytes(response)


def _parse(response: bytes, url: str) -> dict[str, Any]:
    head_end = response.find(b"\r\n\r\n")
    lines = response[: max(head_end, 0)].decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if head_end < 0 or head_end > _MAX_HEAD or len(status) < 2 or not status[1].isdigit():
        raise _Refused("the server's answer is not HTTP", Errno.EPROTO)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    content = response[head_end + 4 :]
    return {
        "status": int(status[1]),
        "reason": status[2] if len(status) > 2 else "",
        "headers": headers,
        "text": content.decode("utf-8", "replace"),
        "body64": base64.b64encode(content).decode("ascii"),
        "url": url,
    }

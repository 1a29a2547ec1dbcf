"""Host-mediated TCP: ``wasm_sandbox.tcp_connect`` opens a connection on the guest's behalf,
after the policy and the limits (``_wasi._guard.NetworkGuard``), and hands the guest an ordinary
descriptor that ``fd_read``/``fd_write``/``sock_*``/``poll_oneoff``/``fd_close`` serve.

Host sockets are non-blocking; every wait is sliced so that the execution's deadline,
cancellation and ``network_timeout`` are honoured while the guest is blocked.
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import json
import math
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._abi import GuestMemory
from ._context import StopReason, WasiContext, poll_fds
from ._errno import Errno, WasiError, errno_from_oserror
from ._fs import FdEntry
from ._guard import NetworkGuard
from ._registry import syscall

if TYPE_CHECKING:
    pass

__all__ = ["active_connections", "open_connection", "socket_read", "socket_write", "timed_out"]

_MAX_HOST = 255
_TLS_CHUNK = 1 << 20  # the most one TLS send takes from a guest's buffers


def active_connections(ctx: WasiContext) -> int:
    """Open connections of this instance (they outlive a call on a kept instance)."""
    return ctx.fds.socket_count


def _close_entry(entry: FdEntry) -> None:
    """Close a connection that never reached the descriptor table."""
    if entry.tls is not None:
        entry.tls.close()
    elif entry.fd is not None:
        os.close(entry.fd)


def _refuse(ctx: WasiContext, guard: NetworkGuard, endpoint: str, why: str) -> Errno:
    """The policy refuses ``endpoint``: ``why`` says which rule and how to permit it (the
    security event's detail, the strict error's, and a script guest's exception message)."""
    guard.refusals += 1
    guard.refused = why
    ctx.refuse("network", endpoint, why, Errno.EACCES)
    guard.changed()
    if guard.limits.strict:
        ctx.stop_state.security_violation = endpoint
        ctx.stop_state.security_detail = why
        raise ctx.stop(StopReason.SECURITY)
    return Errno.EACCES


def _limit(
    ctx: WasiContext, guard: NetworkGuard, name: str, attempted: int, cap: int, errno: Errno
) -> WasiError:
    """Record a network limit; the errno to give the guest, or (strict) stop it."""
    ctx.counters.network_limits_hit.setdefault(name, (attempted, cap))
    if name in ("max_connections", "max_requests_per_second"):  # a refused connection
        endpoint = guard.endpoint or "?"
        ctx.refuse("network", endpoint, f"{name} reached (limit {cap})", errno)
        guard.changed()
    if guard.limits.strict:
        ctx.stop_state.network_hit = (name, attempted, cap)
        raise ctx.stop(StopReason.NETWORK_LIMIT)
    return WasiError(errno)


def timed_out(ctx: WasiContext, guard: NetworkGuard, name: str, started: float) -> WasiError:
    """``name`` (``connect_timeout`` or ``network_timeout``) ran out on a wait begun at
    ``started``: recorded as a network limit, in milliseconds (waited, limit); ETIMEDOUT for
    the guest, or (strict) the guest stops."""
    seconds = guard.limits.connect_timeout if name == "connect_timeout" else guard.limits.io_timeout
    cap = math.ceil((seconds or 0.0) * 1000)
    waited = max(cap, math.ceil((time.monotonic() - started) * 1000))
    return _limit(ctx, guard, name, waited, cap, Errno.ETIMEDOUT)


@syscall("iiii", module="wasm_sandbox", name="tcp_connect")
def tcp_connect(
    ctx: WasiContext, mem: GuestMemory, host_ptr: int, host_len: int, port: int, fd_out: int
) -> int:
    """Open a TCP connection to ``host:port`` for the guest; its descriptor goes to fd_out."""
    return _connect_import(ctx, mem, host_ptr, host_len, port, fd_out, tls=False)


@syscall("iiii", module="wasm_sandbox", name="tls_connect")
def tls_connect(
    ctx: WasiContext, mem: GuestMemory, host_ptr: int, host_len: int, port: int, fd_out: int
) -> int:
    """Like ``tcp_connect``, with TLS done by the host (certificate and name verified against
    the policy's trust store): the guest reads and writes plaintext."""
    return _connect_import(ctx, mem, host_ptr, host_len, port, fd_out, tls=True)


def _connect_import(
    ctx: WasiContext, mem: GuestMemory, host_ptr: int, host_len: int, port: int, fd_out: int,
    *, tls: bool,
) -> int:  # fmt: skip
    """The guest-facing half of both connect imports: the host name read as ASCII from guest
    memory, the new descriptor written to ``fd_out``."""
    if host_len == 0 or host_len > _MAX_HOST:
        return Errno.EINVAL
    raw = mem.read(host_ptr, host_len)
    mem.check(fd_out, 4)
    try:
        host = raw.decode("ascii")
    except UnicodeDecodeError:
        return Errno.EINVAL
    mem.set_u32(fd_out, open_connection(ctx, host, port, tls=tls))
    return 0


def open_connection(ctx: WasiContext, host: str, port: int, *, tls: bool = False) -> int:
    """Connect to ``host:port`` for the guest after the policy and the limits (and speak TLS
    on it when ``tls``); the guest descriptor, or WasiError (EACCES when refused, unless strict
    mode stops the guest)."""
    if not 1 <= port <= 65535 or "\0" in host or not host or len(host) > _MAX_HOST:
        raise WasiError(Errno.EINVAL)
    guard = ctx.net
    guard.requests += 1
    endpoint = f"{host}:{port}"
    guard.endpoint = endpoint
    guard.refused = None
    patterns = guard.policy.matching(host.strip("[]") if host.startswith("[") else host, port)
    if not patterns:
        why = f"not allowed by the network policy: allow {endpoint!r} to permit it"
        raise WasiError(_refuse(ctx, guard, endpoint, why))
    if guard.policy.require_tls and not tls:
        why = "the network policy requires TLS (require_tls=True): connect with TLS"
        raise WasiError(_refuse(ctx, guard, endpoint, why))
    if not guard.take_token():
        guard.refusals += 1
        rate = guard.limits.rate or 0
        raise _limit(ctx, guard, "max_requests_per_second", rate + 1, rate, Errno.EAGAIN)
    active = active_connections(ctx)
    if guard.limits.max_connections is not None and active >= guard.limits.max_connections:
        guard.refusals += 1
        cap = guard.limits.max_connections
        raise _limit(ctx, guard, "max_connections", active + 1, cap, Errno.ENFILE)
    ctx.check_open_room()
    # Past every check: from here the attempt reaches the outside (a lookup, a connect).
    ctx.external_effect(f"a network connection to {endpoint}")
    addresses = _resolve(ctx, guard, host.strip("[]"), port)
    allowed = [a for a in addresses if guard.policy.address_allowed(patterns, a[0])]
    if not allowed:
        reason = (
            "resolves only to private, loopback or link-local addresses, which the network "
            "policy refuses: allow the address itself, or set allow_private=True, to permit it"
        )
        raise WasiError(_refuse(ctx, guard, endpoint, reason))
    fd = _connect(ctx, guard, allowed)
    entry = FdEntry("socket", None, fd, (endpoint,), readable=True, writable=True)
    if tls:
        try:
            _start_tls(ctx, guard, entry, host.strip("[]"))
        except BaseException:
            _close_entry(entry)
            raise
    try:
        new = ctx.fds.add(entry)
    except WasiError:
        _close_entry(entry)
        raise
    guard.active = active + 1
    guard.changed()
    return new


def _resolve(
    ctx: WasiContext, guard: NetworkGuard, host: str, port: int
) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[object, ...], int]]:
    """(address, sockaddr, family) for each address the host's resolver gives. A name is
    resolved on a resolver thread while this one waits in slices, so a slow resolver cannot
    hold the guest past its deadline or connect_timeout."""
    try:
        ipaddress.ip_address(host)
        numeric = True
    except ValueError:
        numeric = False
    try:
        if numeric:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        else:
            future = _resolver().submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            started = time.monotonic()
            end = (
                None
                if guard.limits.connect_timeout is None
                else started + guard.limits.connect_timeout
            )
            ctx.wait_until(
                lambda seconds: bool(concurrent.futures.wait([future], timeout=seconds).done),
                end,
                lambda: timed_out(ctx, guard, "connect_timeout", started),
            )
            infos = future.result()
    except (socket.gaierror, UnicodeError, OSError):
        raise WasiError(Errno.EHOSTUNREACH) from None
    out = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        except ValueError:
            continue
        out.append((address, tuple(sockaddr), int(family)))
    if not out:
        raise WasiError(Errno.EHOSTUNREACH)
    return out


def _connect(
    ctx: WasiContext,
    guard: NetworkGuard,
    addresses: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[object, ...], int]],
) -> int:
    """A connected non-blocking host descriptor to the first address that answers."""
    last = Errno.ECONNREFUSED
    for _, sockaddr, family in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(sockaddr)
            if code not in (0, _EINPROGRESS):
                last = errno_from_oserror(OSError(code, os.strerror(code)))
                sock.close()
                continue
            started = time.monotonic()
            end = (
                None
                if guard.limits.connect_timeout is None
                else started + guard.limits.connect_timeout
            )

            try:
                ctx.wait_until(
                    functools.partial(poll_fds, [], [sock.fileno()]),
                    end,
                    functools.partial(timed_out, ctx, guard, "connect_timeout", started),
                )
            except BaseException:
                sock.close()  # timed out, or stopped (deadline, cancel) while connecting
                raise
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                last = errno_from_oserror(OSError(code, os.strerror(code)))
                sock.close()
                continue
            return sock.detach()
        except BaseException:
            sock.close()
            raise
    raise WasiError(last)


_RESOLVERS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def _resolver() -> concurrent.futures.ThreadPoolExecutor:
    """A small pool of resolver threads, one per process (a fork gets its own)."""
    pid = os.getpid()
    pool = _RESOLVERS.get(pid)
    if pool is None:
        _RESOLVERS.clear()
        pool = _RESOLVERS[pid] = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="wasm-sandbox-dns"
        )
    return pool


_EINPROGRESS = 115  # Linux; connect_ex reports it for a non-blocking connect under way


def _start_tls(ctx: WasiContext, guard: NetworkGuard, entry: FdEntry, server_name: str) -> None:
    """Speak TLS on ``entry``'s connection from now on: handshake, certificate and name
    verified; a failed verification is a security event and ECONNABORTED for the guest."""
    import ssl  # noqa: PLC0415 - ~17 ms of import time; only TLS needs it

    if entry.tls is not None:
        raise WasiError(Errno.EISCONN)
    assert entry.fd is not None
    sock = socket.socket(fileno=entry.fd)
    try:
        tls = guard.tls_context().wrap_socket(
            sock, server_hostname=server_name, do_handshake_on_connect=False
        )
    except BaseException:
        sock.detach()
        raise
    entry.tls = tls
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            _wait(ctx, guard, entry, write=False)
        except ssl.SSLWantWriteError:
            _wait(ctx, guard, entry, write=True)
        except ssl.SSLCertVerificationError as exc:
            endpoint = entry.rel[0] if entry.rel else server_name
            ctx.refuse(
                "network",
                endpoint,
                f"TLS certificate refused: {exc.verify_message}",
                Errno.ECONNABORTED,
            )
            raise WasiError(Errno.ECONNABORTED) from None
        except (ssl.SSLError, OSError):
            raise WasiError(Errno.ECONNABORTED) from None


def _wait(ctx: WasiContext, guard: NetworkGuard, entry: FdEntry, *, write: bool) -> None:
    """Block until the connection is ready, honouring network_timeout (a network limit) and
    the connection's own timeout (ETIMEDOUT; EAGAIN for a non-blocking one) and the
    execution's deadline."""
    fd = entry.fd
    assert fd is not None
    limits = [t for t in (guard.limits.io_timeout, entry.timeout) if t is not None]
    if entry.timeout == 0 and not ready(fd, write=write):
        raise WasiError(Errno.EAGAIN)
    started = time.monotonic()
    end = started + min(limits) if limits else None

    def io_timed_out() -> BaseException:
        if guard.limits.io_timeout is not None and guard.limits.io_timeout == min(limits):
            return timed_out(ctx, guard, "network_timeout", started)
        return WasiError(Errno.ETIMEDOUT)  # the guest's own timeout, not a limit

    readers, writers = ([], [fd]) if write else ([fd], [])
    ctx.wait_until(lambda seconds: poll_fds(readers, writers, seconds), end, io_timed_out)


def socket_read(ctx: WasiContext, entry: FdEntry, buffers: list[memoryview]) -> int:
    """Read from a guest connection into ``buffers``; 0 at end of stream."""
    guard = ctx.net
    fd = entry.fd
    if fd is None or not entry.readable:
        raise WasiError(Errno.ENOTCONN)
    wanted = sum(len(b) for b in buffers)
    if wanted == 0:
        return 0
    if guard.limits.max_download is not None:
        room = guard.limits.max_download - guard.received
        if room <= 0:
            cap = guard.limits.max_download
            raise _limit(ctx, guard, "max_download_bytes", guard.received + 1, cap, Errno.EDQUOT)
        buffers = _clip(buffers, room)
    tls = entry.tls
    if tls is not None:
        first = buffers[0]
        count = _transfer(ctx, guard, entry, False, lambda: tls.recv_into(first, len(first)))
    else:
        count = _transfer(ctx, guard, entry, False, lambda: os.readv(fd, buffers))
    guard.received += count
    guard.changed()
    return count


def socket_write(ctx: WasiContext, entry: FdEntry, buffers: list[memoryview]) -> int:
    """Write ``buffers`` (views of guest memory, or of one host chunk), or the part the
    upload cap and the socket take, to a guest connection; the bytes sent. Nothing is
    gathered: a plain connection writes the views as they are (``writev``), TLS sends at
    most ``_TLS_CHUNK`` bytes of the first."""
    guard = ctx.net
    fd = entry.fd
    if fd is None or not entry.writable:
        raise WasiError(Errno.EPIPE)
    size = sum(len(b) for b in buffers)
    if not size:
        return 0
    if guard.limits.max_upload is not None:
        room = guard.limits.max_upload - guard.sent
        if room <= 0 or (guard.limits.strict and size > room):
            cap = guard.limits.max_upload
            raise _limit(ctx, guard, "max_upload_bytes", guard.sent + size, cap, Errno.EDQUOT)
        if size > room:
            ctx.counters.network_limits_hit.setdefault(
                "max_upload_bytes", (guard.sent + size, guard.limits.max_upload)
            )
            buffers = _clip(buffers, room)
    tls = entry.tls
    if tls is not None:
        first = buffers[0][:_TLS_CHUNK]
        count = _transfer(ctx, guard, entry, True, lambda: tls.send(first))
    else:
        count = _transfer(ctx, guard, entry, True, lambda: os.writev(fd, buffers))
    guard.sent += count
    guard.changed()
    return count


def _transfer(
    ctx: WasiContext, guard: NetworkGuard, entry: FdEntry, write: bool, attempt: Callable[[], int]
) -> int:
    """Run one non-blocking read or write (plain or TLS) until it does not block, waiting
    between tries; a TLS close is the end of the stream."""
    import ssl  # noqa: PLC0415 - ~17 ms of import time; only TLS needs it

    while True:
        try:
            return attempt()
        except ssl.SSLWantReadError:
            _wait(ctx, guard, entry, write=False)
        except ssl.SSLWantWriteError:
            _wait(ctx, guard, entry, write=True)
        except BlockingIOError:
            _wait(ctx, guard, entry, write=write)
        except ssl.SSLZeroReturnError:
            return 0
        except ssl.SSLError:
            raise WasiError(Errno.EPIPE if write else Errno.ECONNRESET) from None
        except OSError as exc:
            raise WasiError(errno_from_oserror(exc)) from None


_MAX_NET_FRAME = 4096  # a network request through the door is a few dozen bytes
_MAX_FD = (1 << 31) - 1


def net_request(ctx: WasiContext, frame: bytes) -> bytes:
    """A script guest's network request through the door: ``{"net": "connect", "host",
    "port", "tls"}`` -> ``{"fd"}``; ``{"net": "timeout", "fd", "seconds"}``; ``{"net":
    "shutdown", "fd", "how"}``; ``{"net": "tls", "fd", "host"}``; ``{"net": "sockopt", "fd",
    "option", "value"}``. Every field is checked (type and range) before it is used; anything
    else answers ``{"errno": n}`` (EINVAL for a malformed request), never a host error."""
    connecting = False
    try:
        if len(frame) > _MAX_NET_FRAME:
            raise WasiError(Errno.EINVAL)
        request = json.loads(frame)
        if not isinstance(request, dict):
            raise WasiError(Errno.EINVAL)
        if request.get("net") == "connect":
            connecting = True
            return _connect_request(ctx, request)
        _socket_request(ctx, request)
        return b"{}"
    except WasiError as err:
        answer: dict[str, Any] = {"errno": int(err.errno)}
        if connecting and err.errno == Errno.EACCES and ctx.net.refused is not None:
            answer["message"] = ctx.net.refused  # which rule refused it, and how to permit it
        return json.dumps(answer).encode()
    except (ValueError, RecursionError):  # not JSON (or nested past the parser's depth)
        return json.dumps({"errno": int(Errno.EINVAL)}).encode()


def _connect_request(ctx: WasiContext, request: dict[str, Any]) -> bytes:
    host, port = _text(request, "host"), _integer(request, "port")
    tls = request.get("tls", False)
    if not 1 <= port <= 65535 or type(tls) is not bool:
        raise WasiError(Errno.EINVAL)
    return json.dumps({"fd": open_connection(ctx, host, port, tls=tls)}).encode()


def _socket_request(ctx: WasiContext, request: dict[str, Any]) -> None:
    """A request about an open connection: timeout, shutdown, tls, sockopt."""
    op, fd = request.get("net"), _integer(request, "fd")
    if not 0 <= fd <= _MAX_FD:
        raise WasiError(Errno.EBADF)
    entry = ctx.require_fd(fd)
    if entry.kind != "socket":
        raise WasiError(Errno.ENOTSOCK)
    if op == "timeout":
        entry.timeout = _seconds(request.get("seconds", _MISSING))
    elif op == "shutdown":
        shutdown(entry, _integer(request, "how"))
    elif op == "tls":
        _start_tls(ctx, ctx.net, entry, _text(request, "host"))
    elif op == "sockopt":
        value = request.get("value")
        if type(value) is not bool:
            raise WasiError(Errno.EINVAL)
        _set_option(entry, _text(request, "option"), value)
    else:
        raise WasiError(Errno.ENOSYS)


_MISSING = object()
_MAX_TIMEOUT = 365 * 24 * 3600.0  # a socket timeout past a year is no timeout


def _integer(request: dict[str, Any], name: str) -> int:
    """``request[name]`` if it is an int (not a bool) of at most 64 bits, else EINVAL."""
    value = request.get(name)
    if type(value) is not int or not -(1 << 63) <= value < (1 << 64):
        raise WasiError(Errno.EINVAL)
    return value


def _text(request: dict[str, Any], name: str) -> str:
    """``request[name]`` if it is a short text without NUL, else EINVAL."""
    value = request.get(name)
    if not isinstance(value, str) or len(value) > 4 * _MAX_HOST or "\0" in value:
        raise WasiError(Errno.EINVAL)
    return value


def _seconds(value: Any) -> float | None:
    """A socket timeout: None (blocking), or a finite number of seconds >= 0 (EINVAL
    otherwise: NaN, infinities, negatives, non-numbers)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WasiError(Errno.EINVAL)
    if isinstance(value, int):
        if value < 0:
            raise WasiError(Errno.EINVAL)
        return min(float(min(value, 1 << 53)), _MAX_TIMEOUT)
    if not math.isfinite(value) or value < 0:
        raise WasiError(Errno.EINVAL)
    return min(value, _MAX_TIMEOUT)


_OPTIONS = {
    "nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
    "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
}


def _set_option(entry: FdEntry, name: str, value: bool) -> None:
    """Apply a guest's TCP_NODELAY / SO_KEEPALIVE to the host connection."""
    option = _OPTIONS.get(name)
    if option is None or entry.fd is None:
        raise WasiError(Errno.ENOPROTOOPT)
    sock = socket.socket(fileno=entry.fd)
    try:
        sock.setsockopt(*option, int(value))
    finally:
        sock.detach()


def _clip(buffers: list[memoryview], room: int) -> list[memoryview]:
    out = []
    for buffer in buffers:
        if room <= 0:
            break
        out.append(buffer[:room])
        room -= len(out[-1])
    return out


def shutdown(entry: FdEntry, how: int) -> None:
    """Shut down the reading (1), writing (2) or both halves of a guest connection."""
    if entry.fd is None:
        raise WasiError(Errno.ENOTCONN)
    mode = {1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}.get(how)
    if mode is None:
        raise WasiError(Errno.EINVAL)
    sock = socket.socket(fileno=entry.fd)
    try:
        sock.shutdown(mode)
    except OSError as exc:
        raise WasiError(errno_from_oserror(exc)) from None
    finally:
        sock.detach()
    if how & 1:
        entry.readable = False
    if how & 2:
        entry.writable = False


def ready(fd: int, *, write: bool) -> bool:
    """Whether a connection would not block now (for poll_oneoff)."""
    return poll_fds([] if write else [fd], [fd] if write else [], 0)

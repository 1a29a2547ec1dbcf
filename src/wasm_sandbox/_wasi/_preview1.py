"""The ``wasi_snapshot_preview1`` system calls, one function per call, named as in the spec.

Each takes the execution's ``WasiContext``, a ``GuestMemory`` view and the raw arguments
(i32 as unsigned ints, i64 as signed ints), and returns an ``Errno``. This module holds the
calls that are neither descriptor nor path calls (those are in ``_files`` and ``_paths``):
arguments and environment, clocks, randomness, ``proc_*``, ``poll_oneoff``, and the
``sock_*`` calls, which move bytes over the connections the host opened for the guest
(``_net``; the guest cannot listen, so ``sock_accept`` answers ENOTSOCK).
"""

from __future__ import annotations

import os
import struct
import time

from . import _net
from ._abi import GuestMemory
from ._context import StopReason, WasiContext, poll_fds
from ._errno import Errno, WasiError
from ._fs import FdEntry
from ._registry import SYSCALLS, Syscall, syscall

__all__ = ["SYSCALLS", "Syscall"]


_SUCCESS = Errno.SUCCESS
_SUBSCRIPTION = struct.Struct(
    "<QB7xIxxxxQQH"
)  # userdata, tag, clock id/fd, timeout, precision, flags
_EVENT = struct.Struct("<QHBxxxxxQH6x")  # userdata, error, type, nbytes, flags
_MAX_SUBSCRIPTIONS = 4096
_EVENTTYPE_CLOCK, _EVENTTYPE_FD_READ, _EVENTTYPE_FD_WRITE = 0, 1, 2
_SUBCLOCKFLAG_ABSTIME = 1
_CLOCK_REALTIME, _CLOCK_MONOTONIC, _CLOCK_PROCESS_CPU, _CLOCK_THREAD_CPU = 0, 1, 2, 3


# --- arguments and environment -------------------------------------------------------------


def _put_strings(mem: GuestMemory, items: list[bytes], array_ptr: int, buf_ptr: int) -> int:
    offset = buf_ptr
    for index, item in enumerate(items):
        mem.set_u32(array_ptr + 4 * index, offset)
        mem.write(offset, item + b"\0")
        offset += len(item) + 1
    return _SUCCESS


def _put_sizes(mem: GuestMemory, items: list[bytes], count_ptr: int, size_ptr: int) -> int:
    mem.set_u32(count_ptr, len(items))
    mem.set_u32(size_ptr, sum(len(item) + 1 for item in items))
    return _SUCCESS


@syscall("ii")
def args_get(ctx: WasiContext, mem: GuestMemory, argv: int, argv_buf: int) -> int:
    """Read command-line argument data."""
    return _put_strings(mem, ctx.args, argv, argv_buf)


@syscall("ii")
def args_sizes_get(ctx: WasiContext, mem: GuestMemory, argc: int, argv_buf_size: int) -> int:
    """Return command-line argument data sizes."""
    return _put_sizes(mem, ctx.args, argc, argv_buf_size)


@syscall("ii")
def environ_get(ctx: WasiContext, mem: GuestMemory, environ: int, environ_buf: int) -> int:
    """Read environment variable data."""
    return _put_strings(mem, ctx.env, environ, environ_buf)


@syscall("ii")
def environ_sizes_get(ctx: WasiContext, mem: GuestMemory, count: int, buf_size: int) -> int:
    """Return environment variable data sizes."""
    return _put_sizes(mem, ctx.env, count, buf_size)


# --- clocks, randomness, scheduling --------------------------------------------------------


def _now(ctx: WasiContext, clock_id: int) -> int:
    if clock_id == _CLOCK_REALTIME:
        return time.time_ns()
    if clock_id == _CLOCK_MONOTONIC:
        return time.monotonic_ns()
    if clock_id in (_CLOCK_PROCESS_CPU, _CLOCK_THREAD_CPU):
        return time.thread_time_ns()  # the guest runs on this thread: its own CPU time
    raise WasiError(Errno.EINVAL)


@syscall("ii")
def clock_res_get(ctx: WasiContext, mem: GuestMemory, clock_id: int, resolution: int) -> int:
    """Return the resolution of a clock."""
    _now(ctx, clock_id)
    mem.set_u64(resolution, 1_000)
    return _SUCCESS


@syscall("iIi")
def clock_time_get(
    ctx: WasiContext, mem: GuestMemory, clock_id: int, precision: int, time_ptr: int
) -> int:
    """Return the time value of a clock."""
    mem.set_u64(time_ptr, _now(ctx, clock_id))
    return _SUCCESS


@syscall("ii")
def random_get(ctx: WasiContext, mem: GuestMemory, buf: int, buf_len: int) -> int:
    """Write high-quality random data into a buffer."""
    mem.check(buf, buf_len)
    done = 0
    while done < buf_len:
        ctx.check_stop()  # gigabytes of randomness take seconds: honour the deadline
        chunk = os.urandom(min(buf_len - done, 1 << 20))
        mem.write(buf + done, chunk)
        done += len(chunk)
    return _SUCCESS


@syscall("")
def sched_yield(ctx: WasiContext, mem: GuestMemory) -> int:
    """Temporarily yield execution of the calling thread."""
    ctx.check_stop()
    time.sleep(0)
    return _SUCCESS


@syscall("i", results="")
def proc_exit(ctx: WasiContext, mem: GuestMemory, rval: int) -> int:
    """Terminate the process normally with exit code ``rval``."""
    ctx.stop_state.exit_code = rval
    raise ctx.stop(StopReason.EXIT)


@syscall("i")
def proc_raise(ctx: WasiContext, mem: GuestMemory, sig: int) -> int:
    """Send a signal to the process of the calling thread (not supported: ENOSYS)."""
    return Errno.ENOSYS


# --- sockets: the connections the host opened (wasm_sandbox.tcp_connect, tls_connect) ----


def _no_socket(ctx: WasiContext, fd: int) -> int:
    ctx.require_fd(fd)
    return Errno.ENOTSOCK


def _socket(ctx: WasiContext, fd: int) -> FdEntry:
    """The connection behind ``fd``: EBADF if closed, ENOTSOCK if it is not one."""
    entry = ctx.require_fd(fd)
    if entry.kind != "socket":
        raise WasiError(Errno.ENOTSOCK)
    return entry


@syscall("iii")
def sock_accept(ctx: WasiContext, mem: GuestMemory, fd: int, flags: int, new_fd: int) -> int:
    """Accept a new incoming connection."""
    return _no_socket(ctx, fd)


@syscall("iiiiii")
def sock_recv(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    ri_data: int,
    ri_len: int,
    ri_flags: int,
    ro_len: int,
    ro_flags: int,
) -> int:
    """Receive a message from a socket (a connection from ``wasm_sandbox.tcp_connect``)."""
    entry = _socket(ctx, fd)
    mem.check(ro_len, 4)
    mem.check(ro_flags, 2)
    count = _net.socket_read(ctx, entry, mem.buffers(ri_data, ri_len))
    mem.set_u32(ro_len, count)
    mem.write(ro_flags, b"\0\0")
    return _SUCCESS


@syscall("iiiii")
def sock_send(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    si_data: int,
    si_len: int,
    si_flags: int,
    so_len: int,
) -> int:
    """Send a message on a socket (a connection from ``wasm_sandbox.tcp_connect``)."""
    entry = _socket(ctx, fd)
    mem.check(so_len, 4)
    mem.set_u32(so_len, _net.socket_write(ctx, entry, mem.buffers(si_data, si_len)))
    return _SUCCESS


@syscall("ii")
def sock_shutdown(ctx: WasiContext, mem: GuestMemory, fd: int, how: int) -> int:
    """Shut down socket send and receive channels."""
    _net.shutdown(_socket(ctx, fd), how)
    return _SUCCESS


# --- poll_oneoff ----------------------------------------------------------------------------


@syscall("iiii")
def poll_oneoff(
    ctx: WasiContext, mem: GuestMemory, in_ptr: int, out_ptr: int, nsubscriptions: int, nevents: int
) -> int:
    """Concurrently poll for the occurrence of a set of events."""
    if nsubscriptions == 0 or nsubscriptions > _MAX_SUBSCRIPTIONS:
        return Errno.EINVAL
    raw = mem.read(in_ptr, nsubscriptions * 48)
    mem.check(out_ptr, nsubscriptions * 32)
    subs = [_SUBSCRIPTION.unpack_from(raw, i * 48) for i in range(nsubscriptions)]
    wake: float | None = None
    for _, tag, clock_id, timeout, _, flags in subs:
        if tag == _EVENTTYPE_CLOCK:
            when = _clock_wake(ctx, clock_id, timeout, flags)
            wake = when if wake is None else min(wake, when)
        elif tag > _EVENTTYPE_FD_WRITE:
            return Errno.EINVAL
    events = _poll_once(ctx, subs, fire_clocks=False)
    if not events:

        def ready(seconds: float) -> bool:
            _wait_fds(ctx, subs, seconds)
            events[:] = _poll_once(ctx, subs, fire_clocks=False)
            return bool(events)

        try:
            ctx.wait_until(ready, wake, _ClockFired)
        except _ClockFired:  # the earliest clock subscription is due
            events = _poll_once(ctx, subs, fire_clocks=True)
    for index, event in enumerate(events):
        mem.write(out_ptr + index * 32, event)
    mem.set_u32(nevents, len(events))
    return _SUCCESS


class _ClockFired(Exception):
    """poll_oneoff's wait reached its earliest clock subscription."""


def _clock_wake(ctx: WasiContext, clock_id: int, timeout: int, flags: int) -> float:
    """The monotonic time at which a clock subscription fires."""
    if clock_id not in (_CLOCK_REALTIME, _CLOCK_MONOTONIC):
        raise WasiError(Errno.ENOTSUP)
    now = time.monotonic()
    if flags & _SUBCLOCKFLAG_ABSTIME:
        return now + (timeout - _now(ctx, clock_id)) / 1e9
    return now + timeout / 1e9


def _poll_once(ctx: WasiContext, subs: list[tuple[int, ...]], *, fire_clocks: bool) -> list[bytes]:
    events = []
    for userdata, tag, fd, _, _, _ in subs:
        if tag == _EVENTTYPE_CLOCK:
            if fire_clocks:
                events.append(_EVENT.pack(userdata, 0, tag, 0, 0))
            continue
        entry = ctx.fds.entries.get(fd)
        reading = tag == _EVENTTYPE_FD_READ
        if (
            entry is None
            or (reading and not entry.readable)
            or (not reading and not entry.writable)
        ):
            events.append(_EVENT.pack(userdata, Errno.EBADF, tag, 0, 0))
        elif entry.kind == "socket":
            buffered = reading and entry.tls is not None and entry.tls.pending() > 0
            if entry.fd is not None and (buffered or _net.ready(entry.fd, write=not reading)):
                events.append(_EVENT.pack(userdata, 0, tag, 0, 0))
        elif entry.kind != "stdin":  # files, directories and output streams never block
            events.append(_EVENT.pack(userdata, 0, tag, 0, 0))
        elif ctx.streams.stdin.ready():
            events.append(_EVENT.pack(userdata, 0, tag, ctx.streams.stdin.available(), 0))
    return events


def _wait_fds(ctx: WasiContext, subs: list[tuple[int, ...]], timeout: float) -> None:
    """Block up to ``timeout`` seconds for stdin or a connection to become ready (or just
    sleep)."""
    readers: list[int] = []
    writers: list[int] = []
    fileno = ctx.streams.stdin.fileno
    for _, tag, fd, *_ in subs:
        if tag == _EVENTTYPE_CLOCK:
            continue
        entry = ctx.fds.entries.get(fd)
        if entry is not None and entry.kind == "socket" and entry.fd is not None:
            (readers if tag == _EVENTTYPE_FD_READ else writers).append(entry.fd)
        elif (
            tag == _EVENTTYPE_FD_READ
            and fileno is not None
            and entry is not None
            and (entry.kind == "stdin")
        ):
            readers.append(fileno)
    if readers or writers:
        poll_fds(readers, writers, timeout)
    else:
        time.sleep(timeout)

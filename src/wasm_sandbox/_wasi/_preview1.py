"""The ``wasi_snapshot_preview1`` system calls, one function per call, named as in the spec.

Each takes the execution's ``WasiContext``, a ``GuestMemory`` view and the raw arguments
(i32 as unsigned ints, i64 as signed ints), and returns an ``Errno``. There are no files or
sockets yet: every path and socket call answers with the errno a guest expects when the file
descriptor it names does not exist (EBADF) or is not a directory/socket.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._abi import GuestMemory
from ._context import StopReason, WasiContext
from ._errno import Errno, WasiError

__all__ = ["SYSCALLS", "Syscall"]

SyscallImpl = Callable[..., int]


@dataclass(frozen=True, slots=True)
class Syscall:
    """One preview1 function: its implementation and its wasm signature."""

    name: str
    impl: SyscallImpl
    params: str  # one letter per parameter: "i" i32, "I" i64
    results: str  # "i" (an errno) or "" (proc_exit)


SYSCALLS: dict[str, Syscall] = {}


def syscall(params: str, results: str = "i") -> Callable[[SyscallImpl], SyscallImpl]:
    """Register the decorated function as the preview1 call of the same name."""

    def register(impl: SyscallImpl) -> SyscallImpl:
        SYSCALLS[impl.__name__] = Syscall(impl.__name__, impl, params, results)
        return impl

    return register


_SUCCESS = Errno.SUCCESS
_STDIO = (0, 1, 2)
_FILETYPE_CHARACTER_DEVICE = 2
_RIGHTS_FD_READ = 1 << 1
_RIGHTS_FD_WRITE = 1 << 6
_RIGHTS_POLL_FD_READWRITE = 1 << 27
_FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype, flags, rights base, rights inheriting
_FILESTAT = struct.Struct("<QQBxxxxxxxQQQQQ")
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
    ctx.exit_code = rval
    raise ctx.stop(StopReason.EXIT)


@syscall("i")
def proc_raise(ctx: WasiContext, mem: GuestMemory, sig: int) -> int:
    """Send a signal to the process of the calling thread (not supported: ENOSYS)."""
    return Errno.ENOSYS


# --- file descriptors: standard streams only -------------------------------------------------


@syscall("iiii")
def fd_write(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, nwritten: int
) -> int:
    """Write to a file descriptor."""
    if fd in {1, 2}:
        ctx.require_fd(fd)
        data = mem.gather(iovs, iovs_len)
        (ctx.stdout if fd == 1 else ctx.stderr).write(data)
        mem.set_u32(nwritten, len(data))
        return _SUCCESS
    ctx.require_fd(fd)
    return Errno.EBADF


@syscall("iiii")
def fd_read(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, nread: int
) -> int:
    """Read from a file descriptor."""
    ctx.require_fd(fd)
    if fd != 0:
        return Errno.EBADF
    wanted = mem.capacity(iovs, iovs_len)
    data = ctx.stdin.read(wanted, ctx) if wanted else b""
    mem.set_u32(nread, mem.scatter(iovs, iovs_len, data))
    return _SUCCESS


@syscall("iiiIi")
def fd_pread(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, offset: int, nread: int
) -> int:
    """Read from a file descriptor, without using and updating its offset."""
    ctx.require_fd(fd)
    return Errno.ESPIPE


@syscall("iiiIi")
def fd_pwrite(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    iovs: int,
    iovs_len: int,
    offset: int,
    nwritten: int,
) -> int:
    """Write to a file descriptor, without using and updating its offset."""
    ctx.require_fd(fd)
    return Errno.ESPIPE


@syscall("iIii")
def fd_seek(
    ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, whence: int, newoffset: int
) -> int:
    """Move the offset of a file descriptor."""
    ctx.require_fd(fd)
    return Errno.ESPIPE


@syscall("ii")
def fd_tell(ctx: WasiContext, mem: GuestMemory, fd: int, offset: int) -> int:
    """Return the current offset of a file descriptor."""
    ctx.require_fd(fd)
    return Errno.ESPIPE


@syscall("i")
def fd_close(ctx: WasiContext, mem: GuestMemory, fd: int) -> int:
    """Close a file descriptor."""
    ctx.require_fd(fd)
    ctx.open_fds.discard(fd)
    return _SUCCESS


@syscall("ii")
def fd_renumber(ctx: WasiContext, mem: GuestMemory, fd: int, to: int) -> int:
    """Atomically replace a file descriptor by renumbering another file descriptor."""
    ctx.require_fd(fd)
    ctx.require_fd(to)
    return Errno.ENOTSUP if fd != to else _SUCCESS


@syscall("ii")
def fd_fdstat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> int:
    """Get the attributes of a file descriptor."""
    ctx.require_fd(fd)
    rights = _RIGHTS_POLL_FD_READWRITE | (_RIGHTS_FD_READ if fd == 0 else _RIGHTS_FD_WRITE)
    mem.write(buf, _FDSTAT.pack(_FILETYPE_CHARACTER_DEVICE, 0, rights, 0))
    return _SUCCESS


@syscall("ii")
def fd_fdstat_set_flags(ctx: WasiContext, mem: GuestMemory, fd: int, flags: int) -> int:
    """Adjust the flags associated with a file descriptor."""
    ctx.require_fd(fd)
    return _SUCCESS if flags == 0 else Errno.ENOTSUP


@syscall("iII")
def fd_fdstat_set_rights(
    ctx: WasiContext, mem: GuestMemory, fd: int, base: int, inheriting: int
) -> int:
    """Adjust the rights associated with a file descriptor (rights can only shrink)."""
    ctx.require_fd(fd)
    return Errno.ENOTCAPABLE


@syscall("ii")
def fd_filestat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> int:
    """Return the attributes of an open file."""
    ctx.require_fd(fd)
    mem.write(buf, _FILESTAT.pack(0, fd, _FILETYPE_CHARACTER_DEVICE, 1, 0, 0, 0, 0))
    return _SUCCESS


@syscall("iI")
def fd_filestat_set_size(ctx: WasiContext, mem: GuestMemory, fd: int, size: int) -> int:
    """Adjust the size of an open file."""
    ctx.require_fd(fd)
    return Errno.EINVAL


@syscall("iIIi")
def fd_filestat_set_times(
    ctx: WasiContext, mem: GuestMemory, fd: int, atim: int, mtim: int, flags: int
) -> int:
    """Adjust the timestamps of an open file or directory."""
    ctx.require_fd(fd)
    return Errno.ENOTSUP


@syscall("iIIi")
def fd_advise(
    ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, length: int, advice: int
) -> int:
    """Provide file advisory information on a file descriptor."""
    ctx.require_fd(fd)
    return Errno.ESPIPE


@syscall("iII")
def fd_allocate(ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, length: int) -> int:
    """Force the allocation of space in a file."""
    ctx.require_fd(fd)
    return Errno.ENOTSUP


@syscall("i")
def fd_datasync(ctx: WasiContext, mem: GuestMemory, fd: int) -> int:
    """Synchronize the data of a file to disk."""
    ctx.require_fd(fd)
    return Errno.EINVAL


@syscall("i")
def fd_sync(ctx: WasiContext, mem: GuestMemory, fd: int) -> int:
    """Synchronize the data and metadata of a file to disk."""
    ctx.require_fd(fd)
    return Errno.EINVAL


@syscall("ii")
def fd_prestat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> int:
    """Return a description of the given preopened file descriptor (none exist: EBADF)."""
    return Errno.EBADF


@syscall("iii")
def fd_prestat_dir_name(
    ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int
) -> int:
    """Return a description of the given preopened file descriptor (none exist: EBADF)."""
    return Errno.EBADF


@syscall("iiiIi")
def fd_readdir(
    ctx: WasiContext, mem: GuestMemory, fd: int, buf: int, buf_len: int, cookie: int, bufused: int
) -> int:
    """Read directory entries from a directory."""
    ctx.require_fd(fd)
    return Errno.ENOTDIR


# --- paths: no directory is open yet, so each names a missing or non-directory fd ------------


def _no_directory(ctx: WasiContext, fd: int) -> int:
    ctx.file_calls += 1
    ctx.require_fd(fd)
    return Errno.ENOTDIR


@syscall("iii")
def path_create_directory(
    ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int
) -> int:
    """Create a directory."""
    return _no_directory(ctx, fd)


@syscall("iiiii")
def path_filestat_get(
    ctx: WasiContext, mem: GuestMemory, fd: int, flags: int, path: int, path_len: int, buf: int
) -> int:
    """Return the attributes of a file or directory."""
    return _no_directory(ctx, fd)


@syscall("iiiiIIi")
def path_filestat_set_times(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    flags: int,
    path: int,
    path_len: int,
    atim: int,
    mtim: int,
    fst_flags: int,
) -> int:
    """Adjust the timestamps of a file or directory."""
    return _no_directory(ctx, fd)


@syscall("iiiiiii")
def path_link(
    ctx: WasiContext,
    mem: GuestMemory,
    old_fd: int,
    old_flags: int,
    old_path: int,
    old_len: int,
    new_fd: int,
    new_path: int,
    new_len: int,
) -> int:
    """Create a hard link."""
    return _no_directory(ctx, old_fd)


@syscall("iiiiiIIii")
def path_open(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    dirflags: int,
    path: int,
    path_len: int,
    oflags: int,
    rights_base: int,
    rights_inheriting: int,
    fdflags: int,
    opened_fd: int,
) -> int:
    """Open a file or directory."""
    return _no_directory(ctx, fd)


@syscall("iiiiii")
def path_readlink(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    path: int,
    path_len: int,
    buf: int,
    buf_len: int,
    bufused: int,
) -> int:
    """Read the contents of a symbolic link."""
    return _no_directory(ctx, fd)


@syscall("iii")
def path_remove_directory(
    ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int
) -> int:
    """Remove a directory."""
    return _no_directory(ctx, fd)


@syscall("iiiiii")
def path_rename(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    old_path: int,
    old_len: int,
    new_fd: int,
    new_path: int,
    new_len: int,
) -> int:
    """Rename a file or directory."""
    return _no_directory(ctx, fd)


@syscall("iiiii")
def path_symlink(
    ctx: WasiContext,
    mem: GuestMemory,
    old_path: int,
    old_len: int,
    fd: int,
    new_path: int,
    new_len: int,
) -> int:
    """Create a symbolic link."""
    return _no_directory(ctx, fd)


@syscall("iii")
def path_unlink_file(ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int) -> int:
    """Unlink a file."""
    return _no_directory(ctx, fd)


# --- sockets: no socket descriptors exist ---------------------------------------------------


def _no_socket(ctx: WasiContext, fd: int) -> int:
    ctx.socket_calls += 1
    ctx.require_fd(fd)
    return Errno.ENOTSOCK


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
    """Receive a message from a socket."""
    return _no_socket(ctx, fd)


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
    """Send a message on a socket."""
    return _no_socket(ctx, fd)


@syscall("ii")
def sock_shutdown(ctx: WasiContext, mem: GuestMemory, fd: int, how: int) -> int:
    """Shut down socket send and receive channels."""
    return _no_socket(ctx, fd)


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
    while not events:
        now = time.monotonic()
        if wake is not None and now >= wake:
            events = _poll_once(ctx, subs, fire_clocks=True)
            break
        slice_ = ctx.wait_slice() if wake is None else ctx.wait_slice(min(0.02, wake - now))
        _wait_fds(ctx, subs, slice_)
        ctx.check_stop()
        events = _poll_once(ctx, subs, fire_clocks=False)
    for index, event in enumerate(events):
        mem.write(out_ptr + index * 32, event)
    mem.set_u32(nevents, len(events))
    return _SUCCESS


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
        elif fd not in ctx.open_fds or (tag == _EVENTTYPE_FD_READ) != (fd == 0):
            events.append(_EVENT.pack(userdata, Errno.EBADF, tag, 0, 0))
        elif tag == _EVENTTYPE_FD_WRITE or ctx.stdin.ready():
            events.append(
                _EVENT.pack(userdata, 0, tag, ctx.stdin.available() if tag == 1 else 0, 0)
            )
    return events


def _wait_fds(ctx: WasiContext, subs: list[tuple[int, ...]], timeout: float) -> None:
    """Block up to ``timeout`` seconds for stdin to become readable (or just sleep)."""
    fileno = ctx.stdin.fileno
    if fileno is not None and any(tag == _EVENTTYPE_FD_READ for _, tag, *_ in subs):
        select.select([fileno], [], [], timeout)
    else:
        time.sleep(timeout)

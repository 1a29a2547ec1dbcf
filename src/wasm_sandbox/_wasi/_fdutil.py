"""What both halves of the preview1 file API share (``_files``: the ``fd_*`` calls,
``_paths``: the ``path_*`` calls): flags and rights, the file-call decorator (operation count,
flush of buffered writes, errno translation), and descriptor and stat helpers.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Callable
from functools import wraps

from ._abi import GuestMemory
from ._context import WasiContext
from ._errno import Errno, WasiError, errno_from_oserror
from ._fs import MAX_PATH_BYTES, Escape, FdEntry, MountRuntime, Resolved, decode_path

_SUCCESS = Errno.SUCCESS
# filetype
_UNKNOWN, _BLOCK, _CHAR, _DIRECTORY, _REGULAR, _SOCK_STREAM, _SYMLINK = 0, 1, 2, 3, 4, 6, 7
# rights
_FD_READ, _FD_WRITE, _FD_READDIR = 1 << 1, 1 << 6, 1 << 14
_FD_ALLOCATE, _FD_FILESTAT_SET_SIZE = 1 << 8, 1 << 22
_WRITE_RIGHTS = _FD_WRITE | _FD_ALLOCATE | _FD_FILESTAT_SET_SIZE | 1  # | FD_DATASYNC
_READ_RIGHTS = _FD_READ | _FD_READDIR
# What each kind of descriptor reports (as wasmtime does): a file has the fd_* rights (less
# read or write when not opened for them); a directory the path_* rights (but
# path_filestat_set_size, which preview1 implementations no longer offer), fd_readdir and
# the fd_filestat get/set-times pair, and passes on both sets to what is opened from it.
_RIGHT_NAMES = (  # preview1's rights, bit 0 first
    "fd_datasync",
    "fd_read",
    "fd_seek",
    "fd_fdstat_set_flags",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "fd_advise",
    "fd_allocate",
    "path_create_directory",
    "path_create_file",
    "path_link_source",
    "path_link_target",
    "path_open",
    "fd_readdir",
    "path_readlink",
    "path_rename_source",
    "path_rename_target",
    "path_filestat_get",
    "path_filestat_set_size",
    "path_filestat_set_times",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "path_symlink",
    "path_remove_directory",
    "path_unlink_file",
    "poll_fd_readwrite",
    "sock_shutdown",
    "sock_accept",
)


def _rights(*prefixes: str, but: tuple[str, ...] = ()) -> int:
    """The rights whose names start with one of ``prefixes``, less those named in ``but``."""
    return sum(
        1 << bit
        for bit, name in enumerate(_RIGHT_NAMES)
        if name.startswith(prefixes) and name not in but
    )


_FILE_RIGHTS = _rights("fd_", "poll_", but=("fd_readdir",))
_DIRECTORY_RIGHTS = _rights(
    "path_", "fd_readdir", "fd_filestat_get", "fd_filestat_set_times",
    but=("path_filestat_set_size",),
)  # fmt: skip
_SOCKET_RIGHTS = _rights(
    "fd_read",
    "fd_write",
    "fd_fdstat_set_flags",
    "fd_filestat_get",
    "poll_",
    "sock_",
    but=("fd_readdir",),
)
# flags
_LOOKUP_SYMLINK_FOLLOW = 1
_O_CREAT, _O_DIRECTORY, _O_EXCL, _O_TRUNC = 1, 2, 4, 8
_FDFLAG_APPEND, _FDFLAG_DSYNC, _FDFLAG_NONBLOCK, _FDFLAG_RSYNC, _FDFLAG_SYNC = 1, 2, 4, 8, 16
_ATIM, _ATIM_NOW, _MTIM, _MTIM_NOW = 1, 2, 4, 8
_WHENCE = {0: os.SEEK_SET, 1: os.SEEK_CUR, 2: os.SEEK_END}
_MAX_OFFSET = (1 << 63) - 1  # off_t: a file offset or size past it is EFBIG

_FDSTAT = struct.Struct("<BxHxxxxQQ")
_FILESTAT = struct.Struct("<QQBxxxxxxxQQQQQ")
_DIRENT = struct.Struct("<QQIBxxx")
_PRESTAT = struct.Struct("<BxxxI")


def file_call(*, flush_first: bool = True) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Count the call as a file operation and turn host OSErrors into errnos; buffered
    writes are flushed first (``flush_first``) so the call sees them."""

    def decorate(impl: Callable[..., int]) -> Callable[..., int]:
        @wraps(impl)
        def call(ctx: WasiContext, mem: GuestMemory, *args: int) -> int:
            ctx.counters.file_calls += 1
            if flush_first and ctx.fds.dirty:
                ctx.fds.flush_all()
            limit = ctx.io_limits.file_operations
            if limit is not None and ctx.counters.file_calls > limit:
                raise ctx.limit_hit(
                    "max_file_operations", ctx.counters.file_calls, limit, Errno.EDQUOT
                )
            try:
                return impl(ctx, mem, *args)
            except Escape as exc:
                raise ctx.refuse(
                    "path_escape", _describe(ctx, args), exc.reason, Errno.ENOTCAPABLE
                ) from None
            except OSError as exc:
                raise WasiError(errno_from_oserror(exc)) from None

        return call

    return decorate


_file_call = file_call()
"""The decorator of every file call but the buffered write itself."""


def _describe(ctx: WasiContext, args: tuple[int, ...]) -> str:
    entry = ctx.fds.entries.get(args[0]) if args else None
    return entry.guest_path if entry is not None else "?"


def _path(mem: GuestMemory, ptr: int, length: int) -> str:
    mem.check(ptr, length)
    if length > MAX_PATH_BYTES:  # refused before it is copied
        raise WasiError(Errno.ENAMETOOLONG)
    return decode_path(mem.read(ptr, length))


def _dir(ctx: WasiContext, fd: int) -> FdEntry:
    entry = ctx.require_fd(fd)
    if entry.kind != "dir":
        raise WasiError(Errno.ENOTDIR)
    return entry


def _writable(ctx: WasiContext, target: Resolved, what: str) -> None:
    """EROFS on a read-only mount; on a host directory, the change is an external effect."""
    if target.mount.read_only:
        path = target.mount.guest_name(target.rel)
        raise ctx.refuse("read_only", path, f"{what} on a read-only mount", Errno.EROFS)
    _host_change(ctx, target.mount)


def _host_change(ctx: WasiContext, mount: MountRuntime) -> None:
    """Record a change about to be made to a mounted host directory (not in-memory)."""
    if not mount.mount.in_memory:
        ctx.external_effect(f"a change to the writable host directory {mount.guest_path}")


def _regular_file(ctx: WasiContext, fd: int) -> FdEntry:
    """The entry of ``fd`` if it is an open file; EISDIR for a directory, ESPIPE for a stream."""
    entry = ctx.require_fd(fd)
    if entry.kind != "file" or entry.fd is None:
        raise WasiError(Errno.EISDIR if entry.kind == "dir" else Errno.ESPIPE)
    return entry


def _host_fd(entry: FdEntry) -> int:
    if entry.fd is not None:
        return entry.fd
    if entry.mount is not None:  # a preopened directory: its mount's root
        return entry.mount.root_fd
    raise WasiError(Errno.EBADF)


def _filetype(mode: int) -> int:
    if stat.S_ISREG(mode):
        return _REGULAR
    if stat.S_ISDIR(mode):
        return _DIRECTORY
    if stat.S_ISLNK(mode):
        return _SYMLINK
    if stat.S_ISCHR(mode):
        return _CHAR
    if stat.S_ISBLK(mode):
        return _BLOCK
    if stat.S_ISSOCK(mode):
        return _SOCK_STREAM
    return _UNKNOWN


def _filestat(st: os.stat_result) -> bytes:
    # WASI timestamps are unsigned: a host time before 1970 is shown as 0.
    return _FILESTAT.pack(
        st.st_dev, st.st_ino, _filetype(st.st_mode), st.st_nlink, st.st_size,
        max(st.st_atime_ns, 0), max(st.st_mtime_ns, 0), max(st.st_ctime_ns, 0),
    )  # fmt: skip


# --- reading and writing ----------------------------------------------------------------------


def _times(st: os.stat_result, atim: int, mtim: int, flags: int) -> tuple[int, int]:
    if (flags & _ATIM and flags & _ATIM_NOW) or (flags & _MTIM and flags & _MTIM_NOW):
        raise WasiError(Errno.EINVAL)
    if (flags & _ATIM and atim < 0) or (flags & _MTIM and mtim < 0):
        raise WasiError(Errno.EINVAL)  # u64 timestamps past 2**63 ns (year 2262)
    now = time.time_ns()
    access = atim if flags & _ATIM else now if flags & _ATIM_NOW else st.st_atime_ns
    modify = mtim if flags & _MTIM else now if flags & _MTIM_NOW else st.st_mtime_ns
    return access, modify


def _holders(ctx: WasiContext, st: os.stat_result) -> list[FdEntry]:
    """The open file descriptors of the file ``st`` describes."""
    found = []
    for entry in ctx.fds.entries.values():
        if entry.kind == "file" and entry.fd is not None:
            other = os.fstat(entry.fd)
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                found.append(entry)
    return found

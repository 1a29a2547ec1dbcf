"""The preview1 path calls (``path_*``): open, create, remove, rename and link files and
directories, and read their attributes, through the confined resolution of ``_fs``.

Shares the descriptor helpers of ``_files``; every call counts as a file operation.
"""

from __future__ import annotations

import os
import stat

from .._iomonitor import DirectoryCreate, DirectoryDelete, FileDelete, FileOpen, FileRename
from ._abi import GuestMemory
from ._context import WasiContext
from ._errno import Errno, WasiError
from ._files import (  # the descriptor helpers both halves of the file API share
    _FD_WRITE,
    _FDFLAG_APPEND,
    _FDFLAG_DSYNC,
    _FDFLAG_RSYNC,
    _FDFLAG_SYNC,
    _LOOKUP_SYMLINK_FOLLOW,
    _O_CREAT,
    _O_DIRECTORY,
    _O_EXCL,
    _O_TRUNC,
    _READ_RIGHTS,
    _SUCCESS,
    _WRITE_RIGHTS,
    _dir,
    _file_call,
    _filestat,
    _holders,
    _path,
    _times,
    _writable,
)
from ._fs import Escape, FdEntry, Resolved, resolve
from ._registry import syscall

__all__: list[str] = []


@syscall("iiiiiIIii")
@_file_call
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
    base = _dir(ctx, fd)
    mem.check(opened_fd, 4)
    limit = ctx.fds_limit
    if limit is not None and ctx.fds.count_open() >= limit:
        raise ctx.limit_hit("max_open_files", ctx.fds.count_open() + 1, limit, Errno.EMFILE)
    if oflags & _O_DIRECTORY and oflags & (_O_CREAT | _O_EXCL | _O_TRUNC):
        return Errno.EINVAL
    readable = bool(rights_base & _READ_RIGHTS)
    writable = bool(rights_base & _WRITE_RIGHTS) or bool(oflags & _O_TRUNC)
    name = _path(mem, path, path_len)
    with resolve(base, name, follow=bool(dirflags & _LOOKUP_SYMLINK_FOLLOW)) as target:
        if oflags & _O_DIRECTORY or target.must_be_dir or _is_dir(target):
            # Only fd_write asks to write a directory (EISDIR, as in wasmtime); the other
            # write rights (allocate, set_size, datasync) mean nothing for one.
            writable = bool(rights_base & _FD_WRITE or oflags & _O_TRUNC)
        if writable or oflags & (_O_CREAT | _O_TRUNC):
            _writable(ctx, target, "open for writing")
        if oflags & _O_CREAT and not _exists(target):
            ctx.check_directory_room(target)
        released = _truncated_bytes(target) if oflags & _O_TRUNC else 0
        entry = _open(target, oflags, fdflags, readable, writable)
        target.mount.used = max(0, target.mount.used - released)
    new_fd = ctx.fds.add(entry)
    mem.set_u32(opened_fd, new_fd)
    if ctx.io is not None:
        ctx.io.emit(FileOpen(entry.guest_path))
    return _SUCCESS


def _truncated_bytes(target: Resolved) -> int:
    """On an in-memory mount, the bytes an O_TRUNC open will free (0 elsewhere)."""
    if target.mount.cap is None:
        return 0
    try:
        st = os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _is_dir(target: Resolved) -> bool:
    try:
        st = os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode)


def _trailing_slash_errno(target: Resolved) -> Errno:
    """Why a link cannot be made at "name/": ENOENT, EEXIST (a directory) or ENOTDIR."""
    if not _exists(target):
        return Errno.ENOENT
    return Errno.EEXIST if _is_dir(target) else Errno.ENOTDIR


def _missing_or(target: Resolved, errno: Errno) -> Errno:
    """ENOENT when ``target`` does not exist, else ``errno``."""
    return errno if _exists(target) else Errno.ENOENT


def _exists(target: Resolved) -> bool:
    try:
        os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _open(target: Resolved, oflags: int, fdflags: int, readable: bool, writable: bool) -> FdEntry:
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    flags |= os.O_RDWR if readable and writable else os.O_WRONLY if writable else os.O_RDONLY
    for wasi_flag, host_flag in ((_O_CREAT, os.O_CREAT), (_O_DIRECTORY, os.O_DIRECTORY),
                                 (_O_EXCL, os.O_EXCL), (_O_TRUNC, os.O_TRUNC)):  # fmt: skip
        if oflags & wasi_flag:
            flags |= host_flag
    if fdflags & _FDFLAG_APPEND:
        flags |= os.O_APPEND
    if fdflags & (_FDFLAG_DSYNC | _FDFLAG_RSYNC):
        flags |= os.O_DSYNC
    if fdflags & _FDFLAG_SYNC:
        flags |= os.O_SYNC
    if target.must_be_dir:
        flags |= os.O_DIRECTORY
    host = os.open(target.name, flags, 0o666, dir_fd=target.dir_fd)
    mode = os.fstat(host).st_mode
    if stat.S_ISDIR(mode):
        return FdEntry("dir", target.mount, host, target.rel, True, False)
    if not stat.S_ISREG(mode):  # FIFOs, devices, sockets: never served from a mount
        os.close(host)
        raise WasiError(Errno.ENOTSUP)
    os.set_blocking(host, True)
    entry = FdEntry("file", target.mount, host, target.rel, readable, writable, bool(fdflags & 1))
    entry.sync_flags = fdflags & (_FDFLAG_DSYNC | _FDFLAG_RSYNC | _FDFLAG_SYNC)
    return entry


@syscall("iii")
@_file_call
def path_create_directory(
    ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int
) -> int:
    """Create a directory."""
    with resolve(_dir(ctx, fd), _path(mem, path, path_len), follow=False) as target:
        _writable(ctx, target, "create a directory")
        ctx.check_directory_room(target)
        os.mkdir(target.name, 0o777, dir_fd=target.dir_fd)
    if ctx.io is not None:
        ctx.io.emit(DirectoryCreate(target.mount.guest_name(target.rel)))
    return _SUCCESS


@syscall("iiiii")
@_file_call
def path_filestat_get(
    ctx: WasiContext, mem: GuestMemory, fd: int, flags: int, path: int, path_len: int, buf: int
) -> int:
    """Return the attributes of a file or directory."""
    follow = bool(flags & _LOOKUP_SYMLINK_FOLLOW)
    with resolve(_dir(ctx, fd), _path(mem, path, path_len), follow=follow) as target:
        st = os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
    mem.write(buf, _filestat(st))
    return _SUCCESS


@syscall("iiiiIIi")
@_file_call
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
    follow = bool(flags & _LOOKUP_SYMLINK_FOLLOW)
    with resolve(_dir(ctx, fd), _path(mem, path, path_len), follow=follow) as target:
        _writable(ctx, target, "set times")
        st = os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
        times = _times(st, atim, mtim, fst_flags)
        os.utime(target.name, ns=times, dir_fd=target.dir_fd, follow_symlinks=False)
    return _SUCCESS


@syscall("iiiiiii")
@_file_call
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
    old_base, new_base = _dir(ctx, old_fd), _dir(ctx, new_fd)
    follow = bool(old_flags & _LOOKUP_SYMLINK_FOLLOW)
    with resolve(old_base, _path(mem, old_path, old_len), follow=follow) as source, \
            resolve(new_base, _path(mem, new_path, new_len), follow=False) as target:  # fmt: skip
        if source.mount is not target.mount:
            return Errno.EXDEV
        _writable(ctx, target, "create a hard link")
        if target.must_be_dir:  # "name/" can only name an existing directory
            return _trailing_slash_errno(target)
        ctx.check_directory_room(target)
        os.link(source.name, target.name, src_dir_fd=source.dir_fd, dst_dir_fd=target.dir_fd,
                follow_symlinks=False)  # fmt: skip
    return _SUCCESS


@syscall("iiiiii")
@_file_call
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
    with resolve(_dir(ctx, fd), _path(mem, path, path_len), follow=False) as target:
        data = os.readlink(target.name, dir_fd=target.dir_fd).encode("utf-8", "surrogateescape")
    data = data[:buf_len]
    mem.write(buf, data)
    mem.set_u32(bufused, len(data))
    return _SUCCESS


@syscall("iii")
@_file_call
def path_remove_directory(
    ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int
) -> int:
    """Remove a directory."""
    with resolve(_dir(ctx, fd), _path(mem, path, path_len), follow=False) as target:
        if target.name == ".":
            return Errno.EBUSY if not target.rel else Errno.EINVAL
        _writable(ctx, target, "remove a directory")
        os.rmdir(target.name, dir_fd=target.dir_fd)
    if ctx.io is not None:
        ctx.io.emit(DirectoryDelete(target.mount.guest_name(target.rel)))
    return _SUCCESS


@syscall("iiiiii")
@_file_call
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
    old_base, new_base = _dir(ctx, fd), _dir(ctx, new_fd)
    with resolve(old_base, _path(mem, old_path, old_len), follow=False) as source, \
            resolve(new_base, _path(mem, new_path, new_len), follow=False) as target:  # fmt: skip
        if source.mount is not target.mount:
            return Errno.EXDEV
        if source.name == "." or target.name == ".":
            return Errno.EBUSY
        _writable(ctx, target, "rename")
        if source.rel[:-1] != target.rel[:-1] and not _exists(target):
            ctx.check_directory_room(target)
        _release_replaced(ctx, target)
        os.rename(source.name, target.name, src_dir_fd=source.dir_fd, dst_dir_fd=target.dir_fd)
        if ctx.io is not None:
            old, new = source.mount.guest_name(source.rel), target.mount.guest_name(target.rel)
            ctx.io.emit(FileRename(old, new))
    return _SUCCESS


@syscall("iiiii")
@_file_call
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
    link_target = _path(mem, old_path, old_len)
    with resolve(_dir(ctx, fd), _path(mem, new_path, new_len), follow=False) as target:
        _writable(ctx, target, "create a symbolic link")
        if target.must_be_dir:  # "name/" can only name an existing directory
            return _trailing_slash_errno(target)
        if link_target.startswith("/") or _escapes(target.rel[:-1], link_target):
            raise Escape(f"symbolic link to {link_target!r} would point outside the mount")
        ctx.check_directory_room(target)
        os.symlink(link_target, target.name, dir_fd=target.dir_fd)
    return _SUCCESS


def _escapes(directory: tuple[str, ...], link_target: str) -> bool:
    depth = len(directory)
    for part in link_target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


@syscall("iii")
@_file_call
def path_unlink_file(ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int) -> int:
    """Unlink a file."""
    with resolve(_dir(ctx, fd), _path(mem, path, path_len), follow=False) as target:
        if target.name == ".":
            return Errno.EISDIR
        if target.must_be_dir:  # "name/": EISDIR for a directory, ENOTDIR for anything else
            return Errno.EISDIR if _is_dir(target) else _missing_or(target, Errno.ENOTDIR)
        _writable(ctx, target, "delete a file")
        _release_replaced(ctx, target)
        os.unlink(target.name, dir_fd=target.dir_fd)
    if ctx.io is not None:
        ctx.io.emit(FileDelete(target.mount.guest_name(target.rel)))
    return _SUCCESS


def _release_replaced(ctx: WasiContext, target: Resolved) -> None:
    """On an in-memory mount, give back the bytes of a file about to be unlinked or replaced,
    unless another link or an open descriptor keeps its data alive (then they stay counted:
    the cap errs on the safe side)."""
    mount = target.mount
    if mount.cap is None:
        return
    try:
        st = os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return
    holders = _holders(ctx, st)
    if holders:  # its bytes stay in use until the last descriptor closes
        for holder in holders:
            holder.orphan = True
    else:
        mount.used = max(0, mount.used - st.st_size)

"""The preview1 path calls (``path_*``): open, create, remove, rename and link files and
directories, and read their attributes, through the confined resolution of ``_fs``.

Shares the descriptor helpers of ``_files``; every call counts as a file operation.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from .._observe._iomonitor import DirectoryCreate, DirectoryDelete, FileDelete, FileOpen, FileRename
from ._abi import GuestMemory
from ._context import WasiContext
from ._errno import Errno, WasiError
from ._fdutil import (  # the descriptor helpers both halves of the file API share
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
from ._fs import Escape, FdEntry, MountRuntime, Resolved, resolve
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
    ctx.check_open_room()
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
        created = bool(oflags & _O_CREAT) and not _exists(target)
        if created:
            ctx.check_directory_room(target)
        released = _truncated_bytes(target) if oflags & _O_TRUNC else 0
        with _charged(target, created):
            entry = _open(target, oflags, fdflags, readable, writable)
        target.mount.used = max(0, target.mount.used - released)
    new_fd = _add(ctx, entry)
    mem.set_u32(opened_fd, new_fd)
    if ctx.io is not None:
        ctx.io.emit(FileOpen(entry.guest_path))
    return _SUCCESS


def _add(ctx: WasiContext, entry: FdEntry) -> int:
    """Give ``entry`` a descriptor number, or close it (ENFILE: process-wide headroom)."""
    try:
        return ctx.fds.add(entry)
    except WasiError:
        if entry.fd is not None:
            os.close(entry.fd)
        raise


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
        with _charged(target):
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
        _check_movable_link(source, target)
        with _charged(target):
            os.link(source.name, target.name, src_dir_fd=source.dir_fd,
                    dst_dir_fd=target.dir_fd, follow_symlinks=False)  # fmt: skip
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
        link_target = os.readlink(target.name, dir_fd=target.dir_fd)
        if _leaves(target.rel[:-1], link_target):  # planted on the host: do not reveal it
            raise Escape(f"reading a symbolic link to {link_target!r}, outside the mount")
        data = link_target.encode("utf-8", "surrogateescape")
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
        target.mount.refund_entry(target.name)
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
        _check_movable_link(source, target)
        replaced = _entry_stat(target)
        target.mount.charge_entry(target.name, counted=False)
        try:
            os.rename(source.name, target.name, src_dir_fd=source.dir_fd,
                      dst_dir_fd=target.dir_fd)  # fmt: skip
        except BaseException:
            target.mount.refund_entry(target.name, counted=False)
            raise
        source.mount.refund_entry(source.name, counted=False)
        if replaced is not None:
            _release_entry(ctx, target, replaced)
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
        if not _points_down(link_target):
            raise Escape(
                f"symbolic link to {link_target!r}: a link the guest makes may only point "
                "down from where it is (no absolute target, no '..')"
            )
        ctx.check_directory_room(target)
        with _charged(target, extra=len(link_target.encode())):
            os.symlink(link_target, target.name, dir_fd=target.dir_fd)
    return _SUCCESS


def _points_down(link_target: str) -> bool:
    """True for a relative target without '..': wherever the link is moved, following it
    (and any chain of such links) only descends from the directory that holds it."""
    return not link_target.startswith("/") and ".." not in link_target.split("/")


def _leaves(directory: tuple[str, ...], link_target: str) -> bool:
    """True when ``link_target``, read from ``directory`` (components below the mount
    root), names a place outside the mount: absolute, or more '..' than it is deep."""
    if link_target.startswith("/"):
        return True
    depth = len(directory)
    for part in link_target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _check_movable_link(source: Resolved, target: Resolved) -> None:
    """Refuse to move or hard-link a symbolic link that does not point down (one planted on
    the host) to another directory, where it could point above the mount."""
    if source.rel[:-1] == target.rel[:-1]:
        return
    try:
        link_target = os.readlink(source.name, dir_fd=source.dir_fd)
    except OSError:  # not a symbolic link
        return
    if not _points_down(link_target):
        raise Escape(f"moving the symbolic link {source.name!r} (to {link_target!r}) elsewhere")


@contextmanager
def _charged(target: Resolved, created: bool = True, extra: int = 0) -> Iterator[None]:
    """Charge a new entry at ``target`` to its in-memory mount for the duration of its
    creation, refunded if the creation fails."""
    if not created:
        yield
        return
    target.mount.charge_entry(target.name, extra)
    try:
        yield
    except BaseException:
        target.mount.refund_entry(target.name, extra)
        raise


def _entry_stat(target: Resolved) -> os.stat_result | None:
    try:
        return os.stat(target.name, dir_fd=target.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _release_entry(ctx: WasiContext, target: Resolved, st: os.stat_result) -> None:
    """On an in-memory mount, give back what the entry ``st`` (unlinked or replaced at
    ``target``) held: its name, a last link's target, a last file's bytes."""
    link_bytes = st.st_size if stat.S_ISLNK(st.st_mode) and st.st_nlink == 1 else 0
    target.mount.refund_entry(target.name, link_bytes)
    if stat.S_ISDIR(st.st_mode):
        return
    _release_file_bytes(ctx, target.mount, st)


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
        gone = _entry_stat(target)
        os.unlink(target.name, dir_fd=target.dir_fd)
        if gone is not None:
            _release_entry(ctx, target, gone)
    if ctx.io is not None:
        ctx.io.emit(FileDelete(target.mount.guest_name(target.rel)))
    return _SUCCESS


def _release_file_bytes(ctx: WasiContext, mount: MountRuntime, st: os.stat_result) -> None:
    """On an in-memory mount, give back the bytes of a file just unlinked or replaced,
    unless another link or an open descriptor keeps its data alive (then they stay counted:
    the cap errs on the safe side)."""
    if mount.cap is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return
    holders = _holders(ctx, st)
    if holders:  # its bytes stay in use until the last descriptor closes
        for holder in holders:
            holder.orphan = True
    else:
        mount.used = max(0, mount.used - st.st_size)

"""The preview1 descriptor calls (``fd_*``) over the instance's mounts and standard streams;
the ``path_*`` calls are in ``_paths``.

Standard streams are served from the execution's buffers; files and directories from host
descriptors opened through the confined resolution of ``_fs``. Every call that touches the
file system counts as a file operation; every refusal of an escape or of a write to a
read-only mount is recorded as a security event.
"""

from __future__ import annotations

import fcntl
import os

from .._observe._iomonitor import (
    DirectoryList,
    FileClose,
    FileRead,
    FileWrite,
)
from . import _net
from ._abi import MAX_RW, STREAM_CHUNK, GuestMemory, total
from ._context import WasiContext
from ._errno import Errno, WasiError
from ._fdutil import (  # shared with _paths
    _CHAR,
    _DIRECTORY,
    _DIRECTORY_RIGHTS,
    _DIRENT,
    _FD_READ,
    _FD_WRITE,
    _FDFLAG_APPEND,
    _FDFLAG_NONBLOCK,
    _FDSTAT,
    _FILE_RIGHTS,
    _FILESTAT,
    _MAX_OFFSET,
    _PRESTAT,
    _REGULAR,
    _SOCK_STREAM,
    _SOCKET_RIGHTS,
    _SUCCESS,
    _WHENCE,
    _WRITE_RIGHTS,
    _dir,
    _file_call,
    _filestat,
    _filetype,
    _holders,
    _host_change,
    _host_fd,
    _regular_file,
    _times,
    file_call,
)
from ._fs import FdEntry
from ._hostcalls import HOST_FD, host_channel
from ._registry import syscall

__all__: list[str] = []


@syscall("iiii")
def fd_write(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, nwritten: int
) -> int:
    """Write to a file descriptor."""
    entry = ctx.require_fd(fd)
    kind = entry.kind
    if kind in {"stdout", "stderr"}:
        out = ctx.streams.stdout if kind == "stdout" else ctx.streams.stderr
        size = out.write_iovecs(mem.view, mem.iovecs(iovs, iovs_len), MAX_RW)
        mem.set_u32(nwritten, size)  # past the cap: counted, never copied
        return _SUCCESS
    if kind == "socket":
        mem.check(nwritten, 4)
        mem.set_u32(nwritten, _net.socket_write(ctx, entry, mem.buffers(iovs, iovs_len)))
        return _SUCCESS
    return _write_file(ctx, mem, entry, iovs, iovs_len, nwritten, None)


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
    entry = _regular_file(ctx, fd)
    if offset < 0:
        return Errno.EINVAL
    return _write_file(ctx, mem, entry, iovs, iovs_len, nwritten, offset)


@file_call(flush_first=False)
def _write_file(
    ctx: WasiContext,
    mem: GuestMemory,
    entry: FdEntry,
    iovs: int,
    iovs_len: int,
    nwritten: int,
    offset: int | None,
) -> int:
    if entry.kind != "file" or not entry.writable or entry.fd is None:
        return Errno.EBADF  # directories have no write right (as in wasmtime)
    pairs = mem.iovecs(iovs, iovs_len)
    mem.check(nwritten, 4)
    if offset is not None and entry.pending:
        ctx.fds.flush(entry)  # a positioned write must land after the buffered ones
    size = _fit_limits(ctx, entry, total(pairs), offset)
    size = _fit_memory_cap(entry, size, offset)
    views = mem.views(pairs, size)  # written from guest memory: no host copy
    if not views:
        written = 0
    elif offset is None and ctx.io_limits.buffer_size is not None and not entry.sync_flags:
        written = _buffered_write(ctx, entry, views, size)
    elif offset is None:
        written = os.writev(entry.fd, views)
    else:
        written = os.pwritev(entry.fd, views, offset)
    ctx.counters.bytes_written += written
    if ctx.io is not None:
        ctx.io.emit(FileWrite(entry.guest_path, written))
    mem.set_u32(nwritten, written)
    return _SUCCESS


def _buffered_write(ctx: WasiContext, entry: FdEntry, views: list[memoryview], size: int) -> int:
    """Keep a sequential write in the descriptor's buffer; one host write per
    ``buffer_size`` bytes or ``io_batch_size`` guest writes (io_batch_size/buffer_size).
    One descriptor buffers at a time (a write to another flushes it first), and a write that
    would take the buffer past ``buffer_size`` is not kept, so the host never holds more
    than ``buffer_size`` bytes of buffered writes."""
    fd, cap, fds = entry.fd, ctx.io_limits.buffer_size, ctx.fds
    if fd is None or cap is None:
        raise WasiError(Errno.EBADF)
    if fds.dirty and (len(fds.dirty) > 1 or entry not in fds.dirty):
        for other in [e for e in fds.dirty if e is not entry]:
            try:
                fds.flush(other)
            except WasiError as exc:  # the guest was told "written": report it
                ctx.counters.io_errors.append(f"{other.guest_path}: {exc.errno.name}")
    pending = len(entry.pending) if entry.pending else 0
    if pending + size > cap:
        if pending:
            fds.flush(entry)
        if size >= cap:
            return os.writev(fd, views)
    if entry.pending is None:
        entry.pending = bytearray()
    for view in views:
        entry.pending += view
    entry.pending_writes += 1
    fds.dirty.add(entry)
    batch = ctx.io_limits.batch_size
    if len(entry.pending) >= cap or (batch is not None and entry.pending_writes >= batch):
        fds.flush(entry)
    return size


def _fit_limits(ctx: WasiContext, entry: FdEntry, size: int, offset: int | None) -> int:
    """Cut a write of ``size`` bytes to what max_file_size and max_total_file_size still
    allow; when nothing fits, EFBIG / EDQUOT (a partial write is what POSIX does at such
    limits)."""
    if not size or entry.fd is None:
        return size
    total_cap = ctx.io_limits.total_write
    if total_cap is not None:
        room = total_cap - ctx.counters.bytes_written
        if size > room:
            if room <= 0:
                tried = ctx.counters.bytes_written + size
                raise ctx.limit_hit("max_total_file_size", tried, total_cap, Errno.EDQUOT)
            size = room
    size_cap = ctx.io_limits.file_size
    if size_cap is not None:
        start = _geometry(entry, offset)[0]
        if start + size > size_cap:
            if start >= size_cap:
                tried = start + size
                raise ctx.limit_hit("max_file_size", tried, size_cap, Errno.EFBIG)
            size = size_cap - start
    return size


def _geometry(entry: FdEntry, offset: int | None) -> tuple[int, int]:
    """(where the next write lands, the file's size) as the guest sees them, counting the
    bytes still in the descriptor's write buffer."""
    fd = entry.fd
    if fd is None:
        raise WasiError(Errno.EBADF)
    pending = len(entry.pending) if entry.pending else 0
    host_size = os.fstat(fd).st_size
    if offset is not None:
        return offset, host_size
    position = host_size if entry.append else os.lseek(fd, 0, os.SEEK_CUR)
    return position + pending, max(host_size, position + pending)


def _check_size(ctx: WasiContext, size: int) -> None:
    cap = ctx.io_limits.file_size
    if cap is not None and size > cap:
        raise ctx.limit_hit("max_file_size", size, cap, Errno.EFBIG)


def _fit_memory_cap(entry: FdEntry, size: int, offset: int | None) -> int:
    """On an in-memory mount, cut a write of ``size`` bytes to what its byte cap still
    allows (ENOSPC if nothing)."""
    mount = entry.mount
    if mount is None or mount.cap is None or entry.fd is None:
        return size
    start, current = _geometry(entry, offset)
    growth = max(0, start + size - current)
    room = mount.cap - mount.used
    if growth > room:
        allowed = max(0, current + room - start)
        if allowed == 0:
            raise WasiError(Errno.ENOSPC)
        size = allowed
        growth = room
    mount.used += growth
    return size


@syscall("iiii")
def fd_read(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, nread: int
) -> int:
    """Read from a file descriptor."""
    if fd == HOST_FD:  # not a file: JavaScript's way to call a host function
        return host_channel(ctx, mem, iovs, iovs_len, nread)
    entry = ctx.require_fd(fd)
    if entry.kind == "stdin":
        # Straight into guest memory; a stream moves at most STREAM_CHUNK bytes a read.
        limit = MAX_RW if ctx.streams.stdin.fileno is None else STREAM_CHUNK
        buffers = mem.buffers(iovs, iovs_len, limit)
        mem.check(nread, 4)
        mem.set_u32(nread, ctx.streams.stdin.read_into(buffers, ctx) if buffers else 0)
        return _SUCCESS
    if entry.kind == "socket":
        mem.check(nread, 4)
        mem.set_u32(nread, _net.socket_read(ctx, entry, mem.buffers(iovs, iovs_len)))
        return _SUCCESS
    return _read_file(ctx, mem, entry, iovs, iovs_len, nread, None)


@syscall("iiiIi")
def fd_pread(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, offset: int, nread: int
) -> int:
    """Read from a file descriptor, without using and updating its offset."""
    entry = _regular_file(ctx, fd)
    if offset < 0:
        return Errno.EINVAL
    return _read_file(ctx, mem, entry, iovs, iovs_len, nread, offset)


@_file_call
def _read_file(
    ctx: WasiContext,
    mem: GuestMemory,
    entry: FdEntry,
    iovs: int,
    iovs_len: int,
    nread: int,
    offset: int | None,
) -> int:
    if entry.kind == "dir" or not entry.readable or entry.fd is None:
        return Errno.EBADF  # directories are read with fd_readdir, not fd_read
    mem.check(nread, 4)
    buffers = mem.buffers(iovs, iovs_len)  # straight into guest memory: no copy
    if not buffers:
        count = 0
    elif offset is None:
        count = os.readv(entry.fd, buffers)
    else:
        count = os.preadv(entry.fd, buffers, offset)
    ctx.counters.bytes_read += count
    if ctx.io is not None:
        ctx.io.emit(FileRead(entry.guest_path, count))
    mem.set_u32(nread, count)
    return _SUCCESS


@syscall("iIii")
@_file_call
def fd_seek(
    ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, whence: int, newoffset: int
) -> int:
    """Move the offset of a file descriptor."""
    entry = ctx.require_fd(fd)
    if entry.kind == "dir":
        return Errno.EISDIR
    if entry.kind != "file" or entry.fd is None:
        return Errno.ESPIPE
    if whence not in _WHENCE:
        return Errno.EINVAL
    mem.set_u64(newoffset, os.lseek(entry.fd, offset, _WHENCE[whence]))
    return _SUCCESS


@syscall("ii")
def fd_tell(ctx: WasiContext, mem: GuestMemory, fd: int, offset: int) -> int:
    """Return the current offset of a file descriptor."""
    return int(fd_seek(ctx, mem, fd, 0, 1, offset))


# --- descriptor attributes ----------------------------------------------------------------


@syscall("i")
def fd_close(ctx: WasiContext, mem: GuestMemory, fd: int) -> int:
    """Close a file descriptor."""
    entry = ctx.fds.get(fd)
    if entry.pending:
        ctx.fds.flush(entry)
    if entry.orphan:
        _release_orphan(ctx, entry)
    ctx.fds.close_fd(fd)
    if entry.kind == "socket":
        ctx.net.active = _net.active_connections(ctx)
        ctx.net.changed()
    if entry.mount is not None:  # counted, but never refused: closing frees resources
        ctx.counters.file_calls += 1
        if ctx.io is not None:
            ctx.io.emit(FileClose(entry.guest_path))
    return _SUCCESS


@syscall("ii")
def fd_renumber(ctx: WasiContext, mem: GuestMemory, fd: int, to: int) -> int:
    """Atomically replace a file descriptor by renumbering another file descriptor."""
    entry = ctx.require_fd(fd)
    ctx.require_fd(to)
    if fd != to:
        ctx.fds.renumber(fd, to)
    del entry
    return _SUCCESS


@syscall("ii")
def fd_fdstat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> int:
    """Get the attributes of a file descriptor."""
    entry = ctx.require_fd(fd)
    filetype, rights, inheriting = _kind_rights(entry)
    rights &= entry.rights_base
    inheriting &= entry.rights_inheriting
    flags = (_FDFLAG_APPEND if entry.append else 0) | entry.sync_flags
    mem.write(buf, _FDSTAT.pack(filetype, flags, rights, inheriting))
    return _SUCCESS


@syscall("ii")
@_file_call
def fd_fdstat_set_flags(ctx: WasiContext, mem: GuestMemory, fd: int, flags: int) -> int:
    """Adjust the flags associated with a file descriptor."""
    entry = ctx.require_fd(fd)
    if flags & ~(_FDFLAG_APPEND | _FDFLAG_NONBLOCK):
        return Errno.ENOTSUP
    if entry.kind == "file" and entry.fd is not None:
        current = _fcntl_flags(entry.fd)
        wanted = (current | os.O_APPEND) if flags & _FDFLAG_APPEND else (current & ~os.O_APPEND)
        _set_fcntl_flags(entry.fd, wanted)
        entry.append = bool(flags & _FDFLAG_APPEND)
        return _SUCCESS
    return _SUCCESS if flags & _FDFLAG_APPEND == 0 else Errno.ENOTSUP


def _fcntl_flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _set_fcntl_flags(fd: int, flags: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)


@syscall("iII")
def fd_fdstat_set_rights(
    ctx: WasiContext, mem: GuestMemory, fd: int, base: int, inheriting: int
) -> int:
    """Adjust the rights associated with a file descriptor (rights can only shrink)."""
    entry = ctx.require_fd(fd)
    _, current, current_inheriting = _kind_rights(entry)
    current &= entry.rights_base
    current_inheriting &= entry.rights_inheriting
    if base & ~current or inheriting & ~current_inheriting:
        return Errno.ENOTCAPABLE
    entry.rights_base, entry.rights_inheriting = base, inheriting
    if entry.kind != "dir" and not base & _FD_READ:
        entry.readable = False
    if not base & _FD_WRITE:
        entry.writable = False
    return _SUCCESS


def _kind_rights(entry: FdEntry) -> tuple[int, int, int]:
    """(filetype, base rights, inheriting rights) of a descriptor of ``entry``'s kind and
    access; rights only tell the guest what it may do: read and write are enforced by how
    the host descriptor was opened (as in wasmtime)."""
    if entry.kind == "dir":
        return _DIRECTORY, _DIRECTORY_RIGHTS, _DIRECTORY_RIGHTS | _FILE_RIGHTS
    if entry.kind == "socket":
        filetype, rights = _SOCK_STREAM, _SOCKET_RIGHTS
    else:
        filetype = _REGULAR if entry.kind == "file" else _CHAR
        # stdio keeps fd_seek/fd_tell: wasi-libc's isatty() is "a character device without
        # them", and our captured streams are no terminal (a tty line-buffers printf)
        rights = _FILE_RIGHTS
    rights &= ~(_FD_READ | _WRITE_RIGHTS)
    rights |= (_FD_READ if entry.readable else 0) | (_WRITE_RIGHTS if entry.writable else 0)
    return filetype, rights, 0


@syscall("ii")
@_file_call
def fd_filestat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> int:
    """Return the attributes of an open file."""
    entry = ctx.require_fd(fd)
    if entry.kind in ("stdin", "stdout", "stderr"):
        mem.write(buf, _FILESTAT.pack(0, fd, _CHAR, 1, 0, 0, 0, 0))
        return _SUCCESS
    mem.write(buf, _filestat(os.fstat(_host_fd(entry))))
    return _SUCCESS


@syscall("iI")
@_file_call
def fd_filestat_set_size(ctx: WasiContext, mem: GuestMemory, fd: int, size: int) -> int:
    """Adjust the size of an open file."""
    entry = ctx.require_fd(fd)
    if entry.kind != "file" or entry.fd is None:
        return Errno.EINVAL if entry.kind != "dir" else Errno.EISDIR
    if not entry.writable:
        return Errno.EBADF
    if size < 0:
        return Errno.EINVAL
    _check_size(ctx, size)
    _account_resize(entry, size)
    os.ftruncate(entry.fd, size)
    return _SUCCESS


def _account_resize(entry: FdEntry, size: int) -> None:
    mount = entry.mount
    if mount is None or mount.cap is None or entry.fd is None:
        return
    growth = size - os.fstat(entry.fd).st_size
    if growth > mount.cap - mount.used:
        raise WasiError(Errno.ENOSPC)
    mount.used += growth


@syscall("iIIi")
@_file_call
def fd_filestat_set_times(
    ctx: WasiContext, mem: GuestMemory, fd: int, atim: int, mtim: int, flags: int
) -> int:
    """Adjust the timestamps of an open file or directory."""
    entry = ctx.require_fd(fd)
    if entry.kind in ("stdin", "stdout", "stderr"):
        return Errno.EBADF
    if entry.mount is not None and entry.mount.read_only:
        raise ctx.refuse(
            "read_only", entry.guest_path, "set times on a read-only mount", Errno.EROFS
        )
    if entry.mount is not None:
        _host_change(ctx, entry.mount)
    host = _host_fd(entry)
    os.utime(host, ns=_times(os.fstat(host), atim, mtim, flags))
    return _SUCCESS


@syscall("iIIi")
@_file_call
def fd_advise(
    ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, length: int, advice: int
) -> int:
    """Provide file advisory information on a file descriptor."""
    _regular_file(ctx, fd)
    if offset < 0 or length < 0 or advice > 5:
        return Errno.EINVAL
    return _SUCCESS  # advice only: nothing to enforce


@syscall("iII")
@_file_call
def fd_allocate(ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, length: int) -> int:
    """Force the allocation of space in a file."""
    entry = _regular_file(ctx, fd)
    if not entry.writable:
        return Errno.EBADF
    if offset < 0 or length <= 0:
        return Errno.EINVAL
    end, host = offset + length, _host_fd(entry)
    if end > _MAX_OFFSET:
        return Errno.EFBIG  # as posix_fallocate: offset + len past the largest file size
    if end > os.fstat(host).st_size:
        _check_size(ctx, end)
        _account_resize(entry, end)
        os.ftruncate(host, end)
    return _SUCCESS


@syscall("i")
@_file_call
def fd_datasync(ctx: WasiContext, mem: GuestMemory, fd: int) -> int:
    """Synchronize the data of a file to disk."""
    entry = ctx.require_fd(fd)
    if entry.kind != "file" or entry.fd is None:
        return Errno.EINVAL
    os.fdatasync(entry.fd)
    return _SUCCESS


@syscall("i")
@_file_call
def fd_sync(ctx: WasiContext, mem: GuestMemory, fd: int) -> int:
    """Synchronize the data and metadata of a file to disk."""
    entry = ctx.require_fd(fd)
    if entry.kind not in ("file", "dir"):
        return Errno.EINVAL
    os.fsync(_host_fd(entry))
    return _SUCCESS


# --- preopened directories and directory listing ------------------------------------------


@syscall("ii")
def fd_prestat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> int:
    """Return a description of the given preopened file descriptor."""
    entry = ctx.require_fd(fd)
    if not entry.preopen or entry.mount is None:
        return Errno.EBADF
    mem.write(buf, _PRESTAT.pack(0, len(entry.mount.guest_path.encode())))
    return _SUCCESS


@syscall("iii")
def fd_prestat_dir_name(
    ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int
) -> int:
    """Return the directory name of the given preopened file descriptor."""
    entry = ctx.require_fd(fd)
    if not entry.preopen or entry.mount is None:
        return Errno.EBADF
    name = entry.mount.guest_path.encode()
    if path_len < len(name):
        return Errno.ENAMETOOLONG
    mem.write(path, name)
    return _SUCCESS


@syscall("iiiIi")
@_file_call
def fd_readdir(
    ctx: WasiContext, mem: GuestMemory, fd: int, buf: int, buf_len: int, cookie: int, bufused: int
) -> int:
    """Read directory entries from a directory."""
    entry = _dir(ctx, fd)
    mem.check(buf, buf_len)
    if entry.listing is None or cookie == 0:
        entry.listing = _listing(_host_fd(entry))
        if ctx.io is not None:
            ctx.io.emit(DirectoryList(entry.guest_path))
    out = bytearray()
    for index in range(max(cookie, 0), len(entry.listing)):
        name, ino, kind = entry.listing[index]
        encoded = name.encode("utf-8", "surrogateescape")
        out += _DIRENT.pack(index + 1, ino, len(encoded), kind) + encoded
        if len(out) >= buf_len:
            break
    data = memoryview(out)[:buf_len]
    mem.write(buf, data)
    mem.set_u32(bufused, len(data))
    return _SUCCESS


def _listing(dir_fd: int) -> list[tuple[str, int, int]]:
    here = os.fstat(dir_fd)
    entries = [(".", here.st_ino, _DIRECTORY), ("..", 0, _DIRECTORY)]
    for name in sorted(os.listdir(dir_fd)):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed since the listing
        entries.append((name, st.st_ino, _filetype(st.st_mode)))
    return entries


def _release_orphan(ctx: WasiContext, entry: FdEntry) -> None:
    """Closing the last descriptor of an unlinked in-memory file frees its bytes."""
    mount = entry.mount
    if mount is None or mount.cap is None or entry.fd is None:
        return
    st = os.fstat(entry.fd)
    if len(_holders(ctx, st)) == 1:
        mount.used = max(0, mount.used - st.st_size)

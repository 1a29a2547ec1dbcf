"""WASI preview1 error numbers, and the one mapping from a host ``OSError`` to them.

Values are the spec's ``errno`` enum (``witx``), not the host's C errno values.
"""

from __future__ import annotations

import enum
import errno as _host

__all__ = ["Errno", "WasiError", "errno_from_oserror"]


class Errno(enum.IntEnum):
    """A WASI preview1 ``errno`` value."""

    SUCCESS = 0
    E2BIG = 1
    EACCES = 2
    EADDRINUSE = 3
    EADDRNOTAVAIL = 4
    EAFNOSUPPORT = 5
    EAGAIN = 6
    EALREADY = 7
    EBADF = 8
    EBADMSG = 9
    EBUSY = 10
    ECANCELED = 11
    ECHILD = 12
    ECONNABORTED = 13
    ECONNREFUSED = 14
    ECONNRESET = 15
    EDEADLK = 16
    EDESTADDRREQ = 17
    EDOM = 18
    EDQUOT = 19
    EEXIST = 20
    EFAULT = 21
    EFBIG = 22
    EHOSTUNREACH = 23
    EIDRM = 24
    EILSEQ = 25
    EINPROGRESS = 26
    EINTR = 27
    EINVAL = 28
    EIO = 29
    EISCONN = 30
    EISDIR = 31
    ELOOP = 32
    EMFILE = 33
    EMLINK = 34
    EMSGSIZE = 35
    EMULTIHOP = 36
    ENAMETOOLONG = 37
    ENETDOWN = 38
    ENETRESET = 39
    ENETUNREACH = 40
    ENFILE = 41
    ENOBUFS = 42
    ENODEV = 43
    ENOENT = 44
    ENOEXEC = 45
    ENOLCK = 46
    ENOLINK = 47
    ENOMEM = 48
    ENOMSG = 49
    ENOPROTOOPT = 50
    ENOSPC = 51
    ENOSYS = 52
    ENOTCONN = 53
    ENOTDIR = 54
    ENOTEMPTY = 55
    ENOTRECOVERABLE = 56
    ENOTSOCK = 57
    ENOTSUP = 58
    ENOTTY = 59
    ENXIO = 60
    EOVERFLOW = 61
    EOWNERDEAD = 62
    EPERM = 63
    EPIPE = 64
    EPROTO = 65
    EPROTONOSUPPORT = 66
    EPROTOTYPE = 67
    ERANGE = 68
    EROFS = 69
    ESPIPE = 70
    ESRCH = 71
    ESTALE = 72
    ETIMEDOUT = 73
    ETXTBSY = 74
    EXDEV = 75
    ENOTCAPABLE = 76


class WasiError(Exception):
    """Raised inside a syscall implementation to return ``errno`` to the guest."""

    def __init__(self, errno: Errno) -> None:
        super().__init__(errno.name)
        self.errno = errno


def _host_table() -> dict[int, Errno]:
    table: dict[int, Errno] = {}
    for member in Errno:
        if member is Errno.SUCCESS or member is Errno.ENOTCAPABLE:
            continue
        host = getattr(_host, member.name, None)
        if host is not None:
            table.setdefault(host, member)
    # EWOULDBLOCK and EOPNOTSUPP alias EAGAIN and ENOTSUP on Linux; keep both spellings.
    table.setdefault(_host.EWOULDBLOCK, Errno.EAGAIN)
    table.setdefault(_host.EOPNOTSUPP, Errno.ENOTSUP)
    return table


_FROM_HOST = _host_table()


def errno_from_oserror(exc: OSError) -> Errno:
    """The WASI errno for a host ``OSError`` (``EIO`` when the host error has no WASI twin)."""
    if exc.errno is None:
        return Errno.EIO
    return _FROM_HOST.get(exc.errno, Errno.EIO)

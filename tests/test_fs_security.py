"""Security of the file-system layer under attack: a host-side symlink-swap race, moves and
links between mounts, hard links to files outside a mount, malformed paths and pointers
handed straight to the syscalls, and a fuzz of every ``path_*`` / ``fd_*`` call on writable
mounts; plus the report's byte counts and a 1000-entry directory listing.

C guests: tests/guests/fs_race.c and tests/guests/fs_security.c; the raw-syscall tests use a
WAT module that exports every ``path_*`` and ``fd_*`` import under its own name.
"""

from __future__ import annotations

import collections
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasm_sandbox as ws
from tests.test_fs_differential import run_reference
from wasm_sandbox._wasi._errno import Errno
from wasm_sandbox._wasi._registry import SYSCALLS

# wasi-libc's errno values are WASI's
EFAULT, EILSEQ, EINVAL, ENAMETOOLONG = 21, 25, 28, 37
ELOOP, ENOENT, ENOTDIR, ENOTCAPABLE, EXDEV = 32, 44, 54, 76, 75
_ERRNOS = {int(e) for e in Errno}

SECRET = b"OUTSIDE-SECRET-7f3a9c"
LEGIT = b"legit inside text"


def _security(c_guest: Callable[[str], Path], *mounts: ws.Mount) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(c_guest("fs_security"))
    for mount in mounts:
        builder.mount(mount)
    return builder.build()


def _state(root: Path, skip: Path | None = None) -> dict[str, tuple[object, ...]]:
    """Everything under ``root`` (and ``root`` itself) but the subtree ``skip``: type,
    content or link target, mode, link count, mtime and ctime. A hard link made to a file
    changes its link count and ctime; a new entry changes its directory's mtime."""
    state: dict[str, tuple[object, ...]] = {}

    def record(path: Path) -> None:
        st_ = path.lstat()
        if stat.S_ISLNK(st_.st_mode):
            content: object = os.readlink(path)
        elif stat.S_ISREG(st_.st_mode):
            content = path.read_bytes()
        else:
            content = None
        state[str(path.relative_to(root))] = (
            st_.st_mode, content, st_.st_nlink, st_.st_mtime_ns, st_.st_ctime_ns,
        )  # fmt: skip

    record(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if skip is None or Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            if skip is None or Path(dirpath, name) != skip:
                record(Path(dirpath, name))
    return state


# --- the symlink-swap race ------------------------------------------------------------------


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Let the host thread and the guest's syscalls interleave as finely as possible."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class _Swapper(threading.Thread):
    """Swaps ``directory/name`` between the real entry and the symlinks ``link_abs`` and
    ``link_rel`` next to it (renames of prepared names), as fast as it can for ``seconds``."""

    def __init__(self, directory: Path, name: str, seconds: float) -> None:
        super().__init__(name="symlink-swapper")
        self.directory = directory
        self.name = name
        self.seconds = seconds
        self.stop = threading.Event()
        self.swaps = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        here, links = self.directory, ("link_abs", "link_rel")
        deadline = time.monotonic() + self.seconds
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                link = links[self.swaps % 2]
                os.rename(here / self.name, here / "real")
                os.rename(here / link, here / self.name)
                os.rename(here / self.name, here / link)
                os.rename(here / "real", here / self.name)
                self.swaps += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc


def _race_outcomes(result: ws.ExecutionResult) -> collections.Counter[str]:
    """Check one run of fs_race (2000 attempts) and count its "ok" and "err" lines."""
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert result.exit_code == 0
    out = result.stdout.decode().splitlines()
    assert out[-1] == "done"
    assert len(out) == 2001
    ok = out.count(f"ok {LEGIT.decode()} ")
    assert ok + sum(1 for line in out if line.startswith("err ")) == 2000, out
    # every byte read came from the inside secret.txt
    assert result.resource_report.bytes_read == ok * (len(LEGIT) + 1)
    assert {e.kind for e in result.resource_report.security_events} <= {"path_escape"}
    return collections.Counter(line.split(" ")[0] for line in out[:-1])


@pytest.mark.parametrize("swapped", ["directory", "file"])
def test_symlink_swap_race_never_leaks(
    c_guest, tmp_path: Path, switch_often: None, swapped: str
) -> None:
    """A host thread swaps a path component as fast as it can for about a second: the
    directory ``inside/sub``, or the file ``inside/sub/secret.txt``, with symlinks (absolute
    and relative) to ``outside`` or ``outside/secret.txt``. Meanwhile the guest keeps opening
    ``sub/secret.txt``, 2000 times a run (by path, and through an opened ``sub``). The
    outside secret is never read; the inside one is, at least sometimes."""
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "sub" / "secret.txt").write_bytes(LEGIT + b"\n")
    (outside / "secret.txt").write_bytes(SECRET + b"\n")
    if swapped == "directory":
        (inside / "link_abs").symlink_to(outside)
        (inside / "link_rel").symlink_to("../outside")
        swapper = _Swapper(inside, "sub", seconds=1.0)
    else:
        (inside / "sub" / "link_abs").symlink_to(outside / "secret.txt")
        (inside / "sub" / "link_rel").symlink_to("../../outside/secret.txt")
        swapper = _Swapper(inside / "sub", "secret.txt", seconds=1.0)
    before = _state(outside)
    sandbox = (
        ws.WasmSandbox.builder().source(c_guest("fs_race")).mount_directory(inside, "/data").build()
    )
    results: list[ws.ExecutionResult] = []
    swapper.start()
    try:
        while not results or swapper.is_alive():
            results.append(sandbox.run(["/data", "2000"]))
    finally:
        swapper.stop.set()
        swapper.join()

    assert swapper.failure is None
    assert swapper.swaps > 100
    outcomes: collections.Counter[str] = collections.Counter()
    for result in results:
        outcomes += _race_outcomes(result)
    assert outcomes["ok"] > 0, "the legitimate file was never read"
    assert outcomes["err"] > 0, "the swaps never overlapped the guest's opens"
    assert _state(outside) == before
    assert (inside / "sub" / "secret.txt").read_bytes() == LEGIT + b"\n"


# --- moves and links between mounts -------------------------------------------------------


@pytest.mark.parametrize("second", ["host", "memory", "same host directory"])
def test_cross_mount_rename_and_link_are_exdev(c_guest, tmp_path: Path, second: str) -> None:
    """rename, link and linkat(AT_SYMLINK_FOLLOW) of files and directories from one mount to
    another (both ways) fail with EXDEV and move nothing, even when both mounts show the
    same host directory."""
    first = tmp_path / "a"
    first.mkdir()
    mounts = [ws.Mount.directory(first, "/a", read_only=False)]
    if second == "host":
        other = tmp_path / "b"
        other.mkdir()
        mounts.append(ws.Mount.directory(other, "/b", read_only=False))
    elif second == "memory":
        mounts.append(ws.Mount.memory("/b", 1 << 20))
    else:
        mounts.append(ws.Mount.directory(first, "/b", read_only=False))
    result = _security(c_guest, *mounts).run(["xdev", "/a", "/b"])
    out = result.stdout.decode().splitlines()
    setup, moves = out[:5], out[5:]
    assert setup == ["create A/f: 0", "write A/f: 7", "create B/g: 0", "mkdir A/d: 0",
                     "mkdir B/e: 0"]  # fmt: skip
    assert len(moves) == 24
    for line in moves:
        assert line.endswith(f": -1 {EXDEV}"), line
    assert (first / "f").read_bytes() == b"payload"
    assert (first / "d").is_dir()
    if second == "host":
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["e", "g"]
        assert sorted(p.name for p in first.iterdir()) == ["d", "f"]
    elif second == "same host directory":
        assert sorted(p.name for p in first.iterdir()) == ["d", "e", "f", "g"]
        assert (first / "f").stat().st_nlink == 1
    assert result.resource_report.security_events == ()


# --- hard links out of a mount ------------------------------------------------------------


def test_hard_link_through_planted_symlink_is_refused(c_guest, tmp_path: Path) -> None:
    """link() of a file outside the mount, reached through a symlink planted on the host
    (absolute or relative, as the last component or a directory on the way) or through
    '..', is refused with ENOTCAPABLE and reported; without AT_SYMLINK_FOLLOW a final
    symlink is linked as itself (a new name for the link, not for its target). Either way
    no entry in the mount shares the outside file's inode."""
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    (inside / "link_abs").symlink_to(secret)
    (inside / "link_rel").symlink_to("../outside/secret.txt")
    (inside / "dir_abs").symlink_to(outside)
    (inside / "dir_rel").symlink_to("../outside")
    before = _state(outside)

    result = _security(c_guest, ws.Mount.directory(inside, "/d", read_only=False)).run(
        ["hardlink", "/d"]
    )
    out = result.stdout.decode().splitlines()
    assert out == [
        f"link follow link_abs: -1 {ENOTCAPABLE}",
        "link nofollow link_abs: 0",
        f"link follow link_rel: -1 {ENOTCAPABLE}",
        "link nofollow link_rel: 0",
        f"link follow dir_abs/secret.txt: -1 {ENOTCAPABLE}",
        f"link nofollow dir_abs/secret.txt: -1 {ENOTCAPABLE}",
        f"link follow dir_rel/secret.txt: -1 {ENOTCAPABLE}",
        f"link nofollow dir_rel/secret.txt: -1 {ENOTCAPABLE}",
        f"link follow ../outside/secret.txt: -1 {ENOTCAPABLE}",
        f"link nofollow ../outside/secret.txt: -1 {ENOTCAPABLE}",
    ]
    assert _state(outside) == before
    assert secret.stat().st_nlink == 1
    secret_id = (secret.stat().st_dev, secret.stat().st_ino)
    for entry in inside.iterdir():
        st_ = entry.lstat()
        assert (st_.st_dev, st_.st_ino) != secret_id, entry
    # the no-follow links are new names of the planted symlinks themselves
    assert os.readlink(inside / "nofollow0") == str(secret)
    assert os.readlink(inside / "nofollow1") == "../outside/secret.txt"
    events = result.resource_report.security_events
    assert len(events) == 8
    assert {e.kind for e in events} == {"path_escape"}


# --- raw syscalls with malformed paths and pointers -----------------------------------------

MEMORY_BYTES = 2 * 65536
IOVS = 0x0000  # two iovecs: (0x4000, 16), (0x4010, 8); at 0x10 one of length 0
BAD_IOV = 0x0018  # an iovec whose buffer is outside memory: (0xffffff00, 16)
DATA = 0x4000  # what iovecs point at
OUT = 0x8000  # out-parameters (u32 / u64)
BUF = 0x9000  # 4 KiB for stat, readdir, readlink, prestat name

_STRINGS: tuple[bytes, ...] = (
    b"file",
    b"dir",
    b"dir/inner",
    b"dir/",
    b"dir/./inner/",
    b"dir/../file",
    b"file/x",
    b".",
    b"..",
    b"",
    b"../outside",
    b"../outside/secret.txt",
    b"../../etc/passwd",
    b"/etc/passwd",
    b"link_abs",
    b"link_abs/secret.txt",
    b"link_rel",
    b"dir_link/inner",
    b"loop",
    b"fifo",
    b"new",
    b"new/",
    b"dir/new",
    b"dir/../new2",
    b"a\0b",
    b"\xff\xfe",
    b"ok\xc3",
    b"a" * 4097,
    b"b" * 300,
)
"""Paths placed in the guest's memory; the last five are malformed or too long."""


def _layout() -> dict[bytes, int]:
    offsets, at = {}, 0x100
    for text in _STRINGS:
        if len(text) > 1000:  # the long ones go to the second page
            at = max(at, 0x10000)
        offsets[text] = at
        at += len(text) + 8
    assert at < MEMORY_BYTES
    return offsets


OFFSETS = _layout()
_TYPES = {"i": "i32", "I": "i64"}
NAMES = sorted(n for n in SYSCALLS if n.startswith(("fd_", "path_")))


def _escape(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


@cache
def _raw_wat() -> bytes:
    """A module importing every ``fd_*`` / ``path_*`` call and exporting it under its own
    name, with two pages of memory holding iovecs and the paths of ``_STRINGS``."""
    imports, exports = [], []
    for name in NAMES:
        sc = SYSCALLS[name]
        assert sc.results == "i", name
        params = " ".join(_TYPES[p] for p in sc.params)
        gets = " ".join(f"local.get {i}" for i in range(len(sc.params)))
        imports.append(
            f'(import "wasi_snapshot_preview1" "{name}" (func ${name} (param {params}) '
            "(result i32)))"
        )
        exports.append(
            f'(func (export "{name}") (param {params}) (result i32) {gets} call ${name})'
        )
    iovecs = (
        DATA.to_bytes(4, "little") + (16).to_bytes(4, "little")
        + (DATA + 16).to_bytes(4, "little") + (8).to_bytes(4, "little")
        + DATA.to_bytes(4, "little") + (0).to_bytes(4, "little")
        + (0xFFFFFF00).to_bytes(4, "little") + (16).to_bytes(4, "little")
    )  # fmt: skip
    data = [
        f'(data (i32.const {IOVS}) "{_escape(iovecs)}")',
        f'(data (i32.const {DATA}) "{_escape(b"0123456789abcdefGHIJKLMN")}")',
    ]
    data += [f'(data (i32.const {at}) "{_escape(text)}")' for text, at in OFFSETS.items() if text]
    lines = ["(module", *imports, f'(memory (export "memory") {MEMORY_BYTES // 65536})']
    return "\n".join([*lines, *data, *exports, ")"]).encode()


def _raw(*mounts: ws.Mount, keep: bool = False, **limits: int) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(_raw_wat()).timeout_duration(10)
    builder.max_output_bytes(1 << 16).keep_instance(keep)
    if limits:
        builder.resource_limits(ws.ResourceLimits(**limits))  # type: ignore[arg-type]
    for mount in mounts:
        builder.mount(mount)
    return builder.build()


def _path(text: bytes) -> tuple[int, int]:
    return OFFSETS[text], len(text)


_FD = 3  # the first mount's preopened directory
_READ_WRITE = (1 << 1) | (1 << 6)  # FD_READ | FD_WRITE
_O_CREAT = 1


def _with_path(name: str, where: int, path: tuple[int, int]) -> tuple[int, ...]:
    """Arguments for ``name`` that are valid except for the path in position ``where``
    (0: the first or only path, 1: the second), which is ``path``."""
    ok = _path(b"new")
    first, second = (path, ok) if where == 0 else (ok, path)
    if name == "path_open":
        return (_FD, 0, *first, _O_CREAT, _READ_WRITE, 0, 0, OUT)
    if name in ("path_create_directory", "path_remove_directory", "path_unlink_file"):
        return (_FD, *first)
    if name == "path_filestat_get":
        return (_FD, 0, *first, BUF)
    if name == "path_filestat_set_times":
        return (_FD, 0, *first, 0, 0, 0)
    if name == "path_readlink":
        return (_FD, *first, BUF, 64, OUT)
    if name == "path_rename":
        return (_FD, *first, _FD, *second)
    if name == "path_link":
        return (_FD, 0, *first, _FD, *second)
    if name == "path_symlink":
        return (*first, _FD, *second)
    raise AssertionError(name)


_ONE_PATH = ["path_open", "path_create_directory", "path_remove_directory",
             "path_unlink_file", "path_filestat_get", "path_filestat_set_times",
             "path_readlink"]  # fmt: skip
_TWO_PATHS = ["path_rename", "path_link", "path_symlink"]
_PATH_CASES = [(n, 0) for n in _ONE_PATH + _TWO_PATHS] + [(n, 1) for n in _TWO_PATHS]

_MALFORMED = {
    "nul": (_path(b"a\0b"), EINVAL),
    "invalid utf-8": (_path(b"\xff\xfe"), EILSEQ),
    "truncated utf-8": (_path(b"ok\xc3"), EILSEQ),
    "longer than 4096 bytes": (_path(b"a" * 4097), ENAMETOOLONG),
    "past the end of memory": ((MEMORY_BYTES, 4), EFAULT),
    "straddling the end of memory": ((MEMORY_BYTES - 2, 8), EFAULT),
    "at 0xffffffff": ((0xFFFFFFFF, 1), EFAULT),
    "at 0x80000000": ((0x80000000, 16), EFAULT),
    "4 GiB long": ((0x100, 0xFFFFFFFF), EFAULT),
}


@pytest.fixture(params=["host", "memory"])
def raw_mount(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ws.Mount, Path | None]:
    """A writable mount at /data: a host directory (returned too) or an in-memory one."""
    if request.param == "host":
        host = tmp_path / "mnt"
        host.mkdir()
        return ws.Mount.directory(host, "/data", read_only=False), host
    return ws.Mount.memory("/data", 1 << 20), None


@pytest.mark.parametrize("case", list(_MALFORMED))
@pytest.mark.parametrize(("name", "where"), _PATH_CASES, ids=str)
def test_malformed_paths_get_their_errno(raw_mount, name: str, where: int, case: str) -> None:
    """A path with a NUL byte is EINVAL, invalid UTF-8 EILSEQ, more than 4096 bytes
    ENAMETOOLONG, and one outside linear memory EFAULT, in either path position of every
    path call; never a host error, and nothing is created."""
    mount, host = raw_mount
    path, expected = _MALFORMED[case]
    args = _with_path(name, where, path)
    assert _raw(mount).call(name, *args) == expected
    if host is not None:
        assert list(host.iterdir()) == []


@pytest.mark.parametrize("name", _ONE_PATH + _TWO_PATHS)
def test_component_longer_than_255_bytes_is_enametoolong(raw_mount, name: str) -> None:
    """A path of legal total length whose one component is longer than a file name may be
    is ENAMETOOLONG (the link target of a symlink is not a path to resolve, so it is
    tried as the new name instead)."""
    mount, host = raw_mount
    where = 1 if name == "path_symlink" else 0
    args = _with_path(name, where, _path(b"b" * 300))
    assert _raw(mount).call(name, *args) == ENAMETOOLONG
    if host is not None:
        assert list(host.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("path_open", (_FD, 0, *_path(b"new"), _O_CREAT, _READ_WRITE, 0, 0, MEMORY_BYTES)),
        ("path_open", (_FD, 0, *_path(b"new"), _O_CREAT, _READ_WRITE, 0, 0, MEMORY_BYTES - 3)),
        ("path_open", (_FD, 0, *_path(b"new"), _O_CREAT, _READ_WRITE, 0, 0, 0xFFFFFFFF)),
        ("path_filestat_get", (_FD, 0, *_path(b"."), MEMORY_BYTES - 8)),
        ("path_filestat_get", (_FD, 0, *_path(b"."), 0xFFFFFFF0)),
        ("path_readlink", (_FD, *_path(b"link_rel"), 0xFFFFFF00, 64, OUT)),
        ("fd_prestat_get", (_FD, MEMORY_BYTES)),
        ("fd_prestat_dir_name", (_FD, MEMORY_BYTES - 2, 64)),
        ("fd_filestat_get", (_FD, 0x80000000)),
        ("fd_fdstat_get", (_FD, MEMORY_BYTES - 1)),
        ("fd_readdir", (_FD, 0xFFFFFFFF, 64, 0, OUT)),
        ("fd_readdir", (_FD, BUF, 64, 0, MEMORY_BYTES)),
        ("fd_write", (1, MEMORY_BYTES - 4, 1, OUT)),
        ("fd_write", (1, BAD_IOV, 1, OUT)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_garbage_out_pointers_are_efault(raw_mount, name: str, args: tuple[int, ...]) -> None:
    """Out-parameters and buffers outside linear memory are EFAULT, and a path_open that
    cannot store its descriptor creates no file."""
    mount, host = raw_mount
    sandbox = _raw(mount, keep=True)
    with sandbox:
        if name == "path_readlink":  # something to read: link_rel -> file
            assert sandbox.call("path_symlink", *_path(b"file"), _FD, *_path(b"link_rel")) == 0
        assert sandbox.call(name, *args) == EFAULT
    if host is not None:
        assert sorted(p.name for p in host.iterdir()) == (
            ["link_rel"] if name == "path_readlink" else []
        )


# --- timestamps outside what a signed 64-bit nanosecond count holds ------------------------

_MTIM = 4  # fstflags: set mtime from the argument
EOVERFLOW = 61


def test_pre_1970_host_timestamps_are_shown_as_zero(c_guest, tmp_path: Path) -> None:
    """A host file stamped before 1970 (negative nanoseconds) is stat-able: WASI timestamps
    are unsigned, so they read as 0 (as under wasmtime), and never end the guest with a
    host error (packing a negative time as u64 used to)."""
    (tmp_path / "old").write_bytes(b"x")
    os.utime(tmp_path / "old", ns=(-(10**9), -(10**9)))
    result = _security(c_guest, ws.Mount.directory(tmp_path, "/d")).run(["stat", "/d/old"])
    assert result.stdout == (b"stat 0 errno 0 mtime 0 atime 0\nfstat 0 errno 0 mtime 0 atime 0\n")


@pytest.mark.parametrize("mtim", [-1, -(2**63)], ids=["2**64-1", "2**63"])
@pytest.mark.parametrize("call", ["path_filestat_set_times", "fd_filestat_set_times"])
def test_set_times_past_2_to_the_63_does_not_wrap_to_the_past(
    tmp_path: Path, call: str, mtim: int
) -> None:
    """A u64 timestamp of 2**63 ns or more (passed in an i64) is refused or kept in the
    future, never turned into a time before 1970 on the host; the file stays stat-able."""
    (tmp_path / "file").write_bytes(b"x")
    sandbox = _raw(ws.Mount.directory(tmp_path, "/data", read_only=False), keep=True)
    with sandbox:
        if call == "path_filestat_set_times":
            errno = sandbox.call(call, _FD, 0, *_path(b"file"), 0, mtim, _MTIM)
        else:
            assert (
                sandbox.call("path_open", _FD, 0, *_path(b"file"), 0, _READ_WRITE, 0, 0, OUT) == 0
            )
            errno = sandbox.call(call, _FD + 1, 0, mtim, _MTIM)  # the first descriptor opened
        assert errno in (0, EINVAL, EOVERFLOW)
        assert (tmp_path / "file").stat().st_mtime_ns >= 0
        assert sandbox.call("path_filestat_get", _FD, 0, *_path(b"file"), BUF) == 0


# --- fuzz: every path_* and fd_* call, with arbitrary arguments, on writable mounts ---------

# Roles of each parameter: F a descriptor, f flags (i32), U an i64, o an out-pointer, and
# two parameters each for P a path (pointer, length), B a buffer, V an iovec array.
ROLES = {
    "fd_advise": "FUUf", "fd_allocate": "FUU", "fd_close": "F", "fd_datasync": "F",
    "fd_fdstat_get": "Fo", "fd_fdstat_set_flags": "Ff", "fd_fdstat_set_rights": "FUU",
    "fd_filestat_get": "Fo", "fd_filestat_set_size": "FU", "fd_filestat_set_times": "FUUf",
    "fd_pread": "FVUo", "fd_prestat_dir_name": "FB", "fd_prestat_get": "Fo",
    "fd_pwrite": "FVUo", "fd_read": "FVo", "fd_readdir": "FBUo", "fd_renumber": "FF",
    "fd_seek": "FUfo", "fd_sync": "F", "fd_tell": "Fo", "fd_write": "FVo",
    "path_create_directory": "FP", "path_filestat_get": "FfPo",
    "path_filestat_set_times": "FfPUUf", "path_link": "FfPFP", "path_open": "FfPfUUfo",
    "path_readlink": "FPBo", "path_remove_directory": "FP", "path_rename": "FPFP",
    "path_symlink": "PFP", "path_unlink_file": "FP",
}  # fmt: skip
_ROLE_TYPES = {"F": "i", "f": "i", "o": "i", "U": "I", "P": "ii", "B": "ii", "V": "ii"}

_I32 = st.integers(0, 2**32 - 1)
_I64 = st.integers(-(2**63), 2**63 - 1)


def _mostly(
    plausible: st.SearchStrategy[tuple[int, ...]], wild: st.SearchStrategy[tuple[int, ...]]
) -> st.SearchStrategy[tuple[int, ...]]:
    """Nine times in ten a plausible value (so calls get past their first check and build
    state for the next ones), else anything."""
    return st.integers(0, 9).flatmap(lambda k: wild if k == 0 else plausible)


def _one(values: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[int, ...]]:
    return values.map(lambda v: (v,))


_ROLE_STRATEGIES: dict[str, st.SearchStrategy[tuple[int, ...]]] = {
    # 3: the host mount, 4: the memory mount, 5: the read-only mount, 6..9: opened by the guest
    "F": _mostly(_one(st.sampled_from([3, 3, 3, 3, 4, 4, 5, 6, 7, 8, 9, 0, 1, 2])), _one(_I32)),
    "f": _mostly(_one(st.integers(0, 31)), _one(_I32)),
    "o": _mostly(
        _one(st.sampled_from([OUT, OUT + 8, OUT + 16])),
        _one(st.sampled_from([MEMORY_BYTES - 2, MEMORY_BYTES, 0xFFFFFFFF]) | _I32),
    ),
    "U": _one(
        st.sampled_from([0, 1, 8, 4096, 1 << 20, -1, 2**63 - 1, -(2**63)])
        | st.integers(0, 1 << 16)
        | _I64
    ),
    "P": _mostly(st.sampled_from(list(OFFSETS)).map(_path), st.tuples(_I32, _I32)),
    "B": _mostly(
        st.tuples(st.just(BUF), st.sampled_from([0, 1, 8, 24, 40, 64, 4096])),
        st.tuples(_I32, _I32),
    ),
    "V": _mostly(
        st.sampled_from([(IOVS, 1), (IOVS, 2), (IOVS + 16, 1), (IOVS, 0), (BAD_IOV, 1)]),
        st.tuples(_I32, st.integers(0, 2000)),
    ),
}
_RIGHTS = (1 << 1) | (1 << 6) | (1 << 14)  # FD_READ | FD_WRITE | FD_READDIR
_PLAUSIBLE_OPEN = st.tuples(
    st.sampled_from([3, 4, 5]),
    st.sampled_from([0, 1]),  # LOOKUP_SYMLINK_FOLLOW or not
    st.sampled_from([b"file", b"dir", b"new", b"dir/new", b".", b"dir_link/inner"]).map(_path),
    st.sampled_from([0, 1, 1 | 8, 2]),  # none, CREAT, CREAT|TRUNC, DIRECTORY
    st.sampled_from([_RIGHTS, 1 << 1, 1 << 6]),
    st.sampled_from([0, 1]),  # fdflags: APPEND or not
).map(lambda a: ("path_open", (a[0], a[1], *a[2], a[3], a[4], a[4], a[5], OUT)))
"""A path_open likely to succeed, so that the calls after it have files to work on."""


def _arguments(name: str) -> st.SearchStrategy[tuple[int, ...]]:
    roles = ROLES.get(name)
    params = SYSCALLS[name].params
    if roles is None or "".join(_ROLE_TYPES[r] for r in roles) != params:
        # a call this table does not know (or knows wrongly): arbitrary values
        return st.tuples(*(_I32 if p == "i" else _I64 for p in params))
    parts = [_ROLE_STRATEGIES[r] for r in roles]
    return st.tuples(*parts).map(lambda groups: tuple(v for g in groups for v in g))


def test_roles_match_the_syscall_signatures() -> None:
    """The fuzz's table of parameter roles fits every fd_* and path_* call as registered."""
    for name in NAMES:
        assert name in ROLES, name
        assert "".join(_ROLE_TYPES[r] for r in ROLES[name]) == SYSCALLS[name].params, name


_CALLS = st.tuples(
    st.lists(_PLAUSIBLE_OPEN, max_size=3),
    st.lists(
        st.sampled_from(NAMES).flatmap(lambda n: _arguments(n).map(lambda a: (n, a))),
        min_size=1,
        max_size=16,
    ),
).map(lambda parts: parts[0] + parts[1])


def _plant(mnt: Path, outside: Path) -> None:
    """Empty ``mnt`` and lay out what the fuzzed paths name, escape links included."""
    for child in mnt.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (mnt / "dir").mkdir()
    (mnt / "dir" / "inner").write_bytes(b"inner\n")
    (mnt / "file").write_bytes(b"hello world\n")
    (mnt / "link_abs").symlink_to(outside)
    (mnt / "link_rel").symlink_to("../outside/secret.txt")
    (mnt / "dir_link").symlink_to("dir")
    (mnt / "loop").symlink_to("loop")
    os.mkfifo(mnt / "fifo")


@pytest.fixture(scope="module")
def fuzz_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(base, outer/mnt, outer/outside): the writable mount, with a secret, a sibling and a
    read-only mount ``outer/ro`` (laid out like the writable one) next to it."""
    base = tmp_path_factory.mktemp("fs-fuzz")
    outer = base / "outer"
    mnt, outside, read_only = outer / "mnt", outer / "outside", outer / "ro"
    for directory in (mnt, outside, read_only):
        directory.mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outer / "sibling.txt").write_bytes(b"sibling\n")
    _plant(read_only, outside)
    return base, mnt, outside


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=_CALLS)
def test_fuzzed_file_calls_answer_errnos_and_stay_inside(
    fuzz_tree: tuple[Path, Path, Path], calls: list[tuple[str, tuple[int, ...]]]
) -> None:
    """Sequences of path_* and fd_* calls with arbitrary (mostly plausible) arguments on
    one instance with a writable host mount (fd 3), a writable memory mount (fd 4) and a
    read-only host mount (fd 5): each answers a WASI errno, never a host error, and nothing
    outside the writable host mount changes, the read-only mount included."""
    base, mnt, outside = fuzz_tree
    _plant(mnt, outside)
    before = _state(base, skip=mnt)
    sandbox = _raw(
        ws.Mount.directory(mnt, "/data", read_only=False),
        ws.Mount.memory("/tmp", 1 << 20),
        ws.Mount.directory(mnt.parent / "ro", "/ro"),
        keep=True,
        max_file_size=1 << 20,
    )
    try:
        for name, args in calls:
            errno = sandbox.call(name, *args)
            assert errno in _ERRNOS, (name, args, errno)
    finally:
        sandbox.close()
    assert _state(base, skip=mnt) == before


# --- the report ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["host", "memory"])
def test_report_counts_the_bytes_a_guest_writes_and_reads(
    c_guest, tmp_path: Path, kind: str
) -> None:
    """A guest writing 12345 bytes (in 1000-byte chunks) and reading them back (in
    4000-byte reads, until end of file) is reported as exactly that."""
    mount = (
        ws.Mount.directory(tmp_path, "/d", read_only=False)
        if kind == "host"
        else ws.Mount.memory("/d", 1 << 20)
    )
    result = _security(c_guest, mount).run(["io", "/d", "12345"])
    assert result.stdout == b"wrote 12345 read 12345 same\n"
    report = result.resource_report
    assert (report.bytes_written, report.bytes_read) == (12345, 12345)
    assert report.file_operations >= 13 + 5  # 13 writes, 4 reads + the end, open, seek
    if kind == "host":
        assert (tmp_path / "io.bin").stat().st_size == 12345


# --- directory descriptors -----------------------------------------------------------------


def test_directory_descriptor_follows_its_directory(c_guest, tmp_path: Path) -> None:
    """A directory descriptor names the directory it was opened on, not the path it was
    opened by (openat semantics, as under wasmtime): after that directory is renamed and a
    new one takes its old name, reads and creations through the descriptor still happen in
    the renamed directory."""
    ref_dir, ours_dir = tmp_path / "ref", tmp_path / "ours"
    ref_dir.mkdir()
    ours_dir.mkdir()
    expected = [
        "mkdir od: 0",
        "create od/inner: 0",
        "write od/inner: 10",
        "open od: 0",
        "rename od -> moved: 0",
        "openat(od fd, inner): 0",
        "read it: 10",
        "content: inner data",
        "mkdir od (a new one): 0",
        "openat(od fd, created, O_CREAT): 0",
        "mkdirat(od fd, sub): 0",
        "stat moved/created: 0",
        f"stat od/created: -1 {ENOENT}",
        "stat moved/sub: 0",
    ]
    code, ref_stdout = run_reference(c_guest("fs_security"), ref_dir, "/d", ["dirfd", "/d"])
    assert (code, ref_stdout.decode().splitlines()) == (0, expected)
    result = _security(c_guest, ws.Mount.directory(ours_dir, "/d", read_only=False)).run(
        ["dirfd", "/d"]
    )
    assert result.stdout.decode().splitlines() == expected
    assert sorted(str(p.relative_to(ours_dir)) for p in ours_dir.rglob("*")) == [
        "moved", "moved/created", "moved/inner", "moved/sub", "od",
    ]  # fmt: skip


# --- in-memory mounts: the byte cap counts what the files hold --------------------------


def test_memory_fs_truncating_open_gives_its_bytes_back(c_guest) -> None:
    """Rewriting one 3000-byte file ten times with open(O_TRUNC) + write never holds more
    than 3000 bytes, so a 10000-byte in-memory mount has room for it every time (the bytes
    O_TRUNC cuts off are free again, as those of ftruncate and unlink are)."""
    result = _security(c_guest, ws.Mount.memory("/m", 10_000)).run(["rewrite", "/m", "10", "3000"])
    assert result.stdout == b"rewrote 10 times\n"


# --- big directories ------------------------------------------------------------------------


def _names(count: int) -> list[str]:
    """File names of varied lengths, so that directory entries straddle buffer ends."""
    return [f"{i:04d}-" + "x" * (i % 37) for i in range(count)]


@pytest.mark.parametrize("where", ["root", "subdirectory"])
def test_readdir_of_1000_host_files_lists_each_once(c_guest, tmp_path: Path, where: str) -> None:
    """opendir/readdir over a mounted directory of 1000 files (the mount's root, or a
    directory below it) returns every name exactly once, plus '.' and '..'."""
    directory = tmp_path if where == "root" else tmp_path / "sub" / "deep"
    directory.mkdir(parents=True, exist_ok=True)
    expected = _names(1000)
    for name in expected:
        (directory / name).touch()
    guest = "/d" if where == "root" else "/d/sub/deep"
    result = _security(c_guest, ws.Mount.directory(tmp_path, "/d")).run(["list", guest])
    out = result.stdout.decode().splitlines()
    assert out[-1] == "count 1002"
    names = collections.Counter(out[:-1])
    assert names["."] == names[".."] == 1
    del names["."], names[".."]
    assert sorted(names) == sorted(expected)
    assert set(names.values()) == {1}


def test_readdir_of_1000_files_on_a_memory_fs_lists_each_once(c_guest) -> None:
    """The same for 1000 files the guest creates in an in-memory mount."""
    result = _security(c_guest, ws.Mount.memory("/m", 1 << 20)).run(["list", "/m", "1000"])
    out = result.stdout.decode().splitlines()
    assert out[0] == "created 1000"
    assert out[-1] == "count 1002"
    names = collections.Counter(out[1:-1])
    assert names["."] == names[".."] == 1
    del names["."], names[".."]
    assert sorted(names) == [f"f{i:04d}" for i in range(1000)]
    assert set(names.values()) == {1}

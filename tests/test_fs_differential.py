"""Differential file-system tests: C guests (tests/guests/fs_*.c) use the WASI file API
through ordinary libc, once under wasmtime's own WASI (the reference) and once under ours,
each on its own identical copy of a fixture directory mounted at /data. Both must print the
same transcript, exit the same way and leave the same tree behind.

Escapes and read-only mounts are judged by outcome rather than transcript, since the errno
a refusal reports may legitimately differ (wasmtime says EPERM or ENOTCAPABLE).

The reference-only tests check the programs and this harness themselves: what the
differential tests compare must be deterministic.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import wasmtime

import wasm_sandbox as ws

GUEST_DIR = "/data"
PROGRAMS = ("fs_basic", "fs_links", "fs_escape", "fs_readonly", "fs_rights")

SECRET = b"TOP-SECRET-OUTSIDE-c0ffee"
"""Content of parent/outside.txt, next to the mount: must never reach the guest."""
DIR_SECRET = b"DIR-SECRET-5eaf00d"
"""Content of parent/outside_dir/secret.txt, reachable only through an absolute symlink."""

DENIED = {"EROFS", "EACCES", "EPERM", "ENOTCAPABLE"}
"""The errnos a write to a read-only mount may fail with."""
DENIED_ON_READ_ONLY_FD = DENIED | {"EBADF", "EINVAL"}
"""...and for a write through a descriptor opened O_RDONLY (POSIX says EBADF or EINVAL)."""

Entry = tuple[str] | tuple[str, bytes] | tuple[str, str]


# --- the fixture tree -----------------------------------------------------------------------


def make_fixture(parent: Path, *, escape_links: bool = False) -> Path:
    """Lay out ``parent/data`` (the mount) with ``parent/outside.txt`` next to it; return
    the data directory. With ``escape_links``, plant symlinks leading out of the mount:
    ``escape_link -> /etc`` (only read through by the guest), ``escape_file ->
    ../outside.txt`` and ``escape_dir -> parent/outside_dir`` (absolute; the target of the
    guest's write attempts through an absolute symlink, so they never aim at /etc)."""
    data = parent / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "emptydir").mkdir()
    (data / "hello.txt").write_bytes(b"hello world\n")
    (data / "notes.txt").write_bytes(b"line one\nline two\nline three\n")
    (data / "afile").write_bytes(b"i am a file\n")
    (data / "inside.txt").write_bytes(b"inside\n")
    (data / "sub" / "nested.txt").write_bytes(b"nested\n")
    (data / "sub" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
    (parent / "outside.txt").write_bytes(SECRET + b"\n")
    if escape_links:
        (parent / "outside_dir").mkdir()
        (parent / "outside_dir" / "secret.txt").write_bytes(DIR_SECRET + b"\n")
        (data / "escape_link").symlink_to("/etc")
        (data / "escape_file").symlink_to("../outside.txt")
        (data / "escape_dir").symlink_to(parent / "outside_dir")
    return data


def snapshot(root: Path) -> dict[str, Entry]:
    """The tree under ``root``: relative path -> ("dir",) | ("file", bytes) |
    ("symlink", target). Symlinks are never followed; timestamps are left out."""
    tree: dict[str, Entry] = {}

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = prefix + entry.name
                if entry.is_symlink():
                    tree[rel] = ("symlink", os.readlink(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    tree[rel] = ("dir",)
                    walk(Path(entry.path), rel + "/")
                elif entry.is_file(follow_symlinks=False):
                    tree[rel] = ("file", Path(entry.path).read_bytes())
                else:
                    tree[rel] = ("other",)

    walk(root, "")
    return tree


def mtimes(root: Path, *, skip: str | None = None) -> dict[str, int]:
    """Modification times (ns) of ``root`` and everything under it (symlinks not followed),
    leaving out the top-level entry named ``skip`` and what is under it."""
    times = {".": root.lstat().st_mtime_ns}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and skip is not None:
            dirnames[:] = [d for d in dirnames if d != skip]
        for name in dirnames + filenames:
            if Path(dirpath) == root and name == skip:
                continue
            path = Path(dirpath, name)
            times[str(path.relative_to(root))] = path.lstat().st_mtime_ns
    return times


def outside_state(parent: Path) -> tuple[dict[str, Entry], dict[str, int]]:
    """Everything next to the mount (``parent`` minus ``data``), with modification times."""
    tree = {k: v for k, v in snapshot(parent).items() if k != "data" and not k.startswith("data/")}
    return tree, mtimes(parent, skip="data")


# --- the two runners --------------------------------------------------------------------------


@functools.cache
def _engine() -> wasmtime.Engine:
    return wasmtime.Engine()


@functools.cache
def _module(wasm: Path) -> wasmtime.Module:
    return wasmtime.Module.from_file(_engine(), str(wasm))


def run_reference(
    wasm: Path,
    host_dir: Path,
    guest_dir: str = GUEST_DIR,
    args: Sequence[str] = (),
    read_only: bool = False,
) -> tuple[int, bytes]:
    """Run ``wasm`` under wasmtime-py's built-in WASI with ``host_dir`` preopened at
    ``guest_dir``; return (exit code, stdout). In wasmtime-py 49 ``preopen_dir`` takes
    ``fs_mutable`` (its docstring still describes the older dir_perms/file_perms); False
    makes the directory and its files read-only. ``proc_exit`` raises ``ExitTrap`` with
    ``.code``; wasi-libc's ``_start`` returns normally when main returns 0."""
    config = wasmtime.WasiConfig()
    config.argv = [wasm.name, *args]
    config.preopen_dir(str(host_dir), guest_dir, fs_mutable=not read_only)
    with tempfile.TemporaryDirectory(prefix="wasi-ref-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        config.stdout_file = str(out)
        config.stderr_file = str(err)
        linker = wasmtime.Linker(_engine())
        linker.define_wasi()
        store = wasmtime.Store(_engine())
        store.set_wasi(config)
        instance = linker.instantiate(store, _module(wasm))
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
            code = 0
        except wasmtime.ExitTrap as exit_:
            code = exit_.code
        del start, instance, store
        return code, out.read_bytes()


def run_ours(
    wasm: Path,
    host_dir: Path,
    guest_dir: str = GUEST_DIR,
    args: Sequence[str] = (),
    read_only: bool = False,
) -> ws.ExecutionResult:
    """Run ``wasm`` in our sandbox with ``host_dir`` mounted at ``guest_dir``."""
    builder = (
        ws.WasmSandbox.builder()
        .source(wasm)
        .mount_directory(host_dir, guest_dir, read_only=read_only)
    )
    with builder.build() as sandbox:
        return sandbox.run(list(args))


# --- transcript helpers -----------------------------------------------------------------------

RIGHTS_STEPS = ("fdstat ", "drop read and write", "write without the right", "grant read back")
"""fs_rights steps about the rights a descriptor reports and fd_fdstat_set_rights: wasmtime
answers ENOTSUP to the latter and reports rights loosely; we narrow (see test_rights_*)."""


def comparable(transcript: list[str]) -> list[str]:
    """A transcript without the steps where we differ from wasmtime by design."""
    return [line for line in transcript if not line.startswith(RIGHTS_STEPS)]


def lines(stdout: bytes) -> list[str]:
    return stdout.decode("utf-8", "replace").splitlines()


_ATTEMPT = re.compile(r"^ATTEMPT (?P<what>.+): (?P<outcome>FAIL|OK)(?: (?P<detail>.*))?$")
_RW = re.compile(r"^(?P<kind>[RW]) (?P<what>.+): (?P<outcome>FAIL|OK)(?: (?P<detail>.*))?$")


def escape_attempts(stdout: bytes) -> list[tuple[str, str, str]]:
    """(what, FAIL|OK, errno or detail) for every ATTEMPT line of fs_escape."""
    found = []
    for line in lines(stdout):
        if line.startswith("ATTEMPT "):
            m = _ATTEMPT.match(line)
            assert m, f"malformed line {line!r}"
            found.append((m["what"], m["outcome"], m["detail"] or ""))
    return found


def check_escape_transcript(stdout: bytes) -> list[str]:
    """Assert fs_escape ran to its end and every attempt failed; return the attempts."""
    attempts = escape_attempts(stdout)
    leaked = [a for a in attempts if a[1] != "FAIL"]
    assert not leaked, f"escape attempts that got through: {leaked}"
    assert len(attempts) >= 60
    assert lines(stdout)[-1] == f"attempts: {len(attempts)} leaks: 0"
    for secret in (SECRET, DIR_SECRET, b"root:x:0:0"):
        assert secret not in stdout
    return [a[0] for a in attempts]


def read_only_lines(stdout: bytes) -> list[tuple[str, str, str, str]]:
    """(R|W, what, OK|FAIL, detail) for every line of fs_readonly but the final 'done'."""
    found = []
    out = lines(stdout)
    assert out[-1] == "done"
    for line in out[:-1]:
        m = _RW.match(line)
        assert m, f"malformed line {line!r}"
        found.append((m["kind"], m["what"], m["outcome"], m["detail"] or ""))
    return found


def check_read_only_transcript(stdout: bytes) -> list[tuple[str, str, str, str]]:
    """Assert every read of fs_readonly worked and every write failed with a refusal;
    return the transcript with the refusals' errnos replaced by DENIED."""
    normalized, wrong = [], []
    for kind, what, outcome, detail in read_only_lines(stdout):
        if kind == "R":
            if outcome != "OK":
                wrong.append(f"read refused: {what}: {detail}")
        elif outcome != "FAIL":
            wrong.append(f"write allowed: {what} {detail}")
        else:
            allowed = DENIED_ON_READ_ONLY_FD if what.endswith("on O_RDONLY fd") else DENIED
            if detail not in allowed:
                wrong.append(f"{what}: failed with {detail}, not one of {sorted(allowed)}")
        normalized.append((kind, what, outcome, detail if kind == "R" else "DENIED"))
    assert not wrong, "on a read-only mount:\n" + "\n".join(wrong)
    assert sum(1 for line in normalized if line[0] == "W") >= 25
    return normalized


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fs_guests(c_guest: Callable[[str], Path]) -> dict[str, Path]:
    """The file-system guests, compiled once per run."""
    return {name: c_guest(name) for name in PROGRAMS}


def fixture_pair(tmp_path: Path, *, escape_links: bool = False) -> tuple[Path, Path]:
    """Two identical fixtures, tmp_path/ref/data and tmp_path/ours/data."""
    ref = make_fixture(tmp_path / "ref", escape_links=escape_links)
    ours = make_fixture(tmp_path / "ours", escape_links=escape_links)
    if not escape_links:  # escape_dir's absolute target differs between the copies
        assert snapshot(ref) == snapshot(ours)
    return ref, ours


# --- reference-only: the programs and the harness -----------------------------------------


@pytest.mark.parametrize("program", PROGRAMS)
def test_reference_transcripts_are_stable(fs_guests, tmp_path, program) -> None:
    """Each program, run twice under wasmtime's WASI on fresh fixtures, prints the same
    transcript and leaves the same tree: what the differential tests compare is
    deterministic."""
    read_only = program == "fs_readonly"
    escape = program == "fs_escape"
    runs = []
    for attempt in ("first", "second"):
        data = make_fixture(tmp_path / attempt, escape_links=escape)
        code, stdout = run_reference(
            fs_guests[program], data, args=[GUEST_DIR], read_only=read_only
        )
        tree = snapshot(data)
        if escape:  # escape_dir points at this copy's own outside_dir
            tree.pop("escape_dir")
        runs.append((code, lines(stdout), tree))
    assert runs[0] == runs[1]
    code, out, _ = runs[0]
    assert code == 0
    if program == "fs_rights":
        assert "open sub O_DIRECTORY read+write: errno 31" in out  # EISDIR
        assert "unlink afile/: errno 54" in out  # ENOTDIR
        assert "symlink to new/: errno 44" in out  # ENOENT
        assert "isatty: 0 0 0" in out
    if program in ("fs_basic", "fs_links"):
        assert out[0] == "chdir: 0"
        assert out[-1] == "done"
    if program == "fs_basic":
        assert "rmdir sub (non-empty): -1 ENOTEMPTY" in out
        assert "open hello.txt O_CREAT|O_EXCL: -1 EEXIST" in out
        assert "open sub O_WRONLY: -1 EISDIR" in out
        assert "open afile/x O_RDONLY: -1 ENOTDIR" in out
        assert any(re.fullmatch(r"big read: 1048576 checksum=[0-9a-f]{8} match", x) for x in out)
    if program == "fs_links":
        assert "read loop_a: -1 ELOOP" in out
        assert "stat hard.txt: file size=12 nlink=2" in out


def test_reference_refuses_every_escape(fs_guests, tmp_path) -> None:
    """The premise of test_escape_attempts_all_fail, on wasmtime: every attempt is refused,
    no secret is read and nothing outside the mount changes."""
    data = make_fixture(tmp_path, escape_links=True)
    before = outside_state(tmp_path)
    code, stdout = run_reference(fs_guests["fs_escape"], data, args=[GUEST_DIR])
    assert code == 0
    check_escape_transcript(stdout)
    assert outside_state(tmp_path) == before


def test_reference_read_only_mount_refuses_writes(fs_guests, tmp_path) -> None:
    """The premise of test_read_only_mount, on wasmtime (preopen_dir(fs_mutable=False))."""
    data = make_fixture(tmp_path)
    before = snapshot(tmp_path), mtimes(tmp_path)
    code, stdout = run_reference(fs_guests["fs_readonly"], data, args=[GUEST_DIR], read_only=True)
    assert code == 0
    check_read_only_transcript(stdout)
    assert (snapshot(tmp_path), mtimes(tmp_path)) == before


# --- differential: ours against the reference ----------------------------------------------


@pytest.mark.parametrize("program", ["fs_basic", "fs_links", "fs_rights"])
def test_matches_reference(fs_guests, tmp_path, program) -> None:
    """Same exit code, same transcript, same resulting tree (names, types, contents, link
    targets) as wasmtime's WASI; nothing outside the mount touched."""
    ref_dir, ours_dir = fixture_pair(tmp_path)
    outside_before = outside_state(ours_dir.parent)
    wasm = fs_guests[program]
    ref_code, ref_stdout = run_reference(wasm, ref_dir, args=[GUEST_DIR])
    result = run_ours(wasm, ours_dir, args=[GUEST_DIR])
    assert comparable(lines(result.stdout)) == comparable(lines(ref_stdout)), result.stderr
    assert result.exit_code == ref_code == 0
    assert snapshot(ours_dir) == snapshot(ref_dir)
    assert outside_state(ours_dir.parent) == outside_before


def test_escape_attempts_all_fail(fs_guests, tmp_path) -> None:
    """Every escape attempt fails under both (errnos may differ), the same attempts are
    made, no secret reaches stdout or stderr, nothing next to the mount changes and the
    files inside it are intact."""
    ref_dir, ours_dir = fixture_pair(tmp_path, escape_links=True)
    ref_before = outside_state(ref_dir.parent)
    before = outside_state(ours_dir.parent)
    wasm = fs_guests["fs_escape"]
    ref_code, ref_stdout = run_reference(wasm, ref_dir, args=[GUEST_DIR])
    result = run_ours(wasm, ours_dir, args=[GUEST_DIR])

    assert outside_state(ref_dir.parent) == ref_before
    assert outside_state(ours_dir.parent) == before
    for secret in (SECRET, DIR_SECRET):
        assert secret not in result.stderr
    ref_attempts = check_escape_transcript(ref_stdout)
    ours_attempts = check_escape_transcript(result.stdout)
    assert ours_attempts == ref_attempts
    assert result.exit_code == ref_code == 0
    tree = snapshot(ours_dir)
    original = snapshot(make_fixture(tmp_path / "pristine"))
    for path in ("hello.txt", "inside.txt", "notes.txt", "sub/nested.txt"):
        assert tree[path] == original[path]
    assert tree["escape_link"] == ("symlink", "/etc")
    assert tree["escape_file"] == ("symlink", "../outside.txt")


def test_read_only_mount(fs_guests, tmp_path) -> None:
    """On a read-only mount reads work and give what wasmtime's give; every write fails
    with a refusal (EROFS, EACCES, EPERM, ENOTCAPABLE; EBADF/EINVAL through an O_RDONLY
    descriptor); the host directory is unchanged byte for byte, timestamps included."""
    ref_dir, ours_dir = fixture_pair(tmp_path)
    before = snapshot(ours_dir.parent), mtimes(ours_dir.parent)
    wasm = fs_guests["fs_readonly"]
    ref_code, ref_stdout = run_reference(wasm, ref_dir, args=[GUEST_DIR], read_only=True)
    result = run_ours(wasm, ours_dir, args=[GUEST_DIR], read_only=True)

    assert (snapshot(ours_dir.parent), mtimes(ours_dir.parent)) == before
    ours = check_read_only_transcript(result.stdout)
    assert ours == check_read_only_transcript(ref_stdout)
    assert result.exit_code == ref_code == 0


def test_rights_only_shrink_and_read_write_follow_them(fs_guests, tmp_path) -> None:
    """Directories report no read, write, seek or set-size right (opening one for writing is
    EISDIR); a file reports its own access; dropped read/write rights are enforced (EBADF)
    and cannot be granted back (ENOTCAPABLE)."""
    data = make_fixture(tmp_path)
    result = run_ours(fs_guests["fs_rights"], data, args=[GUEST_DIR])
    out = lines(result.stdout)
    assert result.exit_code == 0, result.stderr
    dir_rights = "type=3 flags=0 read=0 write=0 seek=0 set_size=0 readdir=1"
    assert f"fdstat sub: {dir_rights}" in out
    assert f"fdstat root: {dir_rights}" in out
    assert "fdstat new.txt: type=4 flags=1 read=1 write=1 seek=1 set_size=1 readdir=0" in out
    assert "drop read and write: ok" in out
    assert "fdstat after the drop: type=4 flags=1 read=0 write=0 seek=1 set_size=0 readdir=0" in out
    assert "write without the right: errno 8" in out  # EBADF
    assert "grant read back: errno 76" in out  # ENOTCAPABLE

"""What a guest leaves behind stays confined, and host resources stay bounded (issue 10,
items 1 and 3), each driven by a real C guest (tests/guests/fs_shell.c, one operation per
argument):

- links a guest makes only point down (no '..', no absolute target), so neither host code
  nor another sandbox following them ever leaves the mount, whatever renames follow;
- a link planted on the host that does not point down cannot be moved to another
  directory, and readlink does not reveal where one outside the mount points;
- a mount's host directory is opened without following links and must be the directory
  checked when the mount was made (``MountChanged``);
- open descriptors: a default cap in every profile, headroom below RLIMIT_NOFILE for the
  host whatever the setting, numbers reused lowest first;
- in-memory mounts charge entries, names and link targets, with an entry cap, and the
  directories of a process killed by SIGKILL are swept by the next one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import wasm_sandbox as ws

SECRET = b"HOST-SECRET-do-not-leak"


@pytest.fixture
def shell(c_guest: Callable[[str], Path]) -> Path:
    return c_guest("fs_shell")


def run_shell(
    wasm: Path, *ops: str, mounts: tuple[ws.Mount, ...] = (), **limits: object
) -> list[str]:
    """Run fs_shell with ``ops``; its transcript, one line per operation."""
    builder = ws.WasmSandbox.builder().source(wasm)
    for mount in mounts:
        builder.mount(mount)
    if limits:
        builder.resource_limits(ws.ResourceProfile.STANDARD.limits.replace(**limits))
    with builder.build() as sandbox:
        result = sandbox.run(list(ops))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout.decode().splitlines()


def links_resolving_outside(root: Path) -> list[str]:
    """Every symbolic link under ``root`` that the host, following it, finds outside."""
    real_root = root.resolve()
    escaping = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target != real_root and real_root not in target.parents:
                    escaping.append(f"{path.relative_to(root)} -> {os.readlink(path)}")
    return escaping


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    """tmp/jobs (a guest-writable mount) next to tmp/secret.txt (never to be reached)."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "jobs" / "job42").mkdir(parents=True)
    (tmp_path / "jobs" / "job42" / "input.txt").write_text("job input")
    return tmp_path / "jobs"


# --- 1. links a guest makes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["..", "../secret.txt", "up/../secret.txt", "a/../..", "x/../../secret.txt",
     "../../../../../../etc/passwd", "/etc/passwd", "/", "./..", "a/./../.."],
)  # fmt: skip
def test_a_link_target_with_dotdot_or_absolute_is_refused(shell, jobs: Path, target: str) -> None:
    """symlink() with '..' anywhere in the target, or an absolute one, fails with
    ENOTCAPABLE and is recorded as a security event; nothing is created."""
    mount = ws.Mount.directory(jobs, "/jobs", read_only=False)
    with ws.WasmSandbox.builder().source(shell).mount(mount).build() as sandbox:
        result = sandbox.run(["cd:/jobs", "mkdir:a", f"symlink:{target}:a/l"])
    assert result.stdout.decode().splitlines()[-1] == f"symlink:{target}:a/l: -1 ENOTCAPABLE"
    assert not (jobs / "a" / "l").is_symlink()
    events = result.resource_report.security_events
    assert [e.kind for e in events] == ["path_escape"]
    assert "point down" in events[0].detail


def test_the_issue_chain_and_deep_chain_never_reach_the_host(shell, jobs: Path) -> None:
    """The attacks of the issue: mkdir a; symlink('..', 'a/up'); symlink('up/../secret.txt',
    'a/leak'); and a chain a/up/a/up/.../etc/passwd. Every link is refused; afterwards no
    link in the mount resolves outside it on the host."""
    deep = "a/up/" * 12 + "../" * 30 + "etc/passwd"
    out = run_shell(
        shell, "cd:/jobs", "mkdir:a", "symlink:..:a/up", "symlink:up/../secret.txt:a/leak",
        f"symlink:{deep}:a/deep", "read:a/leak", "read:a/deep",
        mounts=(ws.Mount.directory(jobs, "/jobs", read_only=False),),
    )  # fmt: skip
    assert out[2:5] == [
        "symlink:..:a/up: -1 ENOTCAPABLE",
        "symlink:up/../secret.txt:a/leak: -1 ENOTCAPABLE",
        f"symlink:{deep}:a/deep: -1 ENOTCAPABLE",
    ]
    assert links_resolving_outside(jobs) == []
    assert all(SECRET.decode() not in line for line in out)


def test_links_pointing_down_work_and_stay_inside_whatever_renames_follow(
    shell, jobs: Path
) -> None:
    """A deep link pointing down, moved (alone, or with the directory holding it) to the top
    of the mount, still resolves inside the mount on the host, and still reads in the
    guest."""
    out = run_shell(
        shell, "cd:/jobs", "mkdir:d1", "mkdir:d1/d2", "mkdir:d1/d2/d3",
        "write:d1/d2/d3/f.txt:deep", "symlink:f.txt:d1/d2/d3/same", "symlink:d3/f.txt:d1/d2/down",
        "rename:d1/d2/d3/same:top_link", "rename:d1/d2:moved", "read:moved/down",
        "link:moved/down:hard_to_link", "read:hard_to_link", "read:top_link",
        mounts=(ws.Mount.directory(jobs, "/jobs", read_only=False),),
    )  # fmt: skip
    assert "symlink:f.txt:d1/d2/d3/same: 0" in out
    assert "read:moved/down: [deep]" in out
    # A second name for "down" (-> d3/f.txt) and "same" (-> f.txt), both now at the top,
    # where neither target exists: dangling, never outside.
    assert "link:moved/down:hard_to_link: 0" in out
    assert "read:hard_to_link: -1 ENOENT" in out
    assert "read:top_link: -1 ENOENT" in out
    assert links_resolving_outside(jobs) == []


def test_a_host_planted_link_that_does_not_point_down_cannot_be_moved_away(
    shell, jobs: Path
) -> None:
    """A link the host planted with '..' (harmless where it is) may be renamed within its
    directory but neither renamed nor hard-linked into another one, where it could point
    above the mount."""
    (jobs / "job42" / "deep").mkdir()
    (jobs / "job42" / "deep" / "up").symlink_to("../../job42/input.txt")
    out = run_shell(
        shell, "cd:/jobs", "read:job42/deep/up", "rename:job42/deep/up:up_top",
        "link:job42/deep/up:hl_top", "rename:job42/deep/up:job42/deep/up2", "read:job42/deep/up2",
        mounts=(ws.Mount.directory(jobs, "/jobs", read_only=False),),
    )  # fmt: skip
    assert out[1:] == [
        "read:job42/deep/up: [job input]",
        "rename:job42/deep/up:up_top: -1 ENOTCAPABLE",
        "link:job42/deep/up:hl_top: -1 ENOTCAPABLE",
        "rename:job42/deep/up:job42/deep/up2: 0",
        "read:job42/deep/up2: [job input]",
    ]
    assert links_resolving_outside(jobs) == []


def test_readlink_does_not_reveal_where_a_link_outside_the_mount_points(
    shell, tmp_path: Path, jobs: Path
) -> None:
    """Links planted on the host towards the outside (absolute, or too many '..') read as
    ENOTCAPABLE; a relative link that stays inside reads as it is."""
    (jobs / "abs").symlink_to(tmp_path / "secret.txt")
    (jobs / "rel").symlink_to("../secret.txt")
    (jobs / "job42" / "inside").symlink_to("../job42/input.txt")
    out = run_shell(
        shell, "cd:/jobs", "readlink:abs", "readlink:rel", "readlink:job42/inside",
        mounts=(ws.Mount.directory(jobs, "/jobs"),),
    )  # fmt: skip
    assert out[1:] == [
        "readlink:abs: -1 ENOTCAPABLE",
        "readlink:rel: -1 ENOTCAPABLE",
        "readlink:job42/inside: [../job42/input.txt]",
    ]
    assert all(str(tmp_path) not in line for line in out)


# --- 1. mount roots -----------------------------------------------------------------------


@pytest.mark.parametrize("swap", ["symlink", "other directory", "removed"])
def test_a_mount_replaced_after_the_build_is_refused(
    shell, tmp_path: Path, jobs: Path, swap: str
) -> None:
    """Sandbox B mounts jobs/job42 read-only; the directory is then swapped (by a link to
    the parent, by another directory, or removed). B's next run raises MountChanged and
    lists nothing."""
    sandbox_b = (
        ws.WasmSandbox.builder().source(shell).mount_directory(jobs / "job42", "/job").build()
    )
    assert sandbox_b.run(["ls:/job"]).stdout == b"ls:/job: input.txt\n"
    os.rename(jobs / "job42", jobs / "job42.old")
    if swap == "symlink":
        (jobs / "job42").symlink_to(tmp_path)
    elif swap == "other directory":
        (jobs / "job42").mkdir()
        (jobs / "job42" / "planted.txt").write_text("x")
    with pytest.raises(ws.MountChanged, match="'/job'") as caught:
        sandbox_b.run(["ls:/job"])
    assert caught.value.guest_path == "/job"
    assert isinstance(caught.value, ws.SandboxError)


def test_cross_sandbox_the_writable_parent_cannot_hand_the_other_a_host_file(
    shell, tmp_path: Path, jobs: Path
) -> None:
    """The issue's cross-sandbox attack: sandbox A (jobs/ writable) replaces job42 with a
    link; sandbox B (built with job42 read-only, before or after) never lists or reads a
    host file neither was given."""
    sandbox_b = ws.WasmSandbox.builder().source(shell).mount_directory(jobs / "job42", "/job")
    before = sandbox_b.build()
    out = run_shell(
        shell, "cd:/jobs", "rename:job42:old42", "symlink:..:job42", "symlink:../..:job42",
        "mkdir:elsewhere", "symlink:elsewhere:job42",
        mounts=(ws.Mount.directory(jobs, "/jobs", read_only=False),),
    )  # fmt: skip
    assert out[2:4] == ["symlink:..:job42: -1 ENOTCAPABLE", "symlink:../..:job42: -1 ENOTCAPABLE"]
    assert out[-1] == "symlink:elsewhere:job42: 0"
    with pytest.raises(ws.MountChanged):
        before.run(["ls:/job", "read:/job/../secret.txt"])
    # Mounted after the swap, B gets what the link leads to now: a directory inside jobs/.
    later = ws.WasmSandbox.builder().source(shell).mount_directory(jobs / "job42", "/job")
    assert later.build().run(["ls:/job"]).stdout == b"ls:/job:\n"
    assert links_resolving_outside(jobs) == []


# --- 3. descriptors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "cap"),
    [(ws.ResourceProfile.LIGHTWEIGHT, 64), (ws.ResourceProfile.STANDARD, 1024),
     (ws.ResourceProfile.HIGH_PERFORMANCE, 4096)],
    ids=["lightweight", "standard", "high-performance"],
)  # fmt: skip
def test_every_profile_caps_open_files(
    shell, jobs: Path, profile: ws.ResourceProfile, cap: int
) -> None:
    """Each profile has a max_open_files default; a guest opening file after file meets
    EMFILE there (and the report says so)."""
    builder = (
        ws.WasmSandbox.builder()
        .source(shell)
        .resource_profile(profile)
        .max_fuel(None)
        .mount_directory(jobs, "/jobs")
    )
    with builder.build() as sandbox:
        result = sandbox.run(["openmany:/jobs/job42/input.txt:10000"])
    assert profile.limits.max_open_files == cap
    assert result.stdout.decode() == f"openmany:/jobs/job42/input.txt:10000: {cap} then -1 EMFILE\n"
    assert result.resource_report.io_limits_hit["max_open_files"] == (cap + 1, cap)


def test_descriptor_numbers_are_reused_lowest_first(shell, jobs: Path) -> None:
    """Closing descriptors frees their numbers: the next opens take the lowest free ones."""
    out = run_shell(
        shell, "cd:/jobs", "open:job42/input.txt", "open:job42/input.txt", "closeall",
        "open:job42/input.txt", "openmany:job42/input.txt:3000", "closeall", "open:job42/input.txt",
        mounts=(ws.Mount.directory(jobs, "/jobs"),), max_open_files=None,
    )  # fmt: skip
    first = int(out[1].rsplit(" ", 1)[1])
    assert int(out[2].rsplit(" ", 1)[1]) == first + 1
    assert int(out[4].rsplit(" ", 1)[1]) == first
    assert out[5].endswith(": 3000")
    assert int(out[7].rsplit(" ", 1)[1]) == first


_HEADROOM_CHILD = textwrap.dedent(
    """
    import resource, socket, sys
    import wasm_sandbox as ws
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))
    wasm, data = sys.argv[1], sys.argv[2]
    unlimited = ws.ResourceLimits(execution_timeout=60)  # no max_open_files at all
    sandbox = (ws.WasmSandbox.builder().source(wasm).resource_limits(unlimited)
               .mount_directory(data, "/d").keep_instance(True).build())
    result = sandbox.run(["openmany:/d/f:100000"])  # kept open: the instance is kept
    print(result.stdout.decode().strip())
    print(result.resource_report.io_limits_hit)
    held = [socket.socket() for _ in range(100)]  # the host can still open its own
    print("host sockets", len(held))
    """
)


def test_guests_leave_headroom_below_rlimit_nofile_whatever_the_setting(
    shell, tmp_path: Path
) -> None:
    """With no max_open_files and RLIMIT_NOFILE at 512, a guest holding every file it can
    open stops at ENFILE with 512 - 128 for all guests, and the host still opens 100
    sockets."""
    (tmp_path / "f").write_text("x")
    done = subprocess.run(
        [sys.executable, "-c", _HEADROOM_CHILD, str(shell), str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "openmany:/d/f:100000: 384 then -1 ENFILE"
    assert lines[1] == "{'host_open_files': (385, 384)}"
    assert lines[2] == "host sockets 100"


# --- 3. in-memory mounts ----------------------------------------------------------------


def test_memory_fs_charges_link_targets(shell) -> None:
    """1 MiB of in-memory mount holds about 1 MiB of link targets (each charged with its
    entry), not 12 MB: the 4,000-byte targets stop near 1 MiB / 4,265 = 245 links."""
    target = "t" * 4000
    ops = ["cd:/tmp"] + [f"symlink:{target}:l{i:04d}" for i in range(300)]
    out = run_shell(shell, *ops, mounts=(ws.Mount.memory("/tmp", 1 << 20),))
    made = sum(1 for line in out[1:] if line.endswith(": 0"))
    assert 240 <= made <= 250
    assert out[made + 1].endswith(": -1 ENOSPC")


def test_memory_fs_charges_empty_entries_and_caps_their_number(shell) -> None:
    """Empty directories and files cost their entry: past max_entries (or the bytes)
    creating one more is ENOSPC; removing one gives its room back."""
    ops = ["cd:/tmp"] + [f"mkdir:d{i}" for i in range(12)] + ["rmdir:d0", "mkdir:again"]
    out = run_shell(shell, *ops, mounts=(ws.Mount.memory("/tmp", 1 << 20, max_entries=10),))
    assert [line.rsplit(" ", 1)[-1] for line in out[1:11]] == ["0"] * 10
    assert out[11:13] == ["mkdir:d10: -1 ENOSPC", "mkdir:d11: -1 ENOSPC"]
    assert out[13:] == ["rmdir:d0: 0", "mkdir:again: 0"]
    small = (
        ["cd:/tmp"] + [f"write:f{i}:" for i in range(0)] + [f"mkdir:e{i:03d}" for i in range(40)]
    )
    out = run_shell(shell, *small, mounts=(ws.Mount.memory("/tmp", 4096),))
    made = sum(1 for line in out[1:] if line.endswith(": 0"))
    assert made == 4096 // (256 + 4)


def test_memory_fs_entry_cap_is_validated() -> None:
    """max_entries is a positive int (or a count string), for in-memory mounts only."""
    with pytest.raises(ws.ConfigurationError, match="max_entries"):
        ws.Mount.memory("/tmp", 1 << 20, max_entries=0)
    assert ws.Mount.memory("/tmp", 1 << 20, max_entries="10").max_entries == 10
    with pytest.raises(TypeError, match="max_entries"):
        ws.Mount.memory("/tmp", 1 << 20, max_entries=10.0)  # type: ignore[arg-type]
    with pytest.raises(ws.ConfigurationError, match="in-memory mounts only"):
        ws.Mount(guest_path="/d", host_path=Path("/"), max_entries=5)


_KILLED_CHILD = textwrap.dedent(
    """
    import sys
    import wasm_sandbox as ws
    sandbox = ws.WasmSandbox.builder().source(sys.argv[1]).memory_fs("/tmp").build()
    sandbox.run(["write:/tmp/x:data", "sleep:60"])
    """
)


def test_memory_fs_of_a_killed_process_is_swept_by_the_next(shell) -> None:
    """A process killed by SIGKILL while its guest holds an in-memory mount leaves its
    /dev/shm directory; the next process that makes an in-memory mount removes it."""
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(shell)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    pattern = f"wasm-sandbox-{child.pid}-*"
    try:
        deadline = time.monotonic() + 60
        while not list(Path("/dev/shm").glob(f"{pattern}/x")):
            assert time.monotonic() < deadline, "the child never made its in-memory mount"
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout:
            child.stdout.close()
        if child.stderr:
            child.stderr.close()
    left = list(Path("/dev/shm").glob(pattern))
    assert len(left) == 1 and (left[0] / "x").read_bytes() == b"data"
    sweeper = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD.replace("sleep:60", "sleep:0"), str(shell)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert sweeper.returncode == 0, sweeper.stderr
    assert not left[0].exists()


def test_the_host_keeps_its_sockets_after_a_guest_descriptor_flood(shell, jobs: Path) -> None:
    """After a guest opened all it may, the host opens and closes a socket as usual."""
    out = run_shell(
        shell,
        "openmany:/jobs/job42/input.txt:5000",
        mounts=(ws.Mount.directory(jobs, "/jobs"),),
    )
    assert out == ["openmany:/jobs/job42/input.txt:5000: 1024 then -1 EMFILE"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

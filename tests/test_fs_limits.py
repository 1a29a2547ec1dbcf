"""File-system limits, driven by a real C guest: each ResourceLimits I/O field gives the guest
its errno (and the report records the hit), or with strict_io_limits raises IoLimitExceeded;
read-only mounts and escapes are refused and reported as security events."""

from __future__ import annotations

from pathlib import Path

import pytest

import wasm_sandbox as ws

EFBIG, EDQUOT, EMFILE, ENOSPC, EROFS = 22, 19, 33, 51, 69  # wasi-libc's errno values


def _sandbox(c_guest, tmp_path: Path, strict: bool = False, **limits: int) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(c_guest("fs_limits"))
    builder.mount_directory(tmp_path, "/work", read_only=False)
    builder.resource_limits(ws.ResourceLimits(**limits))  # type: ignore[arg-type]
    builder.strict_io_limits(strict)
    return builder.build()


def test_max_file_size_gives_efbig_after_a_partial_write(c_guest, tmp_path: Path) -> None:
    """Writing past max_file_size stops exactly at the cap with EFBIG."""
    result = _sandbox(c_guest, tmp_path, max_file_size=2500).run(["write", "/work", "10000"])
    assert result.stdout == f"wrote 2500 then errno {EFBIG}\n".encode()
    assert (tmp_path / "big").stat().st_size == 2500
    assert result.resource_report.io_limits_hit == {"max_file_size": (3500, 2500)}


def test_max_file_size_applies_to_ftruncate(c_guest, tmp_path: Path) -> None:
    """Growing a file past max_file_size with ftruncate is EFBIG too."""
    result = _sandbox(c_guest, tmp_path, max_file_size=4096).run(["truncate", "/work", "1000000"])
    assert result.stdout == f"truncate -1 errno {EFBIG}\n".encode()


def test_max_total_file_size_gives_edquot(c_guest, tmp_path: Path) -> None:
    """Bytes written in one execution are capped by max_total_file_size."""
    sb = _sandbox(c_guest, tmp_path, max_total_file_size=5000)
    result = sb.run(["write", "/work", "8000"])
    assert result.stdout == f"wrote 5000 then errno {EDQUOT}\n".encode()
    assert result.resource_report.bytes_written == 5000
    assert sb.run(["write", "/work", "4000"]).stdout == b"wrote 4000\n"  # per execution


def test_max_open_files_gives_emfile(c_guest, tmp_path: Path) -> None:
    """Holding more than max_open_files descriptors fails with EMFILE."""
    result = _sandbox(c_guest, tmp_path, max_open_files=5).run(["files", "/work"])
    assert result.stdout == f"opened 5 then errno {EMFILE}\n".encode()


def test_max_directory_entries_gives_enospc(c_guest, tmp_path: Path) -> None:
    """Creating an entry in a directory that already has max_directory_entries fails."""
    (tmp_path / "existing").write_text("x")
    result = _sandbox(c_guest, tmp_path, max_directory_entries=4).run(["entries", "/work"])
    assert result.stdout == f"created 3 then errno {ENOSPC}\n".encode()
    assert len(list(tmp_path.iterdir())) == 4


def test_max_file_operations_gives_edquot(c_guest, tmp_path: Path) -> None:
    """Every file-system call counts; past the cap the guest gets EDQUOT."""
    result = _sandbox(c_guest, tmp_path, max_file_operations=50).run(["stats", "/work"])
    assert result.stdout == f"stat 50 then errno {EDQUOT}\n".encode()
    assert result.resource_report.file_operations == 51


@pytest.mark.parametrize(
    ("args", "limits", "name", "attempted", "cap"),
    [
        (["write", "/work", "10000"], {"max_file_size": 2500}, "max_file_size", 3500, 2500),
        (["files", "/work"], {"max_open_files": 3}, "max_open_files", 4, 3),
        (
            ["write", "/work", "9000"],
            {"max_total_file_size": 1000},
            "max_total_file_size",
            2000,
            1000,
        ),
    ],
    ids=["file_size", "open_files", "total"],
)
def test_strict_mode_raises_io_limit_exceeded(
    c_guest,
    tmp_path: Path,
    args: list[str],
    limits: dict[str, int],
    name: str,
    attempted: int,
    cap: int,
) -> None:
    """In strict mode the first limit hit ends the guest with IoLimitExceeded naming it."""
    sb = _sandbox(c_guest, tmp_path, strict=True, **limits)
    with pytest.raises(ws.IoLimitExceeded) as info:
        sb.run(args)
    assert (info.value.limit, info.value.attempted, info.value.cap) == (name, attempted, cap)
    assert str(info.value) == f"I/O limit exceeded: {name} (attempted {attempted}, limit {cap})"


def test_memory_fs_cap_gives_enospc_and_touches_no_disk(c_guest) -> None:
    """An in-memory mount holds at most max_bytes (the file's entry, 256 bytes plus its name
    "big", included); it starts empty for each run."""
    sb = ws.WasmSandbox.builder().source(c_guest("fs_limits")).memory_fs("/scratch", 3000).build()
    result = sb.run(["write", "/scratch", "10000"])
    assert result.stdout == f"wrote {3000 - 256 - 3} then errno {ENOSPC}\n".encode()
    assert sb.run(["cat", "/scratch/big"]).stdout.startswith(b"open: errno")  # fresh each run


def test_read_only_mount_refuses_writes_and_reports_them(c_guest, tmp_path: Path) -> None:
    """Writing into a read-only mount is EROFS, and the host hears about it."""
    sb = (
        ws.WasmSandbox.builder()
        .source(c_guest("fs_limits"))
        .mount_directory(tmp_path, "/ro")
        .build()
    )
    result = sb.run(["write", "/ro", "10"])
    assert result.stdout == f"open: errno {EROFS}\n".encode()
    assert list(tmp_path.iterdir()) == []
    events = result.resource_report.security_events
    assert [(e.kind, e.path) for e in events] == [("read_only", "/ro/big")]


def test_escape_through_host_symlink_is_refused_and_reported(c_guest, tmp_path: Path) -> None:
    """A symlink planted on the host pointing outside the mount leads nowhere."""
    inside = tmp_path / "inside"
    inside.mkdir()
    (tmp_path / "secret.txt").write_text("top secret")
    (inside / "link").symlink_to(tmp_path / "secret.txt")
    (inside / "rel").symlink_to("../secret.txt")
    sb = (
        ws.WasmSandbox.builder().source(c_guest("fs_limits")).mount_directory(inside, "/in").build()
    )
    for name in ("link", "rel"):
        result = sb.run(["cat", f"/in/{name}"])
        assert b"top secret" not in result.stdout
        assert result.stdout == b"open: errno 76\n"  # ENOTCAPABLE
        assert [e.kind for e in result.resource_report.security_events] == ["path_escape"]


def test_sibling_directory_with_shared_prefix_is_not_reachable(c_guest, tmp_path: Path) -> None:
    """Mounting 'box' does not expose 'box2' (the classic string-prefix bug): ``/box/../box2/f``
    reaches our resolver, which refuses it with ENOTCAPABLE and records a path_escape event;
    ``/box2/f`` matches no mount, so wasi-libc refuses it before any host call (Debian's
    wasi-libc with ENOTCAPABLE, zig's newer one with ENOENT)."""
    (tmp_path / "box").mkdir()
    (tmp_path / "box2").mkdir()
    (tmp_path / "box2" / "f").write_text("sibling")
    sb = (
        ws.WasmSandbox.builder()
        .source(c_guest("fs_limits"))
        .mount_directory(tmp_path / "box", "/box")
        .build()
    )
    through = sb.run(["cat", "/box/../box2/f"])
    assert (through.exit_code, through.stdout) == (1, b"open: errno 76\n")  # ENOTCAPABLE
    events = through.resource_report.security_events
    # the event names the directory the path was resolved from, and why it was refused
    assert [(e.kind, e.path) for e in events] == [("path_escape", "/box")]
    assert "'..' above the directory" in events[0].detail
    direct = sb.run(["cat", "/box2/f"])
    assert direct.exit_code == 1
    assert direct.stdout in (b"open: errno 76\n", b"open: errno 44\n")  # ENOTCAPABLE, ENOENT
    assert direct.resource_report.file_operations == 0  # no mount matched: never reached us


@pytest.mark.parametrize(
    ("host", "guest", "message"),
    [
        ("missing", "/data", "host_path does not exist"),
        ("file.txt", "/data", "host_path is not a directory"),
        ("dir", "data", "guest_path must be absolute"),
        ("dir", "/da\0ta", "must not contain NUL"),
        ("dir", "/a/../b", "must not contain '.' or '..'"),
        ("dir", "/bad\udcff", "must be valid UTF-8"),
    ],
)
def test_bad_mounts_are_refused_at_build_time(
    tmp_path: Path, host: str, guest: str, message: str
) -> None:
    """Mount errors are ConfigurationErrors naming the problem."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ws.ConfigurationError, match=message):
        ws.WasmSandbox.builder().mount_directory(tmp_path / host, guest)


def test_overlapping_mounts_are_refused(tmp_path: Path) -> None:
    """A mount over (or inside) another mount is refused."""
    builder = ws.WasmSandbox.builder().mount_directory(tmp_path, "/data")
    with pytest.raises(ws.ConfigurationError, match="overlaps"):
        builder.mount_directory(tmp_path, "/data/sub")
    with pytest.raises(ws.ConfigurationError, match="overlaps"):
        builder.memory_fs("/data")


@pytest.mark.parametrize(
    "limits",
    [{"io_batch_size": 64}, {"buffer_size": 4096}, {"io_batch_size": 1000, "buffer_size": 1 << 20}],
    ids=["batch", "bytes", "both"],
)
def test_buffered_writes_are_complete_and_visible(
    c_guest, tmp_path: Path, limits: dict[str, int]
) -> None:
    """With write buffering, reads through another descriptor see every byte written, and the
    file holds exactly what the guest wrote once the run ends."""
    result = _sandbox(c_guest, tmp_path, **limits).run(["smallwrites", "/work", "5000"])  # type: ignore[arg-type]
    expected = "".join(f"line {i}\n" for i in range(5000)).encode()
    assert result.stdout == f"wrote {len(expected)} read {len(expected)}\n".encode()
    assert (tmp_path / "lines").read_bytes() == expected
    assert result.resource_report.io_errors == ()


def test_buffered_writes_still_honour_max_file_size(c_guest, tmp_path: Path) -> None:
    """Buffering does not loosen limits: the file stops at max_file_size exactly."""
    result = _sandbox(c_guest, tmp_path, io_batch_size=100, max_file_size=2500).run(
        ["write", "/work", "10000"]
    )
    assert result.stdout == f"wrote 2500 then errno {EFBIG}\n".encode()
    assert (tmp_path / "big").stat().st_size == 2500


def test_buffered_writes_flush_at_the_end_of_the_call(c_guest, tmp_path: Path) -> None:
    """Data still buffered when the guest exits without closing is written out."""
    result = _sandbox(c_guest, tmp_path, buffer_size=1 << 20).run(["write", "/work", "3000"])
    assert result.stdout == b"wrote 3000\n"
    assert (tmp_path / "big").stat().st_size == 3000


@pytest.mark.parametrize(("field", "value"), [("io_batch_size", 0), ("buffer_size", 1 << 30)])
def test_bad_buffer_settings_are_refused(field: str, value: int) -> None:
    """Buffer settings are validated like every limit."""
    with pytest.raises(ws.ConfigurationError, match=field):
        ws.ResourceLimits(**{field: value})  # type: ignore[arg-type]


def _host_writes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw"))


def test_buffering_cuts_host_writes(c_guest, tmp_path: Path) -> None:
    """5000 small guest writes become about 5000/io_batch_size host writes (counted by the
    kernel in /proc/self/io), against 5000 without buffering."""
    plain = _sandbox(c_guest, tmp_path)
    batched = _sandbox(c_guest, tmp_path, io_batch_size=100)
    counts = []
    for sb in (plain, batched):
        before = _host_writes()
        assert sb.run(["smallwrites", "/work", "5000"]).exit_code == 0
        counts.append(_host_writes() - before)
    assert counts[0] >= 5000
    assert counts[1] <= 5000 // 100 + 20


def test_memory_fs_frees_an_unlinked_file_when_its_last_descriptor_closes(c_guest) -> None:
    """The temp-file pattern (open, unlink, write, close) does not eat the cap away."""
    sb = ws.WasmSandbox.builder().source(c_guest("fs_limits")).memory_fs("/scratch", 3000).build()
    assert sb.run(["tempfiles", "/scratch", "20"]).stdout == b"rounds 20\n"


def test_memory_fs_directories_are_removed(c_guest) -> None:
    """In-memory scratch directories do not outlive their instance (also a kept one)."""
    import gc  # noqa: PLC0415 - only this test needs it

    before = set(Path("/dev/shm").glob("wasm-sandbox-*"))
    sb = ws.WasmSandbox.builder().source(c_guest("fs_limits")).memory_fs("/s", 10_000)
    sb.build().run(["write", "/s", "100"])  # isolated: removed when the call ends
    assert set(Path("/dev/shm").glob("wasm-sandbox-*")) == before
    kept = sb.keep_instance(True).build()
    kept.run(["write", "/s", "100"])
    assert len(set(Path("/dev/shm").glob("wasm-sandbox-*")) - before) == 1
    del kept
    gc.collect()
    assert set(Path("/dev/shm").glob("wasm-sandbox-*")) == before

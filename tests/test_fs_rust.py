"""Differential test of Rust's ``std::fs`` (tests/guests/fs_rust.rs): the same program, built
with Debian's rustc for wasm32-wasi, runs under wasmtime's own WASI (the reference) and under
ours on identical fresh directories; transcripts and resulting trees must be identical.

Rust's standard library drives WASI differently from wasi-libc's C API (its own
``create_dir_all``, ``remove_dir_all`` walking ``fd_readdir`` with cookies, ``copy`` as a
read/write loop, ``OpenOptions``), so this catches what the C guests do not.

The toolchain is Debian's ``rustc`` with ``libstd-rust-dev-wasm32`` (``/usr/bin/rustc``; a
rustup ``rustc`` on PATH usually lacks the wasm32-wasi standard library).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.test_fs_differential import (
    GUEST_DIR,
    lines,
    outside_state,
    run_ours,
    run_reference,
    snapshot,
)

RUSTC = Path("/usr/bin/rustc")
SOURCE = Path(__file__).parent / "guests" / "fs_rust.rs"
SEED = b"seed content\n"

_MISSING = (
    "Debian's Rust toolchain for wasm32-wasi is missing: install it with "
    "`apt-get install rustc libstd-rust-dev-wasm32` (tasks.sh setup does); {detail}"
)
_RETRIED = re.compile(r"^(remove_dir_all many: .*) attempts=(\d+)$")

# Bytes fs_rust.rs writes to files, counted from its source: hello.txt 13, bin 4, three
# appends 14, fresh.txt 5 + 3, "TWO" 3, big.bin 200000, 40 files in many/ 70, three copies
# 14 + 200000 + 13, four files under deep/ 42. set_len and create do not write bytes.
RUST_BYTES_WRITTEN = 400_181


def _target_libdir() -> Path | None:
    try:
        done = subprocess.run(
            [str(RUSTC), "--target", "wasm32-wasi", "--print", "target-libdir"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return Path(done.stdout.strip())


@pytest.fixture(scope="session")
def rust_guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/guests/fs_rust.rs compiled for wasm32-wasi, once per run (cached by the hash of
    the source and the compiler version). Fails, naming the packages, without the toolchain."""
    if not RUSTC.exists():
        pytest.fail(_MISSING.format(detail=f"{RUSTC} does not exist"))
    libdir = _target_libdir()
    if libdir is None or not any(libdir.glob("libstd-*.rlib")):
        pytest.fail(_MISSING.format(detail=f"{RUSTC} has no wasm32-wasi standard library"))
    version = subprocess.run(
        [str(RUSTC), "--version"], capture_output=True, check=True, text=True
    ).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    out = tmp_path_factory.mktemp("rust-guests") / f"fs_rust-{digest}.wasm"
    if not out.exists():
        done = subprocess.run(
            [str(RUSTC), "--target", "wasm32-wasi", "-O", "-o", str(out), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"{RUSTC} could not build {SOURCE.name}:\n{done.stderr}")
    return out


def _big_bin() -> bytes:
    """What fs_rust.rs writes to big.bin: 50,000 little-endian u32 ``i * 2654435761``."""
    return b"".join(((i * 2_654_435_761) % 2**32).to_bytes(4, "little") for i in range(50_000))


def _fresh(parent: Path, seed: bool = True) -> Path:
    data = parent / "data"
    data.mkdir(parents=True)
    if seed:
        (data / "seed.txt").write_bytes(SEED)
    return data


def _normalized(stdout: bytes) -> tuple[list[str], int]:
    """The transcript with the retry count of ``remove_dir_all many`` taken out, and that
    count. (wasmtime's readdir cookies are positions in a fresh listing, so deleting while
    listing skips entries and Rust's remove_dir_all needs retries there; not ours.)"""
    out, attempts = [], -1
    for line in lines(stdout):
        m = _RETRIED.match(line)
        if m:
            out.append(m[1])
            attempts = int(m[2])
        else:
            out.append(line)
    assert attempts > 0, "the transcript lacks the remove_dir_all many line"
    return out, attempts


def test_reference_transcript_is_what_the_program_means(rust_guest: Path, tmp_path: Path) -> None:
    """The premise, on wasmtime: the program runs to its end and each std::fs call does what
    it should (so the differential test compares something meaningful)."""
    data = _fresh(tmp_path / "ref")
    code, stdout = run_reference(rust_guest, data, args=[GUEST_DIR])
    assert code == 0
    out, _ = _normalized(stdout)
    assert out[-1] == "done"
    for expected in (
        'read seed.txt: ok "seed content\\n"',
        "create_dir_all a/b/c again: ok ()",
        "create_dir a (exists): ERR AlreadyExists 20",
        'read log.txt: ok "one\\ntwo\\nthree\\n"',
        'read+write+seek: ok (14, "one\\nTWO\\nthree\\n")',
        "set_len: ok (10, 2)",
        'big read: ok (200000, "30ae5687")',
        "list root: [a(d) fresh.txt(f) log.txt(f) seed.txt(f)]",
        "list many: 40 entries, 40 distinct, "
        'first=Some("entry-with-a-rather-long-name-000.txt") '
        'last=Some("entry-with-a-rather-long-name-039.txt")',
        "rename log.txt -> moved (file over dir): ERR Uncategorized 31",
        "copy moved/big.bin -> big2.bin: ok 200000",
        "remove_dir a (not empty): ERR Uncategorized 55",
        "remove_dir_all deep: ok ()",
        "remove_dir_all many: ok",
        "exists deep: ok false",
    ):
        assert expected in out
    assert snapshot(data) == {
        "a": ("dir",),
        "a/bin": ("file", b"\xff\xfe\x00A"),
        "a/copy.txt": ("file", SEED),
        "a2": ("file", b""),
        "hi.txt": ("file", b"ne"),
        "log.txt": ("file", b"one\nTWO\nthree\n"),
        "moved": ("dir",),
        "moved/big.bin": ("file", _big_bin()),
        "moved/empty": ("file", b""),
        "seed.txt": ("file", SEED),
    }


def test_rust_std_fs_matches_reference(rust_guest: Path, tmp_path: Path) -> None:
    """Same exit code, transcript and final tree as wasmtime's WASI; nothing next to the
    mount touched; remove_dir_all of a directory listed in several fd_readdir calls works
    at the first attempt; the report counts exactly the bytes the program wrote."""
    ref_dir = _fresh(tmp_path / "ref")
    ours_dir = _fresh(tmp_path / "ours")
    before = outside_state(ours_dir.parent)

    ref_code, ref_stdout = run_reference(rust_guest, ref_dir, args=[GUEST_DIR])
    result = run_ours(rust_guest, ours_dir, args=[GUEST_DIR])

    ours, ours_attempts = _normalized(result.stdout)
    reference, _ = _normalized(ref_stdout)
    assert ours == reference, result.stderr
    assert result.exit_code == ref_code == 0
    assert ours_attempts == 1  # deleting while listing must not skip entries
    assert snapshot(ours_dir) == snapshot(ref_dir)
    assert outside_state(ours_dir.parent) == before

    report = result.resource_report
    assert report.bytes_written == RUST_BYTES_WRITTEN
    assert report.bytes_read >= 2 * 200_000  # big.bin read back, then copied
    assert report.file_operations > 100
    assert report.security_events == ()
    assert report.io_limits_hit == {}


def test_rust_std_fs_on_a_memory_fs_matches_reference(rust_guest: Path, tmp_path: Path) -> None:
    """The same program on an in-memory mount (which starts empty) prints what wasmtime's
    WASI prints on an empty host directory, down to the final tree it lists."""
    ref_dir = _fresh(tmp_path / "ref", seed=False)
    ref_code, ref_stdout = run_reference(rust_guest, ref_dir, args=[GUEST_DIR])
    sandbox = ws.WasmSandbox.builder().source(rust_guest).memory_fs(GUEST_DIR, 4 << 20).build()
    with sandbox:
        result = sandbox.run([GUEST_DIR])
    ours, ours_attempts = _normalized(result.stdout)
    reference, _ = _normalized(ref_stdout)
    assert ours == reference, result.stderr
    assert result.exit_code == ref_code == 0
    assert ours_attempts == 1
    assert "read seed.txt: ERR NotFound 44" in ours
    assert ours[-2].startswith("tree: a/ a/bin=4 ")

"""The snapshot file format (``_runtime/_snapshot.py``): a round trip, and every way a file
can be wrong — truncated, altered, or crafted with a valid checksum (a checksum is no
signature: whoever writes a file can compute it) but an impossible header — is refused, and a
crafted in-memory directory never writes outside its root."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import wasm_sandbox as ws
from wasm_sandbox._config._mounts import Mount
from wasm_sandbox._invocation import sandbox_core
from wasm_sandbox._runtime._snapshot import MAGIC, Snapshot, dump_snapshot, load_snapshot
from wasm_sandbox._wasi._fs import FdTable
from wasm_sandbox._wasi._hoststate import HostState, MountState, capture_host, restore_host


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    sandbox = ws.WasmSandbox.builder().source("function f() {}").language("javascript").build()
    start = sandbox_core(sandbox).plan.start
    assert start is not None
    return start


def _parts(data: bytes) -> tuple[dict[str, object], bytes]:
    size = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
    head = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + size])
    return head, data[len(MAGIC) + 4 + size : -32]


def _crafted(header: dict[str, object], body: bytes) -> bytes:
    """A file with this header and data and a correct checksum."""
    head = json.dumps(header).encode()
    data = MAGIC + len(head).to_bytes(4, "little") + head + body
    return data + hashlib.sha256(data).digest()


def test_a_snapshot_survives_the_round_trip(snapshot: Snapshot) -> None:
    data = dump_snapshot(snapshot, {"kind": "test", "n": 1})
    loaded, meta = load_snapshot(data)
    assert loaded == snapshot
    assert meta == {"kind": "test", "n": 1}


@pytest.mark.parametrize("cut", [0, 8, 40, -33, -1])
def test_a_truncated_file_is_refused(snapshot: Snapshot, cut: int) -> None:
    data = dump_snapshot(snapshot, {})
    with pytest.raises(ValueError, match=r"snapshot file|truncated"):
        load_snapshot(data[:cut])


def test_an_altered_byte_is_refused(snapshot: Snapshot) -> None:
    data = bytearray(dump_snapshot(snapshot, {}))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ValueError, match="altered"):
        load_snapshot(bytes(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.update(format=2), "format"),
        (lambda h: h.update(pages=1 << 20), "count within"),
        (lambda h: h.update(runs=[[0, 4096], [0, 4096]]), "overlap|shorter"),
        (lambda h: h.update(runs=[[-4096, 4096]]), "count within"),
        (lambda h: h.update(globals=[[0, "funcref", "00" * 16]]), "global"),
        (lambda h: h.update(globals=[[0, "i32", "00"]]), "global"),
        (lambda h: h.update(mounts=[{"items": [["a", "x", 0]], "used": 0, "entries": 0}]), "entry"),
        (lambda h: h.update(meta=[]), "malformed"),
        (lambda h: h.pop("digest"), "malformed"),
    ],
)
def test_a_crafted_header_is_refused(snapshot: Snapshot, change: object, message: str) -> None:
    header, body = _parts(dump_snapshot(snapshot, {}))
    assert callable(change)
    change(header)
    with pytest.raises(ValueError, match=message):
        load_snapshot(_crafted(header, body))


def test_data_longer_than_the_header_says_is_refused(snapshot: Snapshot) -> None:
    header, body = _parts(dump_snapshot(snapshot, {}))
    with pytest.raises(ValueError, match="longer"):
        load_snapshot(_crafted(header, body + b"extra"))


@pytest.mark.parametrize(
    "items",
    [
        [("../escape", "f", b"x")],
        [("a/../../escape", "f", b"x")],
        [("/etc/escape", "f", b"x")],
        [("link", "l", b"/tmp"), ("link/escape", "f", b"x")],  # a parent that is a link
        [("missing/escape", "f", b"x")],  # a parent never made
    ],
)
def test_crafted_directory_content_never_leaves_its_root(
    tmp_path: Path, items: list[tuple[str, str, bytes]]
) -> None:
    fds = FdTable((Mount.memory("/scratch"),))
    try:
        root = fds.mounts[0].scratch
        assert root is not None
        state = HostState((MountState(tuple(items), 100, len(items)),))
        with pytest.raises(ws.SnapshotError, match="invalid path"):
            restore_host(fds, state)
        assert not (Path(root).parent / "escape").exists()
        assert not Path("/tmp/escape").exists()
    finally:
        fds.close()


def test_in_memory_directories_are_carried(tmp_path: Path) -> None:
    source = FdTable((Mount.memory("/scratch"),))
    target = FdTable((Mount.memory("/scratch"),))
    try:
        root = Path(source.mounts[0].scratch or "")
        (root / "dir").mkdir()
        (root / "dir" / "file.txt").write_bytes(b"content")
        (root / "link").symlink_to("dir/file.txt")
        state = capture_host(source)
        restore_host(target, state)
        copy = Path(target.mounts[0].scratch or "")
        assert (copy / "dir" / "file.txt").read_bytes() == b"content"
        assert (copy / "link").is_symlink() and str((copy / "link").readlink()) == "dir/file.txt"
    finally:
        source.close()
        target.close()


def test_crafted_directory_content_over_the_mount_cap_is_refused() -> None:
    """A state that says it used nothing but carries more than the mount may hold is refused
    before anything is written: its cost is counted from what it carries."""
    fds = FdTable((Mount.memory("/scratch", max_bytes=4096, max_entries=10),))
    try:
        big = HostState((MountState((("big", "f", b"x" * 8192),), 0, 1),))
        with pytest.raises(ws.SnapshotError, match="cap"):
            restore_host(fds, big)
        many = HostState((MountState(tuple((f"f{i}", "f", b"") for i in range(11)), 0, 0),))
        with pytest.raises(ws.SnapshotError, match="cap"):
            restore_host(fds, many)
        assert not list(Path(fds.mounts[0].scratch or "").iterdir())
    finally:
        fds.close()


def test_a_saved_javascript_state_with_a_hostile_math_random_is_a_guest_error(
    tmp_path: Path,
) -> None:
    """A state whose guest replaced Math.random, loaded where its random state's address is
    not known yet: finding it reads the guest's answer, which is not a number; a GuestError,
    never a host failure."""
    from wasm_sandbox._guests import _turns  # noqa: PLC0415 - the per-process address cache

    sandbox = ws.WasmSandbox.builder().source("").language("javascript").build()
    path = tmp_path / "hostile.wsbx"
    with sandbox.session() as session:
        session.exec("Math.random = () => 'not a number'")
        session.save(path)
    _turns._RANDOM_STATES.clear()
    with pytest.raises(ws.GuestError, match=r"Math\.random"), sandbox.load_session(path) as loaded:
        loaded.eval("1 + 1")


def test_a_deeply_nested_header_is_refused() -> None:
    """A header nested past what the JSON parser recurses into is a malformed file."""
    head = ("[" * 200_000 + "]" * 200_000).encode()
    data = MAGIC + len(head).to_bytes(4, "little") + head
    with pytest.raises(ValueError, match="malformed"):
        load_snapshot(data + hashlib.sha256(data).digest())

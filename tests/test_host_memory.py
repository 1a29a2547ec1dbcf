"""Host memory is bounded by the guest's limits: whatever a guest asks the host to copy
(iovecs that all alias the same bytes, reads naming buffers as large as its memory, frames
handed to the door, bodies fetched for it), the host's peak RSS for one execution stays
within the guest's memory cap plus a constant, and what the guest asked for is still done
correctly: writes cut at the caps and counted, stream reads in bounded chunks, bodies
streamed both ways.

The peak RSS is measured in a child process per attack (``tests/amplification.py``; the same
scenarios, with the figures recorded, are ``bench/bench_amplification.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.amplification import BOUND_SLACK, SCENARIOS, bulk_http_server, flood_module
from tests.amplification import measure_in_child as measure
from tests.conftest import script_sandbox
from tests.netservers import sink_server

MiB = 1 << 20
MAX_RW = 0x7FFFF000  # Linux's largest single write: a larger one is reported short


# js-upload is left to the benchmark: it cost the host less than the 64 MiB slack before too
# (the guest runs out of memory first); its correctness is test_fetch_uploads_...
@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"js-upload"}))
def test_host_peak_rss_stays_within_the_guest_cap(scenario: str) -> None:
    """Each attack, in a fresh process: the host's peak RSS grows by at most the guest's
    memory cap + 64 MiB (before: 1 GiB for the iovec floods, 1.1 GiB for the fetch, 650 MiB
    for the door frames, MemoryError -> HostError for 60 GiB asked at once), and no
    HostError."""
    figures = measure(scenario)
    growth, cap = int(str(figures["growth_bytes"])), int(str(figures["cap_bytes"]))
    assert growth <= cap + BOUND_SLACK, figures
    assert not str(figures["outcome"]).startswith("HostError"), figures


def _flood(**options: object) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(flood_module()).max_fuel(None)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


def _split(packed: int) -> tuple[int, int]:
    """(errno, count) of the flood module's packed answer."""
    return packed >> 32, packed & 0xFFFFFFFF


def test_a_stdout_flood_is_counted_not_stored() -> None:
    """1,024 iovecs over one MiB: the guest is told 1 GiB was written, the report counts
    1 GiB, and the first max_output_bytes are kept."""
    outcome = _flood(max_output_bytes=MiB).call_with_detailed_monitoring("stdout", 1024, MiB)
    assert _split(outcome.value) == (0, 1 << 30)
    assert outcome.resource_report.stdout_bytes == 1 << 30
    assert outcome.stdout == bytes(MiB)


def test_a_write_larger_than_linux_allows_is_short() -> None:
    """iovecs adding up past 2 GiB (60 GiB here) are cut to Linux's largest write, and the
    guest sees that count, as it would natively."""
    assert _split(_flood().call("stdout", 1024, 60 * MiB)) == (0, MAX_RW)


@pytest.mark.parametrize("positioned", [0, 1], ids=["fd_write", "fd_pwrite"])
def test_a_file_flood_is_cut_at_max_file_size(tmp_path: Path, positioned: int) -> None:
    """A gigabyte written to a host file with fd_write or fd_pwrite stops at max_file_size: the call
    reports 3 MiB written and the file holds exactly that."""
    limits = ws.ResourceProfile.STANDARD.limits.replace(max_fuel=None, max_file_size=3 * MiB)
    builder = ws.WasmSandbox.builder().source(flood_module()).resource_limits(limits)
    box = builder.mount_directory(tmp_path, "/out", read_only=False).build()
    assert _split(box.call("file", 1024, MiB, positioned)) == (0, 3 * MiB)
    assert (tmp_path / "out.bin").stat().st_size == 3 * MiB


def test_a_file_flood_on_an_in_memory_mount_is_cut_at_its_cap() -> None:
    """A gigabyte written to an in-memory mount stops at its byte cap, less what the file's entry
    costs."""
    builder = ws.WasmSandbox.builder().source(flood_module()).max_fuel(None)
    box = builder.memory_fs("/out", max_bytes=2 * MiB).build()
    # The file's entry costs 256 bytes plus its name, "out.bin", the rest holds its bytes.
    assert _split(box.call("file", 1024, MiB, 0)) == (0, 2 * MiB - 256 - len("out.bin"))


BUFFERED = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    int a = open("/out/a", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int b = open("/out/b", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; i < 100; i++) {            /* interleaved small writes */
        char line[8] = {'a', (char)('0' + i % 10), '\n'};
        if (write(a, line, 3) != 3) return 1;
        line[0] = 'b';
        if (write(b, line, 3) != 3) return 2;
    }
    size_t big = 3 << 20;                        /* larger than the buffer */
    char *data = malloc(big);
    memset(data, 'z', big);
    if (write(a, data, big) != (ssize_t)big) return 3;
    if (write(a, "end", 3) != 3) return 4;
    return 0;
}
"""


def test_buffered_writes_keep_one_buffer_of_at_most_buffer_size(tmp_path: Path) -> None:
    """With write buffering, a write to another descriptor flushes the buffer first and a
    write larger than buffer_size is not buffered: the host holds at most one buffer, and
    the files come out exactly as written."""
    limits = ws.ResourceProfile.STANDARD.limits.replace(buffer_size=64 * 1024, io_batch_size=1000)
    builder = ws.WasmSandbox.builder().source(BUFFERED).language("c").resource_limits(limits)
    box = builder.mount_directory(tmp_path, "/out", read_only=False).build()
    assert box.run().exit_code == 0
    lines = "".join(f"a{i % 10}\n" for i in range(100)).encode()
    assert (tmp_path / "a").read_bytes() == lines + b"z" * (3 << 20) + b"end"
    assert (tmp_path / "b").read_bytes() == lines.replace(b"a", b"b")


STDIN_READ = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 80)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 5000000))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; report the count read as 4 bytes on stdout
    (i32.store (i32.const 16) (i32.const 8))
    (i32.store (i32.const 20) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"""


def test_a_stream_read_moves_at_most_one_chunk() -> None:
    """A read from a stdin stream (here a 4 MiB file) fills at most 1 MiB per call, straight
    into guest memory; fixed stdin bytes fill the whole request."""
    box = ws.WasmSandbox.builder().source(STDIN_READ.encode()).max_fuel(None).build()
    with tempfile.TemporaryFile() as data:
        data.write(b"s" * (4 * MiB))
        data.seek(0)
        count = int.from_bytes(box.run(stdin=data).stdout, "little")
    assert count == MiB
    assert int.from_bytes(box.run(stdin=b"t" * (3 * MiB)).stdout, "little") == 3 * MiB


def test_a_send_flood_sends_what_it_reports() -> None:
    """sock_send with 1,024 aliasing iovecs: the socket takes what it takes (writev from guest
    memory), and the sink receives exactly the count the guest was told."""
    with sink_server() as sink:
        box = _flood(allow_network=sink.endpoint)
        errno, count = _split(box.call("sock", 1024, MiB, sink.port))
        assert errno == 0 and 0 < count <= 1 << 30
        assert sink.stats.wait_for(lambda s: s.per_connection_received == [count])


FETCH = """
async function bytes(url) {
  const r = await fetch(url);
  return new Uint8Array(await r.arrayBuffer());
}
async function text(url) {
  const r = await fetch(url);
  return await r.text();
}
async function json(url) {
  return await (await fetch(url)).json();
}
async function echo(url, body, asBytes) {
  // text ends with a lone surrogate, which fetch sends as U+FFFD
  const data = asBytes ? new Uint8Array(body) : body + String.fromCharCode(0xd800) + "!";
  const r = await fetch(url, { method: "POST", body: data });
  return new Uint8Array(await r.arrayBuffer());
}
"""


def test_fetch_streams_a_large_body_intact() -> None:
    """A 3.5 MiB body crosses in several pieces and arrives byte for byte."""
    body = bytes(range(256)) * (14 * 1024) + b"tail"
    with bulk_http_server(body=body) as server:
        box = script_sandbox(
            FETCH, "javascript", memory_limit=64 * MiB, allow_network=server.endpoint
        )
        assert box.call("bytes", f"http://{server.endpoint}/body") == body


@pytest.mark.parametrize(
    "body",
    [
        "h\u00e9llo w\u00f6rld \u20ac \U0001f600".encode() * 50_000,
        b"ascii only " * 100_000,
        b"bad \xff\xfe utf-8 \xed\xa0\x80 \xf0\x9f\x98 cut \xc3" * 1000 + b"\xe2\x82",
        b"",
    ],
    ids=["utf-8", "ascii", "malformed", "empty"],
)
def test_fetch_text_decodes_as_utf_8_with_replacement(body: bytes) -> None:
    """text() decodes the streamed bytes in the guest exactly as Python's
    ``decode("utf-8", "replace")`` does (one U+FFFD per maximal ill-formed subsequence)."""
    with bulk_http_server(body=body) as server:
        box = script_sandbox(
            FETCH, "javascript", memory_limit=64 * MiB, allow_network=server.endpoint
        )
        assert box.call("text", f"http://{server.endpoint}/t") == body.decode("utf-8", "replace")


def test_fetch_json_body() -> None:
    """A JavaScript fetch().json() of a body with non-ASCII text returns the parsed value."""
    with bulk_http_server(body=b'{"rows": [1, 2, "\xc3\xa9"]}') as server:
        box = script_sandbox(FETCH, "javascript", allow_network=server.endpoint)
        assert box.call("json", f"http://{server.endpoint}/j") == {"rows": [1, 2, "\u00e9"]}


@pytest.mark.parametrize("as_bytes", [False, True], ids=["text", "Uint8Array"])
def test_fetch_uploads_a_large_body_intact(as_bytes: bool) -> None:
    """The request body is pulled from the guest piece by piece and arrives exact (text as
    UTF-8, lone surrogates as U+FFFD; bytes as they are)."""
    text = "\u00e9t\u00e9 \u20ac " * 300_000
    with bulk_http_server() as server:
        box = script_sandbox(
            FETCH, "javascript", memory_limit=128 * MiB, allow_network=server.endpoint
        )
        url = f"http://{server.endpoint}/echo"
        if as_bytes:
            payload = bytes(range(256)) * 8000
            assert box.call("echo", url, payload, True) == payload
        else:
            expected = (text + "\ufffd!").encode()
            assert box.call("echo", url, text, False) == expected


def test_fetch_body_over_the_memory_cap_is_refused() -> None:
    """Without a download cap, a body announced larger than the guest's memory cap is
    refused before it is read (the guest could not hold it): a TypeError in the guest."""
    with bulk_http_server(40 * MiB) as server:
        box = script_sandbox(
            FETCH, "javascript", memory_limit=32 * MiB, allow_network=server.endpoint
        )
        with pytest.raises(ws.GuestError, match="exceeds the guest's memory limit") as info:
            box.call("bytes", f"http://{server.endpoint}/big")
        assert info.value.type == "TypeError"


def test_fetch_body_streamed_past_the_memory_cap_ends_at_the_cap() -> None:
    """A body of unannounced size streams into the guest piece by piece until the guest's
    own memory cap stops it (MemoryLimitExceeded); the host never held more than a piece
    (its peak is the ``js-fetch-unannounced`` scenario)."""
    with bulk_http_server(40 * MiB, announce=False) as server:
        box = script_sandbox(
            FETCH, "javascript", memory_limit=32 * MiB, allow_network=server.endpoint
        )
        with pytest.raises(ws.MemoryLimitExceeded):
            box.call("bytes", f"http://{server.endpoint}/big")


def test_fetch_body_over_the_download_cap_is_refused() -> None:
    """A fetch body larger than max_download_bytes is refused: the guest's error says it exceeds the
    download limit."""
    limits = ws.ResourceProfile.STANDARD.limits.replace(max_fuel=None, max_download_bytes=MiB)
    with bulk_http_server(2 * MiB) as server:
        box = script_sandbox(
            FETCH, "javascript", resource_limits=limits, allow_network=server.endpoint
        )
        with pytest.raises(ws.GuestError, match="exceeds the download limit"):
            box.call("bytes", f"http://{server.endpoint}/big")


def test_door_frames_are_not_piled_up() -> None:
    """A Python guest handing the door many large frames: each replaces the last (only the
    last is the turn's answer), and the call answers normally."""
    code = "import _host\ndef flood(n):\n    for _ in range(n):\n        _host.call(b'x' * 2**20)\n    return n\n"
    assert script_sandbox(code, "python").call("flood", 50) == 50

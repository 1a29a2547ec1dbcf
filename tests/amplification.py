"""Amplification attacks on the host's memory, each measured in a child process of its own.

A guest controls how much the host copies: one ``fd_write`` whose iovecs all point at the
same megabyte asks for a gigabyte, a stdin or socket read names buffers as large as its memory,
a script asks the host to fetch a body larger than the guest may hold. Each scenario builds
its sandbox, makes one harmless call (so code is mapped and caches are warm), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the attack once and prints one JSON
line: the peak growth of the host's resident set over the baseline, next to the guest's memory
cap. Used by ``tests/test_amplification.py`` (which asserts the bound) and
``bench/bench_amplification.py`` (which records the figures)::

    PYTHONPATH=src python -m tests.amplification SCENARIO [--scale 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import wasm_sandbox as ws
from tests.netservers import TcpServer, sink_server

__all__ = ["SCENARIOS", "Attack", "bulk_http_server", "measure_in_child"]

MiB = 1 << 20
BOUND_SLACK = 64 * MiB  # the constant the host may use over the guest's memory cap

# One module for every iovec flood: ``count`` iovecs at 4096, all pointing at the same
# ``len`` bytes at 64 KiB (memory grown to hold them); each export returns
# (errno << 32) | the count the call reported.
_FLOOD_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasm_sandbox" "tcp_connect" (func $tcp_connect (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "out.bin")
  (data (i32.const 32) "127.0.0.1")
  (func $iovecs (param $count i32) (param $len i32) (local $i i32) (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (local.get $len) (i32.const 131071)) (i32.const 16)) (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (drop (memory.grow (local.get $need)))))
    (block $done (loop $fill
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (i32.store (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 3))) (i32.const 65536))
      (i32.store (i32.add (i32.const 4100) (i32.shl (local.get $i) (i32.const 3))) (local.get $len))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $fill))))
  (func $pack (param $errno i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $errno)) (i64.const 32))
            (i64.load32_u (i32.const 0))))
  (func (export "stdout") (param $count i32) (param $len i32) (result i64)
    (call $iovecs (local.get $count) (local.get $len))
    (call $pack (call $fd_write (i32.const 1) (i32.const 4096) (local.get $count) (i32.const 0))))
  (func (export "file") (param $count i32) (param $len i32) (param $positioned i32) (result i64)
    (local $errno i32) (local $fd i32)
    (call $iovecs (local.get $count) (local.get $len))
    (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 7)
      (i32.const 9) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 8)))
    (if (local.get $errno) (then (return (call $pack (local.get $errno)))))
    (local.set $fd (i32.load (i32.const 8)))
    (if (result i64) (local.get $positioned)
      (then (call $pack (call $fd_pwrite (local.get $fd) (i32.const 4096) (local.get $count)
                                         (i64.const 0) (i32.const 0))))
      (else (call $pack (call $fd_write (local.get $fd) (i32.const 4096) (local.get $count)
                                        (i32.const 0))))))
  (func $stdin (param $count i32) (param $len i32) (result i64)
    (call $iovecs (local.get $count) (local.get $len))
    (call $pack (call $fd_read (i32.const 0) (i32.const 4096) (local.get $count) (i32.const 0))))
  (func (export "sock") (param $count i32) (param $len i32) (param $port i32) (result i64)
    (local $errno i32)
    (call $iovecs (local.get $count) (local.get $len))
    (local.set $errno (call $tcp_connect (i32.const 32) (i32.const 9) (local.get $port) (i32.const 8)))
    (if (local.get $errno) (then (return (call $pack (local.get $errno)))))
    (call $pack (call $sock_send (i32.load (i32.const 8)) (i32.const 4096) (local.get $count)
                                 (i32.const 0) (i32.const 0))))
  (func (export "_start")
    START))"""
_READ_STDIN = "(drop (call $stdin (i32.const COUNT) (i32.const LEN)))"
_WRITE_BOTH = """(call $iovecs (i32.const COUNT) (i32.const LEN))
    (drop (call $fd_write (i32.const 1) (i32.const 4096) (i32.const COUNT) (i32.const 0)))
    (drop (call $fd_write (i32.const 2) (i32.const 4096) (i32.const COUNT) (i32.const 0)))"""


def flood_module(stdin_count: int = 0, stdin_len: int = 0, *, output: bool = False) -> bytes:
    """The flood module; its ``_start`` reads stdin once with ``stdin_count`` iovecs of
    ``stdin_len`` bytes, or (``output``) writes that flood to stdout and to stderr."""
    start = (_WRITE_BOTH if output else _READ_STDIN).replace("COUNT", str(stdin_count))
    return _FLOOD_WAT.replace("START", start.replace("LEN", str(stdin_len))).encode()


@dataclass
class Attack:
    """One prepared attack: ``warm()`` is a harmless call on the same sandbox, ``run()`` the
    attack (its return value or error is reported), ``cap`` the guest's memory cap."""

    cap: int
    warm: Callable[[], object]
    run: Callable[[], object]


Scenario = Callable[[float], contextlib.AbstractContextManager[Attack]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


def _count(scale: float) -> int:
    return max(1, min(1024, int(1024 * scale)))


def _flood(**options: object) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(flood_module()).max_fuel(None)
    for name, value in options.items():
        getattr(builder, name)(value)
    return builder.build()


@scenario
@contextlib.contextmanager
def fd_write_stdout(scale: float) -> Iterator[Attack]:
    """1,024 iovecs over the same MiB, written to stdout (default 64 MiB cap, 16 MiB output)."""
    box = _flood()
    yield Attack(
        64 * MiB, lambda: box.call("stdout", 1, 1), lambda: box.call("stdout", _count(scale), MiB)
    )


@scenario
@contextlib.contextmanager
def fd_write_stdout_whole_memory(scale: float) -> Iterator[Attack]:
    """1,024 iovecs each covering 60 MiB of a 64 MiB guest: 60 GiB asked for in one call."""
    box = _flood()
    yield Attack(
        64 * MiB, lambda: box.call("stdout", 1, 1), lambda: box.call("stdout", 1024, 60 * MiB)
    )


@scenario
@contextlib.contextmanager
def run_stdout_and_stderr(scale: float) -> Iterator[Attack]:
    """A command flooding stdout and stderr with 1 GiB each (16 MiB kept of each, returned
    in the ExecutionResult: the most output a default sandbox keeps for the caller)."""
    box = ws.WasmSandbox.builder().source(flood_module(_count(scale), MiB, output=True))
    sandbox = box.max_fuel(None).build()
    quiet = ws.WasmSandbox.builder().source(flood_module(1, 1, output=True)).max_fuel(None)
    warm = quiet.build()
    yield Attack(64 * MiB, warm.run, sandbox.run)


@contextlib.contextmanager
def _file_flood(scale: float, positioned: int) -> Iterator[Attack]:
    with tempfile.TemporaryDirectory(prefix="amplification-") as tmp:
        limits = ws.ResourceProfile.STANDARD.limits.replace(max_fuel=None, max_file_size=32 * MiB)
        builder = ws.WasmSandbox.builder().source(flood_module()).resource_limits(limits)
        box = builder.mount_directory(tmp, "/out", read_only=False).build()
        yield Attack(
            64 * MiB,
            lambda: box.call("file", 1, 1, positioned),
            lambda: box.call("file", _count(scale), MiB, positioned),
        )


@scenario
def fd_write_file(scale: float) -> contextlib.AbstractContextManager[Attack]:
    """The same flood to a file on a writable mount (max_file_size 32 MiB)."""
    return _file_flood(scale, 0)


@scenario
def fd_pwrite_file(scale: float) -> contextlib.AbstractContextManager[Attack]:
    """The same flood through fd_pwrite."""
    return _file_flood(scale, 1)


@scenario
@contextlib.contextmanager
def fd_write_memory_fs(scale: float) -> Iterator[Attack]:
    """The same flood to a file on an in-memory mount capped at 16 MiB."""
    builder = ws.WasmSandbox.builder().source(flood_module()).max_fuel(None)
    box = builder.memory_fs("/out", max_bytes=16 * MiB).build()
    yield Attack(
        64 * MiB, lambda: box.call("file", 1, 1, 0), lambda: box.call("file", _count(scale), MiB, 0)
    )


@scenario
@contextlib.contextmanager
def fd_read_stdin_pipe(scale: float) -> Iterator[Attack]:
    """One fd_read from a stdin pipe (kept full by a writer thread) naming 1,024 buffers of
    60 MiB each: 60 GiB of room asked for."""
    box = ws.WasmSandbox.builder().source(flood_module(1024, 60 * MiB)).max_fuel(None).build()
    read_end, write_end = os.pipe()
    stop = threading.Event()

    def feed() -> None:
        chunk = b"p" * 65536
        with contextlib.suppress(OSError):
            while not stop.is_set():
                os.write(write_end, chunk)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with os.fdopen(read_end, "rb", buffering=0) as stream:
            yield Attack(64 * MiB, lambda: box.run(stdin=b"x"), lambda: box.run(stdin=stream))
    finally:
        stop.set()
        os.close(write_end)
        writer.join(5)


@scenario
@contextlib.contextmanager
def fd_read_stdin_file(scale: float) -> Iterator[Attack]:
    """One fd_read from a stdin that is a 256 MiB file, with 1,024 buffers of 1 MiB."""
    size = max(MiB, int(256 * MiB * scale))
    box = ws.WasmSandbox.builder().source(flood_module(1024, MiB)).max_fuel(None).build()
    with tempfile.TemporaryFile() as data:
        data.truncate(size)
        yield Attack(64 * MiB, lambda: box.run(stdin=b"x"), lambda: box.run(stdin=data))


@scenario
@contextlib.contextmanager
def sock_send(scale: float) -> Iterator[Attack]:
    """1,024 iovecs over the same MiB sent with sock_send to a loopback sink."""
    with sink_server() as sink:
        box = _flood(allow_network=sink.endpoint)
        yield Attack(
            64 * MiB,
            lambda: box.call("sock", 1, 1, sink.port),
            lambda: box.call("sock", _count(scale), MiB, sink.port),
        )


@contextlib.contextmanager
def bulk_http_server(
    body_size: int = 0, body: bytes | None = None, *, announce: bool = True
) -> Iterator[TcpServer]:
    """An HTTP/1.0 server that reads a request (head and Content-Length body) and answers 200
    with ``body`` (else ``body_size`` bytes of ``b"b"``, made 64 KiB at a time), with a
    Content-Length unless ``announce`` is false; ``/small`` gets 5 bytes, ``/echo`` the
    request's own body."""

    def handle(server: TcpServer, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            more = server.recv(conn)
            if not more:
                return
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        path = head.split(b" ")[1]
        echo = path.endswith(b"/echo")
        kept, count = [rest], len(rest)  # an upload is counted, kept only to echo it
        while count < length:
            more = server.recv(conn)
            if not more:
                return
            count += len(more)
            if echo:
                kept.append(more)
        server.stats.update(bytes_received=count)
        if path.endswith(b"/small") or echo:
            payload = b"".join(kept) if echo else b"small"
            size = len(payload)
            chunks: Iterator[bytes] = iter([payload])
        else:
            size = len(body) if body is not None else body_size
            chunks = iter([body]) if body is not None else _pattern(body_size)
        length_line = b"Content-Length: %d\r\n" % size if announce else b""
        server.send(conn, b"HTTP/1.0 200 OK\r\n" + length_line + b"\r\n")
        for chunk in chunks:
            if not server.send(conn, chunk):
                return

    server = TcpServer(handle)
    try:
        yield server
    finally:
        server.stop()


def _pattern(size: int) -> Iterator[bytes]:
    chunk = b"b" * 65536
    while size > 0:
        yield chunk[: min(size, len(chunk))]
        size -= len(chunk)


_FETCH_JS = """
async function get(url) {
  const r = await fetch(url);
  return (await r.arrayBuffer()).byteLength;
}
async function post(url, size) {
  const r = await fetch(url, { method: "POST", body: "u".repeat(size) });
  return r.status;
}
"""


def _js(cap: int, endpoint: str) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(_FETCH_JS).language("javascript")
    return builder.max_fuel(None).memory_limit(cap).allow_network(endpoint).build()


@scenario
@contextlib.contextmanager
def js_fetch(scale: float) -> Iterator[Attack]:
    """A JavaScript fetch of a 96 MiB body under a 32 MiB memory cap."""
    with bulk_http_server(max(MiB, int(96 * MiB * scale))) as server:
        box = _js(32 * MiB, server.endpoint)
        url = f"http://{server.endpoint}/big"
        small = f"http://{server.endpoint}/small"
        yield Attack(32 * MiB, lambda: box.call("get", small), lambda: box.call("get", url))


@scenario
@contextlib.contextmanager
def js_fetch_unannounced(scale: float) -> Iterator[Attack]:
    """The same 96 MiB body without a Content-Length: the host must stop it as it streams."""
    with bulk_http_server(max(MiB, int(96 * MiB * scale)), announce=False) as server:
        box = _js(32 * MiB, server.endpoint)
        url = f"http://{server.endpoint}/big"
        small = f"http://{server.endpoint}/small"
        yield Attack(32 * MiB, lambda: box.call("get", small), lambda: box.call("get", url))


@scenario
@contextlib.contextmanager
def js_upload(scale: float) -> Iterator[Attack]:
    """A JavaScript fetch POSTing a 24 MiB body under a 64 MiB memory cap."""
    with bulk_http_server(16) as server:
        box = _js(64 * MiB, server.endpoint)
        url = f"http://{server.endpoint}/up"
        size = max(MiB, int(24 * MiB * scale))
        yield Attack(
            64 * MiB, lambda: box.call("post", url, 1), lambda: box.call("post", url, size)
        )


_DOOR_PY = """
import _host

def flood(count, size):
    frame = b"x" * size
    for _ in range(count):
        try:
            _host.call(frame)
        except OSError:
            pass
    return count
"""


@scenario
@contextlib.contextmanager
def python_door_frames(scale: float) -> Iterator[Attack]:
    """A Python guest handing the door 40 frames of 16 MiB (128 MiB memory cap)."""
    builder = ws.WasmSandbox.builder().source(_DOOR_PY).language("python")
    box = builder.max_fuel(None).memory_limit(128 * MiB).build()
    count = max(2, int(40 * scale))
    yield Attack(
        128 * MiB, lambda: box.call("flood", 1, 16), lambda: box.call("flood", count, 16 * MiB)
    )


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    """Make the peak RSS mark the current RSS (Linux: ``5`` to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _describe(value: object) -> str:
    if isinstance(value, ws.ExecutionResult):
        return f"exit {value.exit_code}, stdout {value.resource_report.stdout_bytes} B"
    if isinstance(value, int) and value >= 1 << 32:
        return f"errno {value >> 32}, count {value & 0xFFFFFFFF}"
    if isinstance(value, int):
        return f"count {value}"
    return repr(value)[:200]


def run_scenario(name: str, scale: float) -> dict[str, object]:
    """Run one scenario in this process and measure it."""
    with SCENARIOS[name](scale) as attack:
        attack.warm()
        time.sleep(0.05)
        _reset_peak()
        base = _status()["VmRSS"]
        started = time.perf_counter()
        try:
            outcome = "ok: " + _describe(attack.run())
        except ws.SandboxError as error:
            outcome = f"{type(error).__name__}: {str(error)[:300]}"
        elapsed = time.perf_counter() - started
        peak = _status()["VmHWM"]
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "scenario": name,
        "scale": scale,
        "cap_bytes": attack.cap,
        "baseline_rss_bytes": base,
        "peak_rss_bytes": peak,
        "ru_maxrss_bytes": maxrss,
        "growth_bytes": peak - base,
        "bound_bytes": attack.cap + BOUND_SLACK,
        "seconds": round(elapsed, 3),
        "outcome": outcome,
    }


def measure_in_child(name: str, scale: float = 1.0, timeout: float = 600) -> dict[str, object]:
    """Run the scenario ``name`` in a fresh Python process; its measurement."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / "src"), str(root), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.amplification", name, "--scale", str(scale)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"scenario {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    result: dict[str, object] = json.loads(lines[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--scale", type=float, default=1.0, help="attack size (1.0: as named)")
    args = parser.parse_args()
    print(json.dumps(run_scenario(args.scenario, args.scale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

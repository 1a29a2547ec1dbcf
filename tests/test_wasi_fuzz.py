"""No guest can make the host fail: every preview1 function and every host import, called by
a real guest with arbitrary and with boundary arguments, answers with an errno (or ends the
guest the documented way); every request a script guest can put to the host through its door
(network requests, answer frames, the JavaScript driver's request queue) is validated and
answered; no ``HostError`` ever comes out, and the host serves a normal call afterwards.

The example counts are small here (a few seconds each); ``WASM_SANDBOX_FUZZ_EXAMPLES=20000``
runs the WAT properties with that many examples and the script-guest ones (each example a
whole interpreter call) with a tenth or a quarter of it (``./tasks.sh soak``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from tests.netservers import TcpServer, echo_server, http_server
from wasm_sandbox._wasi._errno import Errno
from wasm_sandbox._wasi._registry import HOST_FUNCTIONS, SYSCALLS

_TYPES = {"i": "i32", "I": "i64"}
_ERRNOS = {int(e) for e in Errno}
_DOOR_ANSWERS = {0, -1, -2}  # host.call: answered, no host bound, the host refused the frame
_MEMORY = 131072  # the fuzz guests' two pages
_ALL = {**SYSCALLS, **{f"{sc.module}.{sc.name}": sc for sc in HOST_FUNCTIONS.values()}}


def _examples(default: int, share: float = 1.0) -> int:
    """The example count: ``default``, or for a soak run WASM_SANDBOX_FUZZ_EXAMPLES (times
    ``share``: an example that is a whole interpreter call costs ~20x a WAT one)."""
    soak = os.environ.get("WASM_SANDBOX_FUZZ_EXAMPLES")
    return max(default, int(int(soak) * share)) if soak else default


def _fuzz_settings(default: int, share: float = 1.0) -> settings:
    return settings(
        max_examples=_examples(default, share),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- every preview1 function and host import, from a WAT guest ------------------------------

# Memory the arguments may point into: an iovec (16, 4); iovec arrays that reach the last byte
# of memory, alias the whole memory, or run past it; paths, a host name, and 0xFF bytes.
_DATA = (
    '(data (i32.const 0) "\\10\\00\\00\\00\\04\\00\\00\\00\\00\\00\\00\\00abcdefgh/etc/passwd")\n'
    '(data (i32.const 256) "\\00\\00\\00\\00\\00\\00\\02\\00\\ff\\ff\\01\\00\\01\\00\\00\\00'
    '\\00\\00\\02\\00\\00\\00\\00\\00\\00\\02\\00\\00\\ff\\ff\\ff\\ff")\n'
    '(data (i32.const 320) "\\00\\00\\00\\00\\00\\00\\02\\00\\00\\00\\00\\00\\00\\00\\02\\00")\n'
    '(data (i32.const 1024) "f\\00d/../f\\00../x\\00/etc/passwd\\00f/\\00.\\00..")\n'
    '(data (i32.const 1536) "127.0.0.1")\n'
    '(data (i32.const 2048) "\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff")'
)


@cache
def _guest(name: str, mount: Path | None = None) -> ws.WasmSandbox:
    """A module importing ``name`` and exporting ``go`` with the same parameters, and ``ok``.

    It has two pages of memory, some of it filled with data, so that valid and invalid
    pointers are both likely. With a ``mount`` (writable, at fd 3), ``go`` first opens (or
    creates) the file ``f`` there, which becomes fd 4, so descriptor calls reach a real file.
    """
    sc = _ALL[name]
    params = " ".join(_TYPES[p] for p in sc.params)
    kind = _TYPES[sc.results[0]] if sc.results else "i32"  # wasm_sandbox_host.call: i64
    result = f"(result {kind})" if sc.results else ""
    gets = " ".join(f"local.get {i}" for i in range(len(sc.params)))
    call = f"{gets} call $f" + ("" if sc.results else " i32.const 0")
    opening = (
        "(drop (call $open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 1)"
        " (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)"
        " (i32.const 4000)))"
        if mount is not None
        else ""
    )
    wat = f"""(module
      (import "{sc.module}" "{sc.name}" (func $f (param {params}) {result}))
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (memory (export "memory") 2)
      {_DATA}
      (func (export "ok") (result i32) i32.const 42)
      (func (export "go") (param {params}) (result {kind}) {opening} {call}))"""
    # poll_oneoff may legitimately sleep (then the deadline stops it); nothing else may block.
    timeout = 0.2 if name == "poll_oneoff" else 10.0
    limits = ws.ResourceProfile.STANDARD.limits.replace(
        max_fuel=None, max_total_file_size=1 << 20, network_timeout=1, connect_timeout=1
    )
    builder = ws.WasmSandbox.builder().source(wat.encode()).resource_limits(limits)
    builder.timeout_duration(timeout).max_output_bytes(1024)
    builder.network_policy(ws.NetworkPolicy(allow=("127.0.0.1:1",)))  # a closed port
    if mount is not None:
        builder.mount_directory(mount, "/data", read_only=False)
    return builder.build()


def _arg(kind: str) -> st.SearchStrategy[int]:
    interesting = st.sampled_from([0, 1, 2, 3, 8, 16, 65535, 65536, 131071, 131072])
    if kind == "i":
        return st.one_of(interesting, st.integers(0, 2**32 - 1), st.integers(-(2**31), -1))
    return st.one_of(interesting, st.integers(-(2**63), 2**63 - 1))


@st.composite
def _calls(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    name = draw(st.sampled_from(sorted(SYSCALLS)))
    args = tuple(draw(_arg(kind)) for kind in SYSCALLS[name].params)
    return name, args


def _check_answer(name: str, call: Any) -> None:
    """Run ``call``; it must give an errno, or end the guest the documented way."""
    try:
        errno = call()
    except ws.GuestExit:
        assert name.endswith("proc_exit")
    except ws.ExecutionTimeout:
        assert name.endswith("poll_oneoff")  # a long sleep or a wait on stdin, stopped on time
    else:
        # A compiled guest's host call answers where it placed the reply, 0 when it could
        # not (this module exports no alloc): never anything else.
        allowed = {"host.call": _DOOR_ANSWERS, "wasm_sandbox_host.call": {0}}.get(name, _ERRNOS)
        assert errno in allowed, (name, errno)


@settings(max_examples=_examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_calls())
def test_any_arguments_give_an_errno_never_a_host_error(call: tuple[str, tuple[int, ...]]) -> None:
    """Garbage in, errno out: no HostError, no crash, for every syscall."""
    name, args = call
    _check_answer(name, lambda: _guest(name).call("go", *args))


@pytest.mark.parametrize("name", sorted(SYSCALLS))
def test_every_syscall_links_and_answers(name: str) -> None:
    """Each syscall can be imported and called with zeros."""
    args = (0,) * len(SYSCALLS[name].params)
    try:
        assert _guest(name).call("go", *args) in _ERRNOS
    except ws.GuestExit as exit_:
        assert name == "proc_exit" and exit_.exit_code == 0


# Boundary values: each kind's edges, the memory's last bytes and just past them, and the
# values that overflow 32- and 64-bit arithmetic (i64 arguments arrive signed: 2**64-1 is -1).
_I32_EDGES = [0, 1, 3, 4, 5, 8, 256, 320, 1024, 1536, 2048, 4000, 2**31 - 1, 2**31, 2**32 - 1]
_I32_EDGES += [_MEMORY - 8, _MEMORY - 4, _MEMORY - 1, _MEMORY, _MEMORY + 1, -1, -(2**31)]
_I64_EDGES = [0, 1, -1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, -(2**63), 2**64 - 1]
_I64_EDGES += [2**63, _MEMORY, 10**18, -(10**18)]


def _edge(kind: str) -> st.SearchStrategy[int]:
    edges = st.sampled_from(_I32_EDGES if kind == "i" else _I64_EDGES)
    near = st.integers(0, 9)  # small counts, descriptor numbers, flags, clock ids, whence
    return st.one_of(edges, edges, near)


@st.composite
def _edge_calls(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    name = draw(st.sampled_from(sorted(_ALL)))
    return name, tuple(draw(_edge(kind)) for kind in _ALL[name].params)


@pytest.fixture(scope="session")
def fuzz_mount(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable host directory for the boundary fuzz (the guest's /data, fd 3)."""
    return tmp_path_factory.mktemp("fuzz-mount")


@_fuzz_settings(200)
@given(call=_edge_calls())
def test_boundary_values_for_every_host_function(
    fuzz_mount: Path, call: tuple[str, tuple[int, ...]]
) -> None:
    """Every preview1 function and host import (``wasm_sandbox.tcp_connect``/``tls_connect``,
    ``host.call``), with an open file at fd 4 on a writable mount, called with boundary
    values (0, -1, 2**31, 2**32-1, 2**63-1, 2**64-1, pointers at and just past the end of
    memory, iovec arrays aliasing all of memory or running past it): an errno every time,
    and the sandbox answers a normal call afterwards."""
    name, args = call
    guest = _guest(name, fuzz_mount)
    _check_answer(name, lambda: guest.call("go", *args))
    assert guest.call("ok") == 42


# The issue's own reproductions, kept as explicit examples of the property above.
@pytest.mark.parametrize(
    ("name", "args", "errno"),
    [
        ("fd_allocate", (4, 2**62, 2**62), Errno.EFBIG),
        ("fd_allocate", (4, 2**63 - 1, 1), Errno.EFBIG),
        ("fd_allocate", (4, 2**64 - 1, 1), Errno.EINVAL),  # offset -1
        ("fd_pwrite", (4, 256, 4, 2**63 - 1, 0), Errno.EFAULT),  # the 4th iovec runs past memory
        ("fd_pwrite", (4, 256, 1, 2**63 - 1, 0), Errno.EINVAL),  # all of memory at 2**63-1
        ("fd_pwrite", (4, 0, 1, 2**63 - 2, 8), Errno.EINVAL),  # offset + 4 past off_t
        ("fd_write", (1, 320, 2, 8), Errno.SUCCESS),  # two iovecs over all of memory
        ("fd_write", (4, 320, 2, 8), Errno.SUCCESS),  # the same to a file (cut at the quota)
        ("fd_seek", (4, -(2**63), 1, 8), Errno.EINVAL),
        ("fd_filestat_set_size", (4, 2**64 - 1), Errno.EINVAL),
    ],
    ids=str,
)
def test_overflowing_arguments_get_the_posix_errno(
    fuzz_mount: Path, name: str, args: tuple[int, ...], errno: Errno
) -> None:
    """64-bit arithmetic is checked before any host call: past off_t is EFBIG/EINVAL as the
    kernel says, never an OverflowError in the host (it used to be a HostError)."""
    assert _guest(name, fuzz_mount).call("go", *args) == errno


# --- the door of the Python runtime -----------------------------------------------------------

DOOR_GUEST = """
import _host, base64, json, sys

def drive(port, frames):
    s = json.loads(_host.call(json.dumps({"net": "connect", "host": "127.0.0.1", "port": port}).encode()))
    out = [s]
    fd = str(s.get("fd", -1)).encode()
    for text in frames:
        try:
            answer = _host.call(base64.b64decode(text).replace(b'"$fd"', fd))
            out.append(["answer", base64.b64encode(answer or b"").decode()])
        except OSError as exc:
            out.append(["oserror", exc.errno])
    return out

def answer(text):
    frame = base64.b64decode(text)
    sys.modules["__wsbx__"]._send = lambda _frame: _host.call(frame)

def ok():
    return 42
"""


@cache
def _door_guest(port: int) -> ws.WasmSandbox:
    limits = ws.ResourceProfile.STANDARD.limits.replace(
        max_fuel=None, network_timeout=1, connect_timeout=1
    )
    return script_sandbox(
        DOOR_GUEST,
        "python",
        resource_limits=limits,
        timeout_duration=20,
        network_policy=ws.NetworkPolicy(allow=(f"127.0.0.1:{port}", "127.0.0.1:1")),
    )


# JSON fragments, as text: numbers JSON cannot carry in a double, NaN and infinities (Python's
# json accepts them), huge and tiny floats, strings with NUL, lone surrogates or 300 bytes,
# every JSON type, and nesting deeper than a parser's recursion limit.
_NUMBERS = ["0", "-1", "1", "2", "3", "4", "5", "6", str(2**31), str(2**32 - 1), str(2**63 - 1)]
_NUMBERS += [str(2**64 - 1), str(2**64), str(-(2**63)), "1e400", "-1e400", "NaN", "Infinity"]
_NUMBERS += ["-Infinity", "1.7976931348623157e308", "5e-324", "0.5", "-0.0", "1" + "0" * 5000]
_OTHERS = ['"127.0.0.1"', '""', '"' + "a" * 300 + '"', '"\\u0000"', '"\\ud800"', '"\\u00e9"']
_OTHERS += ['"nodelay"', '"keepalive"', "true", "false", "null", "[]", "{}", '{"a": [1]}']
_DEEP = ["[" * 2000 + "]" * 2000, '{"a":' * 1500 + "1" + "}" * 1500]
_FRAGMENTS = st.sampled_from(_NUMBERS + _OTHERS + _DEEP)
_FIELDS = {
    "connect": ("host", "port", "tls"),
    "timeout": ("fd", "seconds"),
    "shutdown": ("fd", "how"),
    "tls": ("fd", "host"),
    "sockopt": ("fd", "option", "value"),
}
_SENSIBLE = {"host": '"127.0.0.1"', "port": "1", "tls": "false", "fd": '"$fd"', "seconds": "1"}
_SENSIBLE |= {"how": "2", "option": '"nodelay"', "value": "true"}


@st.composite
def _net_frames(draw: st.DrawFn) -> bytes:
    """A network request as the door sees it: one of the five kinds with its own fields,
    each sensible or at an edge (sometimes missing, sometimes with a stray field)."""
    op = draw(st.sampled_from(sorted(_FIELDS)))
    fields = {}
    for key in _FIELDS[op]:
        choice = draw(st.integers(0, 9))
        if choice < 7:
            fields[key] = draw(_FRAGMENTS) if choice < 5 else _SENSIBLE[key]
    fields |= draw(st.dictionaries(st.sampled_from(["x", "net", "fd"]), _FRAGMENTS, max_size=1))
    opening = draw(st.sampled_from([f'"{op}"', f'"{op}"', f'"{op}"', '"bogus"', "1", "null"]))
    body = ", ".join([f'"net": {opening}', *(f'"{key}": {value}' for key, value in fields.items())])
    text = "{" + body + "}"
    if draw(st.integers(0, 9)) == 0:  # cut short, or padded past the request size limit
        text = text[: draw(st.integers(0, len(text)))] or text + " " * 5000
    return text.encode("utf-8", "surrogatepass")


_ANY_FRAME = st.one_of(
    _net_frames(), _net_frames(), st.binary(max_size=64), st.sampled_from([b'{"net"', b"{}"])
)


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    with echo_server() as server:
        yield server.port


@_fuzz_settings(15, share=0.1)
@given(frames=st.lists(_ANY_FRAME, min_size=1, max_size=6))
def test_door_network_requests_are_validated(echo: int, frames: list[bytes]) -> None:
    """A Python guest with a connection open hands the door arbitrary network requests
    (fields of every JSON type, 64-bit edges, 1e400, NaN, deep nesting, cut-short JSON):
    each gets an answer — ``{"fd"}``, ``{}`` or ``{"errno"}`` — never a host error, and the
    sandbox answers a normal call afterwards."""
    guest = _door_guest(echo)
    encoded = [base64.b64encode(frame).decode() for frame in frames]
    results = guest.call("drive", echo, encoded)
    assert "fd" in results[0]  # the guest's own connection
    for frame, (kind, value) in zip(frames, results[1:], strict=True):
        if kind == "oserror":
            assert isinstance(value, int)
        elif frame.startswith(b'{"net"'):
            answer = json.loads(base64.b64decode(value))
            assert answer == {} or set(answer) in ({"fd"}, {"errno"}), (frame, answer)
    assert guest.call("ok") == 42


_EINVAL = {"errno": int(Errno.EINVAL)}


@pytest.mark.parametrize(
    ("frame", "answer"),
    [
        (b'{"net": "connect", "host": "127.0.0.1", "port": 1e400}', _EINVAL),
        (b'{"net": "connect", "host": "127.0.0.1", "port": NaN}', _EINVAL),
        (b'{"net": "connect", "host": "127.0.0.1", "port": 18446744073709551616}', _EINVAL),
        (b'{"net": "connect", "host": "127.0.0.1", "port": "80"}', _EINVAL),
        (b'{"net": "connect", "host": "127.0.0.1", "port": 65536}', _EINVAL),
        (b'{"net": "connect", "host": ["127.0.0.1"], "port": 1}', _EINVAL),
        (b'{"net": "connect", "host": "127.0.0.1", "port": 1, "tls": "yes"}', _EINVAL),
        (b'{"net": "connect", "host": "127.0.0.1", "port": 1}', {"errno": Errno.ECONNREFUSED}),
        (b'{"net": "timeout", "fd": "$fd", "seconds": 1e400}', _EINVAL),
        (b'{"net": "timeout", "fd": "$fd", "seconds": NaN}', _EINVAL),
        (b'{"net": "timeout", "fd": "$fd", "seconds": -1}', _EINVAL),
        (b'{"net": "timeout", "fd": "$fd", "seconds": 1e300}', {}),
        (b'{"net": "timeout", "fd": "$fd", "seconds": null}', {}),
        (b'{"net": "shutdown", "fd": 1e400, "how": 1}', _EINVAL),
        (b'{"net": "shutdown", "fd": 99999999999999999999, "how": 1}', _EINVAL),
        (b'{"net": "shutdown", "fd": 4294967295, "how": 1}', {"errno": Errno.EBADF}),
        (b'{"net": "shutdown", "fd": "$fd", "how": 9}', _EINVAL),
        (b'{"net": "sockopt", "fd": "$fd", "option": "nodelay", "value": 1}', _EINVAL),
        (b'{"net": "sockopt", "fd": "$fd", "option": "nodelay", "value": true}', {}),
        (b'{"net": "sockopt", "fd": 1, "option": "nodelay", "value": true}', {"errno": 57}),
        (b'{"net": ' + b"[" * 1000 + b"]" * 1000 + b"}", _EINVAL),
        (b'{"net": "connect"', _EINVAL),
        (b'{"net": "bogus", "fd": "$fd"}', {"errno": Errno.ENOSYS}),
        (b'{"net": "connect", "host": "' + b"a" * 5000 + b'"}', _EINVAL),
    ],
    ids=lambda value: value[:60].decode("latin-1") if isinstance(value, bytes) else "",
)
def test_door_requests_get_an_error_answer(echo: int, frame: bytes, answer: dict[str, int]) -> None:
    """Malformed network requests (the issue's port 1e400 first: it used to be an
    OverflowError in the host, a HostError) are answered with an errno."""
    results = _door_guest(echo).call("drive", echo, [base64.b64encode(frame).decode()])
    assert json.loads(base64.b64decode(results[1][1])) == answer


_ANSWERS = st.one_of(
    st.sampled_from(
        [
            b'{"ok": 1}',
            b'{"ok": NaN}',
            b'{"ok": 1e400}',
            b'{"exit": 1e400}',
            b'{"exit": -1}',
            b'{"exit": 18446744073709551616}',
            b'{"error": 1}',
            b'{"error": {"type": [], "message": {}}}',
            b'{"missing": {"name": 1}}',
            b'{"missing": {"name": "f", "available": [1, "g"]}}',
            b'{"oom": true}',
            b'{"oom": true, "error": {"type": "MemoryError"}}',
            b'{"ok": {"$bytes": "not base64!"}}',
            b"[]",
            b"null",
            b"\xff\xfe",
            b"",
            b'{"ok": ' + b"[" * 900 + b"]" * 900 + b"}",
            b'{"ok": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"ok": ' + b'{"a":' * 700 + b"1" + b"}" * 700 + b"}",
        ]
    ),
    st.binary(max_size=64),
    st.builds(lambda f: b'{"ok": ' + f.encode("utf-8", "surrogatepass") + b"}", _FRAGMENTS),
)


@_fuzz_settings(15, share=0.1)
@given(frame=_ANSWERS)
def test_door_answer_frames_are_validated(echo: int, frame: bytes) -> None:
    """A Python guest that replaces its driver's answer with any bytes (not JSON, not an
    envelope, NaN, 1e400, nesting past the recursion limit) gets a value or a GuestError
    (ProtocolError and kin), never a host error."""
    guest = _door_guest(echo)
    expected = (ws.GuestError, ws.FunctionNotFound, ws.GuestExit, ws.MemoryLimitExceeded)
    with contextlib.suppress(*expected):
        guest.call("answer", base64.b64encode(frame).decode())
    assert guest.call("ok") == 42


# --- the JavaScript driver's request queue ----------------------------------------------------

JS_GUEST = """
const realStringify = JSON.stringify;
async function go(queue, url) {
  let once = true;  // the driver's next request queue is the fuzzed text, once
  JSON.stringify = (v, ...rest) => (Array.isArray(v) && once ? ((once = false), queue) : realStringify(v, ...rest));
  try {
    const r = await fetch(url);
    return ["resolved", r.status];
  } catch (e) {
    return ["rejected", String(e)];
  } finally {
    JSON.stringify = realStringify;
  }
}
function ok() { return 42; }
"""


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    with http_server() as server:
        yield server.port


@cache
def _js_guest(port: int) -> ws.WasmSandbox:
    limits = ws.ResourceProfile.STANDARD.limits.replace(
        max_fuel=None, network_timeout=1, connect_timeout=1
    )
    return script_sandbox(
        JS_GUEST,
        "javascript",
        resource_limits=limits,
        timeout_duration=20,
        network_policy=ws.NetworkPolicy(allow=(f"127.0.0.1:{port}",)),
    )


@st.composite
def _queues(draw: st.DrawFn, port: int) -> str:
    """A request queue as the driver would hand it over, every field at its edges."""
    good = {"id": "1", "url": f'"http://127.0.0.1:{port}/hello"', "method": '"GET"'}
    urls = [f'"http://127.0.0.1:{port}/h\\u00e9llo"', '"http://[::1"', '"http://h:99999/"']
    urls += ['"file:///etc/passwd"', '"http://127.0.0.1:1/"', '"http:///"', f'"{"x" * 70000}"']
    values = st.one_of(_FRAGMENTS, st.sampled_from(urls))
    keys = st.sampled_from(["id", "url", "method", "headers", "size", "x"])
    requests = []
    for _ in range(draw(st.integers(0, 3))):
        fields = dict(good)
        fields.update(draw(st.dictionaries(keys, values, max_size=3)))
        if draw(st.booleans()):
            headers = draw(st.dictionaries(st.sampled_from(['"a"', '"\\r\\n"', '"\\u20ac"']),
                                           _FRAGMENTS, max_size=2))  # fmt: skip
            fields["headers"] = "{" + ", ".join(f"{k}: {v}" for k, v in headers.items()) + "}"
        requests.append("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}")
    text = "[" + ", ".join(requests) + "]"
    return draw(st.one_of(st.just(text), _FRAGMENTS, st.just(text[: len(text) // 2])))


@_fuzz_settings(30, share=0.25)
@given(data=st.data())
def test_javascript_request_queue_is_validated(web: int, data: st.DataObject) -> None:
    """A JavaScript guest that replaces ``JSON.stringify`` hands the host any request queue
    (ids, URLs, methods, headers and body sizes of every type and at their edges, deep or
    cut-short JSON): the fetch resolves or rejects, or the call is a GuestError; never a
    host error, and the sandbox answers a normal call afterwards."""
    guest = _js_guest(web)
    queue = data.draw(_queues(web))
    with contextlib.suppress(ws.GuestError):
        guest.call("go", queue, f"http://127.0.0.1:{web}/hello")
    assert guest.call("ok") == 42


# --- what a server answers to a host-made request ---------------------------------------------

_HEADS = [
    b"HTTP/1.0 200 OK\r\nContent-Length: \xb2\r\n\r\nbody",  # "2" in Latin-1 superscript
    b"HTTP/1.0 \xb2\xb2\xb2 OK\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\nbody",
    b"HTTP/1.0 200 OK\r\nContent-Length: -5\r\n\r\nbody",
    b"HTTP/1.0 99999 OK\r\n\r\n",
    b"HTTP/1.0 200\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n" + b"X: y\r\n" * 20000 + b"\r\n",  # a head past 64 KiB
    b"\r\n\r\n",
    b"",
    b"HTTP/1.0 200 OK\r\n\r\n\xff\xfe\xed\xa0\x80",
]


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[int, list[bytes]]]:
    """A server that answers every request with the last bytes of the list, then closes;
    its port and the list."""
    answers = [b""]

    def handle(server: TcpServer, conn: socket.socket) -> None:
        server.recv(conn)
        server.send(conn, answers[-1])

    server = TcpServer(handle)
    try:
        yield server.port, answers
    finally:
        server.stop()


@cache
def _fetcher(port: int) -> ws.WasmSandbox:
    return script_sandbox(
        "async function go(url) { const r = await fetch(url); return [r.status, await r.text()]; }",
        "javascript",
        network_policy=ws.NetworkPolicy(allow=(f"127.0.0.1:{port}",)),
    )


@_fuzz_settings(20, share=0.1)
@given(raw=st.one_of(st.sampled_from(_HEADS), st.binary(max_size=300)))
def test_fetch_survives_any_server_answer(hostile: tuple[int, list[bytes]], raw: bytes) -> None:
    """A server the guest may reach answers anything (superscript digits, 5,000-digit
    lengths, heads past 64 KiB, garbage): fetch resolves or rejects, never a host error."""
    port, answers = hostile
    answers.append(raw)
    with contextlib.suppress(ws.GuestError):
        _fetcher(port).call("go", f"http://127.0.0.1:{port}/")
    answers.append(b"HTTP/1.0 200 OK\r\n\r\nfine")  # and the next request is served
    assert _fetcher(port).call("go", f"http://127.0.0.1:{port}/") == [200, "fine"]

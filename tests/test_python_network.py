"""Python guests reach the network through their ordinary modules (`socket.create_connection`,
`http.client`, `urllib.request`), the host opening each connection after its policy and
limits. Every server is a real one on 127.0.0.1, started and stopped by its test."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from tests.netservers import echo_server, http_server, silent_server, streaming_server


def py(code: str, *patterns: str, **options: Any) -> ws.WasmSandbox:
    """A Python sandbox allowed to reach ``patterns``."""
    builder_options = dict(options)
    if patterns:
        builder_options["network_policy"] = ws.NetworkPolicy(allow=patterns)
    return script_sandbox(code, "python", **builder_options)


CLIENTS = """
import socket, urllib.request, http.client

def raw(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /hello HTTP/1.0\\r\\n\\r\\n")
        return s.makefile("rb").read().split(b"\\r\\n\\r\\n", 1)[1]

def urllib_get(port, path="/hello"):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()

def http_client(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/hello")
    r = c.getresponse()
    return [r.status, r.read()]

def echo(port, message):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(message.encode())
        return s.recv(100)
"""


def test_ordinary_python_clients_work_under_the_policy() -> None:
    """A raw socket, urllib and http.client reach an allowed server from a Python guest, and the
    report counts the request and the bytes."""
    with http_server() as server:
        tools = py(CLIENTS, f"127.0.0.1:{server.port}")
        assert tools.call("raw", server.port) == b"hello"
        assert tools.call("urllib_get", server.port) == b"hello"
        assert tools.call("http_client", server.port) == [200, b"hello"]
        outcome = tools.call_with_detailed_monitoring("urllib_get", server.port)
        report = outcome.resource_report
        assert report.network_requests == 1 and report.network_bytes_received > 100
        assert report.bytes_transferred == report.network_bytes_sent + report.network_bytes_received


def test_default_policy_refuses_python_clients() -> None:
    """Without a policy every Python client is refused (PermissionError, URLError), nothing reaches
    the server, and the refusal is a network security event."""
    with http_server() as server:
        with pytest.raises(ws.GuestError) as info:
            py(CLIENTS).call("raw", server.port)
        assert info.value.type == "PermissionError"
        endpoint = f"127.0.0.1:{server.port}"
        rule = f"not allowed by the network policy: allow '{endpoint}' to permit it"
        assert rule in info.value.guest_message  # the guest's exception names the rule
        with pytest.raises(ws.GuestError, match="URLError"):
            py(CLIENTS).call("urllib_get", server.port)
        assert server.paths == []
        outcome = py(
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {server.port}))\n"
            "except PermissionError as e:\n    print('refused', e.errno)\n"
        ).run()
        assert b"refused" in outcome.stdout
        events = outcome.resource_report.security_events
        assert [(e.kind, e.path, e.detail) for e in events] == [("network", endpoint, rule)]


def test_strict_network_stops_python_with_a_security_violation() -> None:
    """With strict_network, a refused connection stops the Python guest with SecurityViolation
    naming the endpoint."""
    with http_server() as server:
        sandbox = py(CLIENTS, strict_network=True)
        with pytest.raises(ws.SecurityViolation) as info:
            sandbox.call("urllib_get", server.port)
        assert str(info.value) == (
            f"Security violation: Unauthorized network access to '127.0.0.1:{server.port}' "
            f"(not allowed by the network policy: allow '127.0.0.1:{server.port}' to permit it)"
        )


def test_socket_timeout_and_download_cap_reach_python() -> None:
    """A socket timeout set in Python raises TimeoutError on a silent server; max_download_bytes
    cuts a stream at exactly its cap, then EDQUOT."""
    code = (
        "import socket, errno\n"
        "def wait(port):\n"
        "    s = socket.create_connection(('127.0.0.1', port), timeout=0.2)\n"
        "    try:\n"
        "        s.recv(10)\n"
        "    except TimeoutError:\n"
        "        return 'timed out'\n"
        "def drain(port):\n"
        "    s = socket.create_connection(('127.0.0.1', port))\n"
        "    total = 0\n"
        "    try:\n"
        "        while True:\n"
        "            total += len(s.recv(65536))\n"
        "    except OSError as e:\n"
        "        return [total, errno.errorcode[e.errno]]\n"
    )
    with silent_server() as silent:
        start = time.monotonic()
        assert py(code, f"127.0.0.1:{silent.port}").call("wait", silent.port) == "timed out"
        assert time.monotonic() - start < 2.0
    limits = ws.ResourceProfile.STANDARD.limits.replace(max_fuel=None, max_download_bytes=300_000)
    with streaming_server() as stream:
        sandbox = py(code, f"127.0.0.1:{stream.port}", resource_limits=limits)
        assert sandbox.call("drain", stream.port) == [300_000, "EDQUOT"]


def test_network_timeout_is_a_limit_but_the_guests_own_timeout_is_not() -> None:
    """A timeout the guest sets on its socket (shorter than network_timeout) is its own:
    TimeoutError, no limit recorded, even in strict mode. network_timeout itself, in strict
    mode, stops the guest with NetworkLimitExceeded and is recorded in the report."""
    code = (
        "import socket\n"
        "def wait(port, timeout):\n"
        "    s = socket.create_connection(('127.0.0.1', port))\n"
        "    s.settimeout(timeout)\n"
        "    try:\n"
        "        s.recv(10)\n"
        "    except TimeoutError:\n"
        "        return 'timed out'\n"
    )
    limits = ws.ResourceProfile.STANDARD.limits.replace(max_fuel=None, network_timeout=0.5)
    with silent_server() as silent:
        sandbox = py(code, silent.endpoint, resource_limits=limits, strict_network=True)
        outcome = sandbox.call_with_detailed_monitoring("wait", silent.port, 0.1)
        assert outcome.value == "timed out"
        assert outcome.resource_report.network_limits_hit == {}
        with pytest.raises(ws.NetworkLimitExceeded) as info:
            sandbox.call("wait", silent.port, None)
    assert (info.value.limit, info.value.cap) == ("network_timeout", 500)
    assert info.value.report.network_limits_hit == {"network_timeout": (info.value.attempted, 500)}


def test_the_execution_timeout_interrupts_a_blocked_python_read() -> None:
    """The execution timeout stops a Python guest blocked reading from a silent server, on time."""
    code = "import socket\ndef block(port):\n    socket.create_connection(('127.0.0.1', port)).recv(1)\n"
    with silent_server() as silent:
        sandbox = py(code, f"127.0.0.1:{silent.port}", timeout_duration=timedelta(seconds=0.5))
        start = time.monotonic()
        with pytest.raises(ws.ExecutionTimeout):
            sandbox.call("block", silent.port)
        assert time.monotonic() - start < 0.5 * 1.1 + 0.15


def test_python_sessions_keep_connections_between_statements() -> None:
    """A connection opened in one session statement is still open in the next ones."""
    with echo_server() as server, py(CLIENTS, f"127.0.0.1:{server.port}").session() as session:
        session.exec(f"conn = socket.create_connection(('127.0.0.1', {server.port}))")
        session.exec("conn.sendall(b'ping')")
        assert session.eval("conn.recv(4)") == b"ping"
        session.exec("conn.close()")


def test_plain_socket_objects_and_unsupported_kinds() -> None:
    """socket.socket() connects, sends and receives; connect_ex to a port outside the policy answers
    EACCES; UDP and listening sockets are refused as unsupported."""
    code = (
        "import socket, errno\n"
        "def plain(port):\n"
        "    s = socket.socket()\n"
        "    s.settimeout(5)\n"
        "    s.connect(('127.0.0.1', port))\n"
        "    s.sendall(b'ping')\n"
        "    data = s.recv(4)\n"
        "    s.close()\n"
        "    return [data, s.fileno()]\n"
        "def udp():\n"
        "    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "def refused(port):\n"
        "    return errno.errorcode[socket.socket().connect_ex(('127.0.0.1', port))]\n"
        "def server():\n"
        "    socket.socket().bind(('127.0.0.1', 0))\n"
    )
    with echo_server() as server:
        tools = py(code, f"127.0.0.1:{server.port}")
        assert tools.call("plain", server.port) == [b"ping", -1]  # closed
        assert tools.call("refused", server.port + 1 if server.port < 65535 else 1) == "EACCES"
        with pytest.raises(ws.GuestError, match="TCP client connections only"):
            tools.call("udp")
        with pytest.raises(ws.GuestError, match="TCP client connections only"):
            tools.call("server")


def test_socket_options_reach_the_host_connection() -> None:
    """TCP_NODELAY set by guest code (http.client sets it) is applied to the host socket;
    an option the sandbox cannot apply is an error, not a silent no-op."""
    code = (
        "import socket, ssl\n"
        "def nodelay(port):\n"
        "    s = socket.create_connection(('127.0.0.1', port))\n"
        "    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
        "    s.sendall(b'x')\n"
        "    return s.recv(1)\n"
        "def other(port):\n"
        "    s = socket.create_connection(('127.0.0.1', port))\n"
        "    s.setsockopt(socket.SOL_SOCKET, 12345, 4096)\n"
        "def ciphers():\n"
        "    ssl.create_default_context().set_ciphers('NULL')\n"
    )
    with echo_server() as server:
        tools = py(code, f"127.0.0.1:{server.port}")
        assert tools.call("nodelay", server.port) == b"x"
        with pytest.raises(ws.GuestError, match="socket option not supported"):
            tools.call("other", server.port)
        with pytest.raises(ws.GuestError, match="NotImplementedError"):
            tools.call("ciphers")

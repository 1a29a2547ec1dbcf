"""Host-side TLS: the host speaks TLS for the guest (verifying the server against the policy's
trust store) and the guest reads and writes plaintext. Against a real HTTPS server on
127.0.0.1 with a self-signed certificate made by openssl for the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.conftest import script_sandbox
from tests.netservers import HttpsServer, http_server, https_server

GET = (
    "import urllib.request, ssl\n"
    "def get(url):\n"
    "    return urllib.request.urlopen(url, timeout=5).read()\n"
    "def unverified(url):\n"
    "    return urllib.request.urlopen(url, context=ssl._create_unverified_context()).read()\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpsServer]:
    with https_server(tmp_path) as running:
        yield running


def test_python_https_through_host_tls(server: HttpsServer) -> None:
    """A Python guest fetches over HTTPS, the host speaking TLS with the policy's CA; asking not to
    verify certificates is refused."""
    policy = ws.NetworkPolicy(allow=(f"localhost:{server.port}",), ca_file=server.ca_file)
    tools = script_sandbox(GET, "python", network_policy=policy)
    assert tools.call("get", f"https://localhost:{server.port}/hello") == b"hello"
    with pytest.raises(ws.GuestError, match="always verifies"):
        tools.call("unverified", f"https://localhost:{server.port}/hello")


def test_an_untrusted_certificate_is_refused_and_recorded(server: HttpsServer) -> None:
    """A server certificate the system store does not trust aborts the connection, recorded as a
    network security event."""
    policy = ws.NetworkPolicy(allow=(f"localhost:{server.port}",))  # the system store only
    tools = script_sandbox(GET, "python", network_policy=policy)
    with pytest.raises(ws.GuestError, match="Connection aborted") as info:
        tools.call("get", f"https://localhost:{server.port}/hello")
    assert info.value.report is not None
    events = info.value.report.security_events
    assert [e.kind for e in events] == ["network"]
    assert "TLS certificate refused" in events[0].detail


def test_c_guest_tls_connect_with_the_shipped_header(
    server: HttpsServer, c_guest: Callable[[str], Path]
) -> None:
    """A C guest using the shipped header's tls_connect gets the page and the report counts it;
    against an untrusted certificate it gets ECONNABORTED and a security event."""
    wasm = c_guest("net_tls")
    policy = ws.NetworkPolicy(allow=(f"localhost:{server.port}",), ca_file=server.ca_file)
    sandbox = ws.WasmSandbox.builder().source(wasm).network_policy(policy).build()
    result = sandbox.run(args=["tls", "localhost", str(server.port), "/hello"])
    assert result.stdout == b"hello\n"
    report = result.resource_report
    assert report.network_requests == 1 and report.network_bytes_received > 0
    untrusted = ws.WasmSandbox.builder().source(wasm).allow_network(f"localhost:{server.port}")
    refused = untrusted.build().run(args=["tls", "localhost", str(server.port), "/hello"])
    assert refused.stdout == b"errno ECONNABORTED\n"
    events = refused.resource_report.security_events
    assert len(events) == 1 and "TLS certificate refused" in events[0].detail


def test_require_tls_refuses_plain_connections(
    server: HttpsServer, c_guest: Callable[[str], Path]
) -> None:
    """With require_tls, a plain connection is refused (EACCES, a security event saying TLS is
    required, nothing reaches the server) while a TLS one works."""
    wasm = c_guest("net_tls")
    with http_server() as plain:
        policy = ws.NetworkPolicy(
            allow=(f"localhost:{server.port}", f"localhost:{plain.port}"),
            ca_file=server.ca_file,
            require_tls=True,
        )
        sandbox = ws.WasmSandbox.builder().source(wasm).network_policy(policy).build()
        refused = sandbox.run(args=["tcp", "localhost", str(plain.port), "/hello"])
        assert refused.stdout == b"errno EACCES\n"
        assert "requires TLS" in refused.resource_report.security_events[0].detail
        assert plain.paths == []
        ok = sandbox.run(args=["tls", "localhost", str(server.port), "/hello"])
        assert ok.stdout == b"hello\n"


def test_policy_checks_its_ca_file(tmp_path: Path) -> None:
    """A NetworkPolicy refuses a ca_file that is not a file, and a require_tls that is not a
    bool."""
    with pytest.raises(ws.ConfigurationError, match="not a file"):
        ws.NetworkPolicy(allow=("localhost:443",), ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(TypeError):
        ws.NetworkPolicy(allow=("localhost:443",), require_tls="yes")  # type: ignore[arg-type]

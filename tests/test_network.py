"""The network layer, driven by a real C guest (tests/guests/net_client.c) against real servers
on 127.0.0.1 (tests/netservers.py), each started and stopped inside its test: deny by default,
NetworkPolicy patterns and the private-address rule, strict mode, every network limit with its
errno (or NetworkLimitExceeded), timeouts, monitoring, the report, descriptor hygiene, and the
raw ``wasm_sandbox.tcp_connect`` import called with garbage from WAT."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import resource
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.netservers import (
    TcpServer,
    backlogged_listener,
    closed_port,
    echo_server,
    http_server,
    open_fd_count,
    silent_server,
    sink_server,
    streaming_server,
    wait_until,
)

EACCES, EFAULT, EINVAL = 2, 21, 28  # WASI errno values, as tcp_connect returns them

CGuest = Callable[[str], Path]


def _client(
    c_guest: CGuest,
    *allow: str,
    policy: ws.NetworkPolicy | None = None,
    strict: bool = False,
    timeout: float | None = None,
    **limits: object,
) -> ws.WasmSandbox:
    """The net_client guest with a policy (``allow`` patterns on top of ``policy``), strict
    mode, a wall-clock timeout and network limits over the STANDARD profile."""
    builder = ws.WasmSandbox.builder().source(c_guest("net_client"))
    if policy is not None:
        builder.network_policy(policy)
    if allow:
        builder.allow_network(*allow)
    if limits:
        builder.resource_limits(ws.ResourceProfile.STANDARD.limits.replace(**limits))
    if timeout is not None:
        builder.timeout_duration(timeout)
    builder.strict_network(strict)
    return builder.build()


def _run(sb: ws.WasmSandbox, *args: object) -> ws.ExecutionResult:
    return sb.run([str(a) for a in args])


def _finished(server: TcpServer, connections: int) -> bool:
    """Wait until the server has accepted ``connections`` and all of them have ended."""
    return server.stats.wait_for(lambda s: s.connections == connections and s.active == 0)


def _settle() -> None:
    """Give a connection that should not exist time to reach the server's accept loop."""
    time.sleep(0.1)


def _loopback_alias() -> str:
    """A name other than ``localhost`` that resolves to loopback addresses only."""
    for name in ("localhost.localdomain", socket.gethostname()):
        if name.lower() == "localhost":
            continue
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        addresses = {str(info[4][0]) for info in infos}
        if addresses and all(a.startswith("127.") or a == "::1" for a in addresses):
            return name
    pytest.skip("no name besides 'localhost' resolves to loopback only on this machine")


def _dns_fails_fast(name: str) -> None:
    """Skip unless resolving ``name`` fails, and quickly (no resolver to wait for)."""
    started = time.monotonic()
    try:
        socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except socket.gaierror:
        if time.monotonic() - started < 2:
            return
        pytest.skip(f"resolving {name!r} takes {time.monotonic() - started:.1f} s here")
    pytest.skip(f"{name!r} resolves on this machine")


# --- NetworkPolicy values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "example.com",  # no port
        ":80",  # no host
        "example.com:",  # empty port
        "example.com:http",
        "example.com:0",
        "example.com:65536",
        "example.com:-1",
        "example.com:100-50",  # reversed range
        "example.com:1-",
        "example.com:1-70000",
        "example.com:80:81",
        "::1:80",  # IPv6 without brackets
        "[::1:80",
        "[not-an-ip]:80",
        "*example.com:443",  # wildcard must be a whole label
        "a.*.example.com:443",
        "*.:443",
        "exa mple.com:80",
        "http://example.com:80",
        "example.com/path:80",
    ],
)
def test_invalid_patterns_are_configuration_errors(pattern: str) -> None:
    """A pattern that is not HOST:PORT (PORT a number, a-b or *) is refused at construction."""
    with pytest.raises(ws.ConfigurationError):
        ws.NetworkPolicy(allow=(pattern,))


def test_valid_patterns_are_accepted_and_the_policy_is_frozen() -> None:
    """Every form the specification names builds; the value cannot be changed afterwards."""
    patterns = (
        "127.0.0.1:8080",
        "*.example.com:443",
        "host:8000-8100",
        "host:*",
        "[::1]:80",
        "Example.COM:1",
        "localhost:65535",
    )
    policy = ws.NetworkPolicy(allow=patterns, allow_private=False)
    assert policy.allow_private is False
    assert ws.NetworkPolicy(allow=()).allow_private is False  # deny by default
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.allow_private = True  # type: ignore[misc]


def test_allow_network_rejects_an_invalid_pattern(c_guest: CGuest) -> None:
    """The builder shorthand validates like NetworkPolicy (at the call or at build)."""
    with pytest.raises(ws.ConfigurationError):
        ws.WasmSandbox.builder().source(c_guest("net_client")).allow_network("nope").build()


# --- policy enforcement ------------------------------------------------------------------------


def test_no_policy_refuses_every_connection_and_reports_it(c_guest: CGuest) -> None:
    """Deny by default: EACCES before any packet leaves, counted as a request and a refusal."""
    with echo_server() as server:
        result = _run(_client(c_guest), "connect", server.host, server.port)
        assert result.stdout == b"errno EACCES\n"
        _settle()
        assert server.stats.connections == 0
    report = result.resource_report
    assert report.network_requests == 1
    assert report.network_refusals == 1
    assert (report.network_bytes_sent, report.network_bytes_received) == (0, 0)
    assert report.bytes_transferred == 0
    [event] = report.security_events
    assert (event.kind, event.path) == ("network", f"127.0.0.1:{server.port}")
    assert event.detail
    assert event == ws.SecurityEvent(kind="network", path=event.path, detail=event.detail)


def test_allowed_loopback_echo_works_and_is_counted(c_guest: CGuest) -> None:
    """An IP-literal pattern allows loopback; bytes each way are in the report."""
    with echo_server() as server:
        result = _run(_client(c_guest, server.endpoint), "echo", server.host, server.port, "hello")
        assert result.stdout == b"echo: hello\n"
        assert _finished(server, 1)
        assert server.stats.per_connection_received == [5]
    report = result.resource_report
    assert (report.network_bytes_sent, report.network_bytes_received) == (5, 5)
    assert report.bytes_transferred == 10
    assert (report.network_requests, report.network_refusals) == (1, 0)
    assert report.security_events == ()


def test_verbose_log_message_states_the_network_bytes(
    c_guest: CGuest, caplog: pytest.LogCaptureFixture
) -> None:
    """verbose_resource_logging's message says how many bytes went each way."""
    with echo_server() as server:
        builder = ws.WasmSandbox.builder().source(c_guest("net_client"))
        sb = builder.allow_network(server.endpoint).verbose_resource_logging(True).build()
        with caplog.at_level("INFO", logger="wasm_sandbox"):
            assert _run(sb, "echo", server.host, server.port, "hello").exit_code == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "wasm_sandbox"]
    assert len(messages) == 1
    assert messages[0].startswith("execution finished: ok in ")
    assert messages[0].endswith("network 5 B sent / 5 B received")


def test_send_recv_and_shutdown_work_on_the_descriptor(c_guest: CGuest) -> None:
    """sock_send / sock_recv / sock_shutdown serve the connection like fd_write / fd_read."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint)
        result = _run(sb, "sendrecv", server.host, server.port, "half-closed")
        assert result.stdout == b"recv: half-closed\n"


def test_http_get_through_the_sandbox(c_guest: CGuest) -> None:
    """A plain HTTP/1.1 exchange with http.server works end to end."""
    with http_server() as server:
        sb = _client(c_guest, f"127.0.0.1:{server.port}")
        result = _run(sb, "http", server.host, server.port, "/hello")
        assert result.stdout == b"status 200 body hello\n"
        assert server.paths == ["/hello"]


@pytest.mark.parametrize(
    ("pattern", "guest_host"),
    [("localhost:{port}", "localhost"), ("LocalHost:{port}", "LOCALHOST")],
    ids=["plain", "case-insensitive"],
)
def test_localhost_pattern_allows_loopback(c_guest: CGuest, pattern: str, guest_host: str) -> None:
    """``localhost`` may reach loopback without allow_private; names match without case."""
    with echo_server() as server:
        sb = _client(c_guest, pattern.format(port=server.port))
        assert _run(sb, "echo", guest_host, server.port, "hi").stdout == b"echo: hi\n"


def test_name_resolving_to_loopback_is_refused_unless_allow_private(c_guest: CGuest) -> None:
    """A hostname pattern other than localhost does not grant loopback: the address actually
    connected to is checked. allow_private lifts that."""
    alias = _loopback_alias()
    with echo_server() as server:
        pattern = f"{alias}:{server.port}"
        refused = _run(_client(c_guest, pattern), "connect", alias, server.port)
        assert refused.stdout == b"errno EACCES\n"
        assert [(e.kind, e.path) for e in refused.resource_report.security_events] == [
            ("network", pattern)
        ]
        _settle()
        assert server.stats.connections == 0
        policy = ws.NetworkPolicy(allow=(pattern,), allow_private=True)
        allowed = _run(_client(c_guest, policy=policy), "echo", alias, server.port, "ok")
        assert allowed.stdout == b"echo: ok\n"


def test_name_resolving_to_loopback_in_strict_mode_is_a_violation(c_guest: CGuest) -> None:
    """The private-address refusal is a policy refusal: strict mode raises for it too."""
    alias = _loopback_alias()
    with echo_server() as server:
        sb = _client(c_guest, f"{alias}:{server.port}", strict=True)
        with pytest.raises(ws.SecurityViolation) as info:
            _run(sb, "connect", alias, server.port)
        assert str(info.value) == (
            f"Security violation: Unauthorized network access to '{alias}:{server.port}' "
            "(resolves only to private, loopback or link-local addresses, which the network "
            "policy refuses: allow the address itself, or set allow_private=True, to permit it)"
        )


@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0"])
def test_numeric_spellings_of_loopback_are_not_ip_literals(c_guest: CGuest, spelling: str) -> None:
    """The resolver reads '127.1', '2130706433', '0x7f000001', '0177.0.0.1' and '0' as
    127.0.0.1 / 0.0.0.0: such a pattern is either rejected outright or treated as a name, whose
    special address is then refused (never a way around the private-address rule)."""
    with echo_server() as server:
        pattern = f"{spelling}:{server.port}"
        try:
            sb = _client(c_guest, pattern)
        except ws.ConfigurationError:
            return
        result = _run(sb, "connect", spelling, server.port)
        assert result.stdout in (b"errno EACCES\n", b"errno EHOSTUNREACH\n")
        _settle()
        assert server.stats.connections == 0


def test_allow_private_alone_allows_nothing(c_guest: CGuest) -> None:
    """allow_private only widens what matching patterns may reach: no pattern, no access."""
    with echo_server() as server:
        sb = _client(c_guest, policy=ws.NetworkPolicy(allow=(), allow_private=True))
        assert _run(sb, "connect", server.host, server.port).stdout == b"errno EACCES\n"


@pytest.mark.parametrize(
    ("guest_host", "port_offset", "expected"),
    [
        ("a.example.invalid", 0, "EHOSTUNREACH"),  # matched; then the name does not resolve
        ("A.Example.INVALID", 0, "EHOSTUNREACH"),
        ("example.invalid", 0, "EACCES"),  # *.suffix is for subdomains only
        ("badexample.invalid", 0, "EACCES"),  # a suffix of the text, not of the labels
        ("a.example.invalid.evil", 0, "EACCES"),
        ("a.example.invalid", 1, "EACCES"),
    ],
)
def test_wildcard_pattern_matches_subdomains_only(
    c_guest: CGuest, guest_host: str, port_offset: int, expected: str
) -> None:
    """``*.example.invalid`` is checked before any lookup: a refused name gets EACCES, an
    allowed one goes on to DNS (which fails for .invalid: EHOSTUNREACH)."""
    _dns_fails_fast("a.example.invalid")
    sb = _client(c_guest, "*.example.invalid:4000")
    result = _run(sb, "connect", guest_host, 4000 + port_offset)
    assert result.stdout == f"errno {expected}\n".encode()
    assert result.resource_report.network_refusals == int(expected == "EACCES")


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        (("127.0.0.1:{port}",), True),
        (("127.0.0.1:*",), True),
        (("127.0.0.1:{below}-{above}",), True),
        (("127.0.0.1:{port}-{port}",), True),
        (("127.0.0.1:1", "127.0.0.1:{port}"), True),  # any pattern may match
        (("127.0.0.1:{above}",), False),
        (("127.0.0.1:{above}-{far}",), False),
        (("127.0.0.2:{port}",), False),
        (("*.example.com:{port}",), False),
    ],
)
def test_port_patterns(c_guest: CGuest, patterns: tuple[str, ...], allowed: bool) -> None:
    """Exact ports, ranges and ``*`` match the port; the address must match too."""
    with echo_server() as server:
        p = server.port
        allow = [pat.format(port=p, below=p - 1, above=p + 1, far=p + 10) for pat in patterns]
        result = _run(_client(c_guest, *allow), "connect", server.host, p)
        assert result.stdout == (b"ok\n" if allowed else b"errno EACCES\n")


def test_allow_network_extends_the_policy(c_guest: CGuest) -> None:
    """``allow_network`` adds to a policy set before and to its own earlier calls."""
    with echo_server() as server:
        builder = ws.WasmSandbox.builder().source(c_guest("net_client"))
        builder.network_policy(ws.NetworkPolicy(allow=("127.0.0.1:1",)))
        builder.allow_network("127.0.0.1:2").allow_network(server.endpoint)
        result = _run(builder.build(), "connect", server.host, server.port)
        assert result.stdout == b"ok\n"


def test_ipv6_literal_pattern(c_guest: CGuest) -> None:
    """A bracketed IPv6 literal names ::1 itself, so loopback is allowed."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(echo_server("::1"))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        sb = _client(c_guest, f"[::1]:{server.port}")
        assert _run(sb, "echo", "::1", server.port, "six").stdout == b"echo: six\n"


def test_unresolvable_name_is_ehostunreach(c_guest: CGuest) -> None:
    """An allowed name that does not resolve gives EHOSTUNREACH (not a policy refusal)."""
    _dns_fails_fast("no-such-host.invalid")
    result = _run(
        _client(c_guest, "no-such-host.invalid:80"), "connect", "no-such-host.invalid", 80
    )
    assert result.stdout == b"errno EHOSTUNREACH\n"
    assert result.resource_report.security_events == ()


def test_peer_refusal_is_econnrefused(c_guest: CGuest) -> None:
    """An allowed address where nothing listens gives ECONNREFUSED, not a policy refusal."""
    host, port = closed_port()
    result = _run(_client(c_guest, f"{host}:{port}"), "connect", host, port)
    assert result.stdout == b"errno ECONNREFUSED\n"
    assert result.resource_report.network_refusals == 0
    assert result.resource_report.security_events == ()


# --- strict mode -------------------------------------------------------------------------------


def test_strict_mode_refusal_is_a_security_violation(c_guest: CGuest) -> None:
    """The exact message names the endpoint as the guest asked for it."""
    assert issubclass(ws.SecurityViolation, ws.ExecutionError)
    with echo_server() as server:
        sb = _client(c_guest, "127.0.0.1:1", strict=True)
        with pytest.raises(ws.SecurityViolation) as info:
            _run(sb, "connect", "127.0.0.1", server.port)
        endpoint = f"127.0.0.1:{server.port}"
        assert str(info.value) == (
            f"Security violation: Unauthorized network access to '{endpoint}' "
            f"(not allowed by the network policy: allow '{endpoint}' to permit it)"
        )
        assert (
            info.value.detail
            == f"not allowed by the network policy: allow '{endpoint}' to permit it"
        )
        events = info.value.report.security_events
        assert [e.detail for e in events] == [info.value.detail]  # the host-side record too
        _settle()
        assert server.stats.connections == 0


def test_strict_mode_lets_allowed_connections_through(c_guest: CGuest) -> None:
    """Strict mode changes what a refusal does, not what is allowed."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint, strict=True)
        assert _run(sb, "echo", server.host, server.port, "x").stdout == b"echo: x\n"


# --- limits ------------------------------------------------------------------------------------


def test_max_connections_gives_enfile_and_open_ones_are_closed_at_the_end(c_guest: CGuest) -> None:
    """The third concurrent connection fails; the two the guest never closed are closed by the
    host when the run ends."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint, max_connections=2)
        result = _run(sb, "multi", server.host, server.port, 5)
        assert result.stdout == b"opened 2 then errno ENFILE\n"
        assert _finished(server, 2), f"left open: {server.stats}"


@pytest.mark.parametrize(
    ("limits", "args"),
    [({"max_connections": 1}, ["multi", 3]), ({"max_requests_per_second": 2}, ["burst", 10])],
    ids=["connections", "rate"],
)
def test_every_counted_refusal_is_a_security_event(
    c_guest: CGuest, limits: dict[str, Any], args: list[object]
) -> None:
    """The report's two views of refusals agree: each one network_refusals counts is also a
    'network' security event (whether limit refusals count as refusals is the
    implementation's choice; counting them in one place only is not)."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint, **limits)
        report = _run(sb, args[0], server.host, server.port, *args[1:]).resource_report
    events = [e for e in report.security_events if e.kind == "network"]
    assert report.network_refusals == len(events), (report.network_refusals, events)


def test_max_connections_counts_concurrent_connections_only(c_guest: CGuest) -> None:
    """Closing a connection frees its slot."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint, max_connections=1)
        assert _run(sb, "burst", server.host, server.port, 6).stdout == b"connected 6\n"


def test_rate_limit_gives_eagain_after_the_burst(c_guest: CGuest) -> None:
    """A token bucket with burst = rate: a rapid series of connects gets EAGAIN after ~rate
    of them (one more may get through if a token refilled meanwhile)."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint, max_requests_per_second=4)
        result = _run(sb, "burst", server.host, server.port, 20)
        assert re.fullmatch(rb"connected [45] then errno EAGAIN\n", result.stdout), result.stdout
        assert result.resource_report.network_requests >= 5


@pytest.mark.parametrize("io", ["write", "send", "writev"])
def test_upload_cap_cuts_the_write_then_edquot(c_guest: CGuest, io: str) -> None:
    """The write that crosses max_upload_bytes is cut to what remains; the next is EDQUOT,
    whichever call sends (fd_write, sock_send, several iovecs). The cap is per execution."""
    with sink_server() as server:
        sb = _client(c_guest, server.endpoint, max_upload_bytes=2500)
        for _ in range(2):
            result = _run(sb, "upload", server.host, server.port, 10_000, 1000, io)
            assert result.stdout == b"sent 2500 then errno EDQUOT\n"
        assert server.stats.wait_for(lambda s: len(s.per_connection_received) == 2)
        assert server.stats.per_connection_received == [2500, 2500]
    report = result.resource_report
    assert (report.network_bytes_sent, report.network_bytes_received) == (2500, 0)
    assert report.bytes_transferred == 2500


@pytest.mark.parametrize("io", ["read", "recv", "readv"])
def test_download_cap_stops_reads_at_the_cap_then_edquot(c_guest: CGuest, io: str) -> None:
    """Reads deliver data up to max_download_bytes exactly, then EDQUOT, whichever call
    receives (fd_read, sock_recv, several iovecs)."""
    with streaming_server() as server:
        sb = _client(c_guest, server.endpoint, max_download_bytes=10_000)
        result = _run(sb, "download", server.host, server.port, 1_000_000, io)
        assert result.stdout == b"received 10000 then errno EDQUOT\n"
        assert result.resource_report.network_bytes_received == 10_000
        assert result.resource_report.network_bytes_sent == 0


@pytest.mark.parametrize(
    ("server_kind", "args", "limits", "limit", "cap", "conns"),
    [
        ("echo", ["multi", 5], {"max_connections": 2}, "max_connections", 2, 2),
        ("echo", ["burst", 50], {"max_requests_per_second": 3}, "max_requests_per_second", 3, 3),
        ("sink", ["upload", 10_000, 2000], {"max_upload_bytes": 1000}, "max_upload_bytes", 1000, 1),
        (
            "stream",
            ["download", 1_000_000],
            {"max_download_bytes": 5000},
            "max_download_bytes",
            5000,
            1,
        ),
    ],
    ids=["connections", "rate", "upload", "download"],
)
def test_strict_mode_limit_is_network_limit_exceeded(
    c_guest: CGuest,
    server_kind: str,
    args: list[object],
    limits: dict[str, Any],
    limit: str,
    cap: int,
    conns: int,
) -> None:
    """In strict mode a network limit stops the guest with NetworkLimitExceeded naming it."""
    assert issubclass(ws.NetworkLimitExceeded, ws.ResourceLimitExceeded)
    assert issubclass(ws.NetworkLimitExceeded, ws.ExecutionError)
    servers = {"echo": echo_server, "sink": sink_server, "stream": streaming_server}
    with servers[server_kind]() as server:
        sb = _client(c_guest, server.endpoint, strict=True, **limits)
        with pytest.raises(ws.NetworkLimitExceeded) as info:
            _run(sb, args[0], server.host, server.port, *args[1:])
        error = info.value
        assert (error.limit, error.cap) == (limit, cap)
        assert error.attempted > cap
        assert str(error) == (
            f"Network limit exceeded: {limit} (attempted {error.attempted}, limit {cap})"
        )
        assert _finished(server, conns), f"left open: {server.stats}"
        if server_kind == "sink":
            assert sum(server.stats.per_connection_received) <= cap


def _timeout_hit(report: ws.ResourceReport, limit: str, cap_ms: int) -> None:
    """The report records ``limit`` as hit: (milliseconds waited, the limit in milliseconds)."""
    assert set(report.network_limits_hit) == {limit}
    waited, cap = report.network_limits_hit[limit]
    assert cap == cap_ms
    assert cap_ms <= waited <= cap_ms + 1500, waited


def test_network_timeout_on_a_read(c_guest: CGuest) -> None:
    """A read from a peer that never sends fails with ETIMEDOUT after network_timeout, and
    the report records the limit as hit."""
    with silent_server() as server:
        sb = _client(c_guest, server.endpoint, network_timeout=0.5)
        result = _run(sb, "read", server.host, server.port)
        match = re.fullmatch(rb"read -1 errno ETIMEDOUT after (\d+) ms\n", result.stdout)
        assert match, result.stdout
        assert 450 <= int(match[1]) <= 1500
        _timeout_hit(result.resource_report, "network_timeout", 500)


def test_network_timeout_on_a_write(c_guest: CGuest) -> None:
    """Writes to a peer that never reads fill the buffers, then wait: ETIMEDOUT."""
    with silent_server() as server:
        sb = _client(c_guest, server.endpoint, network_timeout=0.3)
        started = time.monotonic()
        result = _run(sb, "upload", server.host, server.port, 1 << 30, 65536)
        elapsed = time.monotonic() - started
        match = re.fullmatch(rb"sent (\d+) then errno ETIMEDOUT\n", result.stdout)
        assert match, result.stdout
        assert 0 < int(match[1]) < 1 << 30
        assert elapsed < 8, elapsed
        _timeout_hit(result.resource_report, "network_timeout", 300)


def test_connect_timeout(c_guest: CGuest) -> None:
    """A connect that gets no answer (a full backlog) fails with ETIMEDOUT after
    connect_timeout, and the report records the limit as hit."""
    with backlogged_listener() as (host, port):
        sb = _client(c_guest, f"{host}:{port}", connect_timeout=0.5)
        started = time.monotonic()
        result = _run(sb, "connect", host, port)
        elapsed = time.monotonic() - started
        assert result.stdout == b"errno ETIMEDOUT\n"
        assert 0.45 <= elapsed <= 1.5, elapsed
        _timeout_hit(result.resource_report, "connect_timeout", 500)


@pytest.mark.parametrize(
    ("mode", "limit", "seconds"),
    [
        ("read", "network_timeout", 0.4),
        ("upload", "network_timeout", 0.3),
        ("connect", "connect_timeout", 0.4),
    ],
    ids=["read", "write", "connect"],
)
def test_strict_mode_timeouts_are_network_limit_exceeded(
    c_guest: CGuest, mode: str, limit: str, seconds: float
) -> None:
    """In strict mode, network_timeout (a read from a silent peer, a write to a peer that
    never reads) and connect_timeout (a full backlog) stop the guest with
    NetworkLimitExceeded naming the limit, in milliseconds, instead of giving it ETIMEDOUT."""
    with ExitStack() as stack:
        if mode == "connect":
            host, port = stack.enter_context(backlogged_listener())
        else:
            server = stack.enter_context(silent_server())
            host, port = server.host, server.port
        args = [1 << 30, 65536] if mode == "upload" else []
        limits: dict[str, Any] = {limit: seconds}
        sb = _client(c_guest, f"{host}:{port}", strict=True, **limits)
        started = time.monotonic()
        with pytest.raises(ws.NetworkLimitExceeded) as info:
            _run(sb, mode, host, port, *args)
        elapsed = time.monotonic() - started
    error, cap_ms = info.value, round(seconds * 1000)
    assert (error.limit, error.cap) == (limit, cap_ms)
    assert cap_ms <= error.attempted <= elapsed * 1000 + 1
    assert str(error) == (
        f"Network limit exceeded: {limit} (waited {error.attempted} ms, limit {cap_ms} ms)"
    )
    assert error.stdout == b""  # the guest never saw ETIMEDOUT
    _timeout_hit(error.report, limit, cap_ms)
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("wait", ["read", "poll", "connect"])
def test_execution_timeout_interrupts_a_blocked_network_wait(c_guest: CGuest, wait: str) -> None:
    """With no network timeouts, the wall-clock deadline still ends a blocked read, poll or
    connect on time."""
    timeout = 0.5
    with ExitStack() as stack:
        if wait == "connect":
            target = stack.enter_context(backlogged_listener())
        else:
            server = stack.enter_context(silent_server())
            target = (server.host, server.port)
        args = ["poll", *target, -1] if wait == "poll" else [wait, *target]
        sb = _client(c_guest, f"{target[0]}:{target[1]}", timeout=timeout)
        started = time.monotonic()
        with pytest.raises(ws.ExecutionTimeout):
            _run(sb, *args)
        elapsed = time.monotonic() - started
        assert timeout <= elapsed <= timeout * 1.1 + 0.1, elapsed


def test_execution_timeout_interrupts_a_slow_name_lookup(
    c_guest: CGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving the guest's host name is a blocking wait too: a resolver that takes 3 s does
    not keep the guest past its 0.5 s deadline."""
    real = socket.getaddrinfo

    def slow_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        if args and args[0] == "slow.example.com":
            time.sleep(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    sb = _client(c_guest, "slow.example.com:80", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout):
        _run(sb, "connect", "slow.example.com", 80)
    elapsed = time.monotonic() - started
    assert elapsed <= 0.5 * 1.1 + 0.1, elapsed


# --- poll --------------------------------------------------------------------------------------


def test_poll_sees_a_readable_socket(c_guest: CGuest) -> None:
    """poll: a fresh connection is writable; once the echo comes back it is readable."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint)
        result = _run(sb, "poll", server.host, server.port, 5000, "ping")
        lines = result.stdout.decode().splitlines()
        assert lines[0] == "writable 1 POLLOUT"
        assert re.fullmatch(r"poll 1 revents IN after \d+ ms", lines[1]), lines
        assert lines[2:] == ["read: ping"]


def test_poll_times_out_on_a_silent_socket(c_guest: CGuest) -> None:
    """poll with a timeout on a socket that never becomes readable returns 0 on time."""
    with silent_server() as server:
        sb = _client(c_guest, server.endpoint)
        result = _run(sb, "poll", server.host, server.port, 300)
        lines = result.stdout.decode().splitlines()
        assert lines[0] == "writable 1 POLLOUT"
        match = re.fullmatch(r"poll 0 revents after (\d+) ms", lines[1])
        assert match, lines
        assert 280 <= int(match[1]) <= 1300


# --- monitoring --------------------------------------------------------------------------------


def _stats_tuple(stats: ws.NetworkStats) -> tuple[int, int, int, int, int]:
    return (
        stats.bytes_sent,
        stats.bytes_received,
        stats.active_connections,
        stats.requests,
        stats.refusals,
    )


def test_callback_sees_counters_grow_and_connections_close(c_guest: CGuest) -> None:
    """Each change is reported: bytes only grow, one connection opens and closes again."""
    seen: list[tuple[int, int, int, int, int]] = []
    with echo_server() as server:
        builder = ws.WasmSandbox.builder().source(c_guest("net_client"))
        builder.allow_network(server.endpoint).enable_network_monitoring(True)
        builder.network_callback(lambda stats: seen.append(_stats_tuple(stats)))
        result = _run(builder.build(), "echo", server.host, server.port, "hello")
        assert result.stdout == b"echo: hello\n"
    assert seen, "the callback was never called"
    sent = [s[0] for s in seen]
    received = [s[1] for s in seen]
    assert sent == sorted(sent) and received == sorted(received)
    assert max(s[2] for s in seen) == 1
    assert seen[-1] == (5, 5, 0, 1, 0)
    assert all(a != b for a, b in pairwise(seen)), "a call without a change"


def test_callback_sees_refusals(c_guest: CGuest) -> None:
    """A refused connection shows up as a request and a refusal."""
    seen: list[ws.NetworkStats] = []
    builder = ws.WasmSandbox.builder().source(c_guest("net_client"))
    builder.enable_network_monitoring(True).network_callback(seen.append)
    result = _run(builder.build(), "connect", "127.0.0.1", 9)
    assert result.stdout == b"errno EACCES\n"
    assert seen and _stats_tuple(seen[-1]) == (0, 0, 0, 1, 1)


def test_a_raising_callback_is_logged_once_dropped_for_the_run_and_reported(
    c_guest: CGuest, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises at the first of several counter changes is called once in
    that run, logged once with its traceback and listed in the report; the guest's echo is
    unchanged; the next run calls it again (its scope is one execution)."""
    calls = 0

    def broken(stats: ws.NetworkStats) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("observer bug")

    with echo_server() as server, caplog.at_level(logging.ERROR, logger="wasm_sandbox.callbacks"):
        builder = ws.WasmSandbox.builder().source(c_guest("net_client"))
        builder.allow_network(server.endpoint).enable_network_monitoring(True)
        sandbox = builder.network_callback(broken).build()
        result = _run(sandbox, "echo", server.host, server.port, "still here")
        assert (result.exit_code, result.stdout) == (0, b"echo: still here\n")
        assert calls == 1
        report = result.resource_report
        assert report.network_callback_errors == ("RuntimeError: observer bug",)
        assert report.network_bytes_sent == report.network_bytes_received == 10
        [record] = [r for r in caplog.records if r.name == "wasm_sandbox.callbacks"]
        assert record.levelno == logging.ERROR and "network_callback" in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError

        again = _run(sandbox, "echo", server.host, server.port, "again")
    assert again.stdout == b"echo: again\n" and calls == 2
    assert again.resource_report.network_callback_errors == ("RuntimeError: observer bug",)


# --- hygiene -----------------------------------------------------------------------------------


def test_no_descriptor_or_thread_leak_over_50_connections(c_guest: CGuest) -> None:
    """Fifty echo rounds in one run, then fifty connections left open by the guest: the
    process ends with the descriptors and threads it started with."""
    with echo_server() as server:
        sb = _client(c_guest, server.endpoint)
        assert _run(sb, "many", server.host, server.port, 2, "warm").stdout == b"done 2\n"
        assert _finished(server, 2)
        fds, threads = open_fd_count(), threading.active_count()
        result = _run(sb, "many", server.host, server.port, 50, "round")
        assert result.stdout == b"done 50\n"
        assert result.resource_report.network_requests == 50
        assert result.resource_report.bytes_transferred == 50 * 5 * 2
        result = _run(sb, "multi", server.host, server.port, 50)
        assert result.stdout == b"opened 50\n"
        assert _finished(server, 102), f"left open: {server.stats}"
        assert wait_until(lambda: threading.active_count() <= threads, 2)
        assert open_fd_count() <= fds


def test_works_when_the_host_already_holds_over_1024_descriptors(c_guest: CGuest) -> None:
    """An embedding server may hold thousands of descriptors: the guest's connection then gets
    a host descriptor above 1024 (where select() cannot go) and must still work."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below 1300")
    with echo_server() as server, ExitStack() as stack:
        if soft != resource.RLIM_INFINITY and soft < 1300:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
            stack.callback(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        sb = _client(c_guest, server.endpoint)
        fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        for fd in fillers:
            stack.callback(os.close, fd)
        assert max(fillers) >= 1024
        result = _run(sb, "poll", server.host, server.port, 5000, "high")
        assert result.stdout.splitlines()[-1] == b"read: high", result.stdout
        assert _run(sb, "echo", server.host, server.port, "high").stdout == b"echo: high\n"


# --- the raw import ----------------------------------------------------------------------------

RAW_WAT = b"""(module
  (import "wasm_sandbox" "tcp_connect" (func $connect (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "127.0.0.1")
  (func (export "connect") (param i32 i32 i32 i32) (result i32)
    (call $connect (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "connect_fd") (param $port i32) (result i32)
    (local $errno i32)
    (local.set $errno (call $connect (i32.const 16) (i32.const 9) (local.get $port) (i32.const 64)))
    (if (result i32) (local.get $errno)
      (then (i32.sub (i32.const 0) (local.get $errno)))
      (else (i32.load (i32.const 64))))))"""


def _raw(*allow: str) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(RAW_WAT)
    if allow:
        builder.allow_network(*allow)
    return builder.build()


def test_raw_import_returns_a_descriptor_and_is_reported() -> None:
    """tcp_connect from hand-written wasm stores a new descriptor; the call's report counts it."""
    with echo_server() as server:
        sb = _raw(server.endpoint)
        assert sb.call("connect_fd", server.port) >= 3
        monitored = sb.call_with_detailed_monitoring("connect", 16, 9, server.port, 64)
        assert monitored.value == 0
        assert monitored.resource_report.network_requests == 1
        assert monitored.resource_report.network_refusals == 0
        assert _finished(server, 2)
        refused = _raw().call_with_detailed_monitoring("connect", 16, 9, server.port, 64)
        assert refused.value == EACCES
        assert refused.resource_report.network_refusals == 1


@pytest.mark.parametrize(
    ("args", "errno"),
    [
        ((2**32 - 16, 9, "port", 64), EFAULT),  # host pointer far outside memory
        ((65530, 100, "port", 64), EFAULT),  # host runs off the end of memory
        ((16, 2**32 - 1, "port", 64), (EFAULT, EINVAL)),  # absurd length: a bad span, or too long
        ((16, 9, "port", 65534), EFAULT),  # fd_out straddles the end of memory
        ((16, 9, "port", 2**32 - 4), EFAULT),
        ((16, 9, 0, 64), EINVAL),
        ((16, 9, 65536, 64), EINVAL),
        ((16, 9, 70000, 64), EINVAL),
        ((16, 9, 2**32 - 1, 64), EINVAL),  # -1 as i32
    ],
)
def test_raw_import_with_bad_arguments(
    args: tuple[object, ...], errno: int | tuple[int, ...]
) -> None:
    """Garbage pointers give EFAULT and impossible ports EINVAL, even where the policy
    would allow the host; no connection is left behind."""
    with echo_server() as server:
        sb = _raw("127.0.0.1:*")
        call_args = [server.port if a == "port" else a for a in args]
        got = sb.call("connect", *call_args)
        assert got in errno if isinstance(errno, tuple) else got == errno
        _settle()
        assert server.stats.wait_idle()


def test_network_monitoring_without_a_callback_logs(
    c_guest: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """enable_network_monitoring(True) alone reports to the wasm_sandbox.network logger."""
    with echo_server() as server:
        sandbox = (
            ws.WasmSandbox.builder()
            .source(c_guest("net_client"))
            .allow_network(server.endpoint)
            .enable_network_monitoring(True)
            .build()
        )
        with caplog.at_level(logging.DEBUG, logger="wasm_sandbox.network"):
            sandbox.run(args=["echo", server.host, str(server.port), "hi"])
    stats = [r.network for r in caplog.records if r.name == "wasm_sandbox.network"]  # type: ignore[attr-defined]
    assert stats and stats[-1].bytes_sent == 2 and stats[-1].active_connections == 0

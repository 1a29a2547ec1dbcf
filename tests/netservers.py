"""Real TCP servers on 127.0.0.1 (ephemeral ports) for the network tests, each a context
manager that serves from daemon threads and, on exit, stops, closes every socket and joins
every thread it started (a thread still alive after that is an AssertionError, not a leak).

``echo_server``, ``silent_server``, ``streaming_server`` and ``sink_server`` yield a
``TcpServer`` (``host``, ``port``, ``endpoint`` and its ``stats``); ``http_server`` yields an
``HttpServer``; ``backlogged_listener`` and ``closed_port`` give (host, port) pairs where a
connect hangs, or is refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = [
    "HttpServer",
    "ServerStats",
    "TcpServer",
    "backlogged_listener",
    "closed_port",
    "echo_server",
    "http_server",
    "open_fd_count",
    "silent_server",
    "sink_server",
    "streaming_server",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
_TICK = 0.05  # how often a blocked server thread looks at its stop flag
_JOIN_TIMEOUT = 5.0


def open_fd_count() -> int:
    """Descriptors this process holds open (Linux: /proc/self/fd)."""
    return len(os.listdir("/proc/self/fd"))


@dataclass
class ServerStats:
    """What a server saw, updated by its threads (read under ``lock``, or wait on ``changed``)."""

    connections: int = 0
    """Connections accepted so far."""
    active: int = 0
    """Connections accepted and not yet finished."""
    bytes_received: int = 0
    bytes_sent: int = 0
    per_connection_received: list[int] = field(default_factory=list)
    """Bytes received on each finished connection, in the order they finished."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    changed: threading.Condition = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def update(self, **deltas: int) -> None:
        """Add each delta to its counter and wake the waiters."""
        with self.changed:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[ServerStats], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` holds (True) or ``timeout`` seconds pass (False)."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every accepted connection is finished."""
        return self.wait_for(lambda s: s.active == 0, timeout)


Handler = Callable[["TcpServer", socket.socket], None]


class TcpServer:
    """A listening socket on 127.0.0.1 with an accept thread and one thread per connection
    running ``handler(server, conn)``; ``stop()`` ends them all and closes every socket."""

    def __init__(self, handler: Handler, host: str = LOOPBACK) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family, backlog=128)
        self.listener.settimeout(_TICK)
        self.host = host
        self.port: int = self.listener.getsockname()[1]
        self.stats = ServerStats()
        self.stopping = threading.Event()
        self._handler = handler
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._guard = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept_loop, name="net-accept", daemon=True)
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        """``host:port`` as a network pattern names it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __iter__(self) -> Iterator[object]:
        """Unpacks as ``host, port``."""
        return iter((self.host, self.port))

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(_TICK)
            self.stats.update(connections=1, active=1)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._guard:
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handler(self, conn)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            self.stats.update(active=-1)

    def recv(self, conn: socket.socket, size: int = 65536) -> bytes:
        """Bytes from ``conn``; b"" at EOF, on a reset or when the server stops."""
        while not self.stopping.is_set():
            try:
                return conn.recv(size)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return b""

    def send(self, conn: socket.socket, data: bytes) -> bool:
        """Send all of ``data``; False if the peer went away or the server stops."""
        view = memoryview(data)
        while view and not self.stopping.is_set():
            try:
                sent = conn.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            self.stats.update(bytes_sent=sent)
            view = view[sent:]
        return not view

    def stop(self) -> None:
        """Stop accepting, end every connection, join every thread."""
        self.stopping.set()
        self._acceptor.join(_JOIN_TIMEOUT)
        self.listener.close()
        with self._guard:
            threads, conns = list(self._threads), list(self._conns)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        alive = [t for t in [self._acceptor, *threads] if t.is_alive()]
        assert not alive, f"server threads still running after stop: {alive}"


@contextlib.contextmanager
def _serving(handler: Handler, host: str = LOOPBACK) -> Iterator[TcpServer]:
    server = TcpServer(handler, host)
    try:
        yield server
    finally:
        server.stop()


def _echo(server: TcpServer, conn: socket.socket) -> None:
    received = 0
    while data := server.recv(conn):
        received += len(data)
        server.stats.update(bytes_received=len(data))
        if not server.send(conn, data):
            break
    with server.stats.lock:
        server.stats.per_connection_received.append(received)


def _silent(server: TcpServer, conn: socket.socket) -> None:
    # Never reads, never sends: a guest's read waits forever and its writes fill the buffers.
    server.stopping.wait()


def _stream(server: TcpServer, conn: socket.socket) -> None:
    chunk = b"s" * 65536
    while server.send(conn, chunk):
        pass


def _sink(server: TcpServer, conn: socket.socket) -> None:
    received = 0
    while data := server.recv(conn):
        received += len(data)
        server.stats.update(bytes_received=len(data))
    with server.stats.lock:
        server.stats.per_connection_received.append(received)
        server.stats.changed.notify_all()


def echo_server(host: str = LOOPBACK) -> contextlib.AbstractContextManager[TcpServer]:
    """Echoes back every byte of each connection until the client closes (many at once)."""
    return _serving(_echo, host)


def silent_server() -> contextlib.AbstractContextManager[TcpServer]:
    """Accepts and then neither reads nor sends until the server stops."""
    return _serving(_silent)


def streaming_server() -> contextlib.AbstractContextManager[TcpServer]:
    """Sends bytes (``b"s"``) forever, as fast as the client reads, until it goes away."""
    return _serving(_stream)


def sink_server() -> contextlib.AbstractContextManager[TcpServer]:
    """Reads and discards everything; ``stats.per_connection_received`` has each total."""
    return _serving(_sink)


@dataclass
class HttpServer:
    """A running ``http_server``: where it listens and the paths it was asked for."""

    host: str
    port: int
    paths: list[str]

    def __iter__(self) -> Iterator[object]:
        """Unpacks as ``host, port``."""
        return iter((self.host, self.port))


class _HelloHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # a client that never finishes its request cannot hold the server's close
    paths: list[str]  # set on the per-server subclass

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body, status = (b"hello", 200) if self.path == "/hello" else (b"not found", 404)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


class _JoiningHTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins the request threads
    block_on_close = True


@contextlib.contextmanager
def http_server() -> Iterator[HttpServer]:
    """An HTTP/1.1 server answering ``GET /hello`` with ``hello`` (404 for anything else)."""
    paths: list[str] = []
    handler = type("Handler", (_HelloHandler,), {"paths": paths})
    httpd = _JoiningHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": _TICK}, daemon=True
    )
    thread.start()
    try:
        yield HttpServer(LOOPBACK, httpd.server_address[1], paths)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(_JOIN_TIMEOUT)
        assert not thread.is_alive(), "http server thread still running after shutdown"


@contextlib.contextmanager
def backlogged_listener() -> Iterator[tuple[str, int]]:
    """A listening socket (backlog 0) that never accepts, its queue filled by host-side
    connections: a further connect gets no answer and hangs until its own timeout."""
    listener = socket.create_server((LOOPBACK, 0), backlog=0)
    port: int = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            probe = socket.socket()
            probe.settimeout(0.2)
            try:
                probe.connect((LOOPBACK, port))
            except TimeoutError:
                probe.close()
                break
            fillers.append(probe)
        else:
            raise RuntimeError("the backlog never filled: connects to it do not hang here")
        yield LOOPBACK, port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def closed_port() -> tuple[str, int]:
    """A loopback port nothing listens on (just bound and released): connecting is refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return LOOPBACK, port


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass
class HttpsServer:
    """A running ``https_server``: where it listens and the CA file that verifies it."""

    host: str
    port: int
    ca_file: str


@contextlib.contextmanager
def https_server(tmp: Path) -> Iterator[HttpsServer]:
    """The ``http_server`` behind TLS, with a self-signed certificate for ``localhost`` and
    127.0.0.1 made by ``openssl`` in ``tmp`` (its own CA file)."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    paths: list[str] = []
    handler = type("Handler", (_HelloHandler,), {"paths": paths})
    httpd = _JoiningHTTPServer((LOOPBACK, 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": _TICK}, daemon=True
    )
    thread.start()
    try:
        yield HttpsServer(LOOPBACK, httpd.server_address[1], str(cert))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(_JOIN_TIMEOUT)
        assert not thread.is_alive(), "https server thread still running after shutdown"

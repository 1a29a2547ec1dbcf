"""The guest half of the Python protocol: code that runs inside the WebAssembly CPython.

``BOOT`` is executed once per instance, in its own namespace, registers the module
``__wsbx__`` in the guest's ``sys.modules`` and hooks the runtime's reactor (``_hook_turns``).
Each turn then hands the driver a JSON request (``main``), or a session's statement as it
stands; the answer leaves through the runtime's door (``_host.call``) as one JSON frame (none
for a quiet request that succeeded), the same envelope as the compiled guests' data ABI:
``{"ok": value}``, ``{"error": {"type", "message", "traceback"}}``, ``{"exit": code}`` or
``{"missing": {"name", "available"}}``. Bytes travel as ``{"$bytes": "<base64>"}``.

This text is guest code: it is never executed by the host.
"""

from __future__ import annotations

__all__ = ["BOOT"]

BOOT = r'''
import io, sys, _host
from json import dumps as _dumps, loads as _loads  # guest code may replace json's own

_DRIVER = ("<wsbx", "<turn")


def _from_json(obj):
    if len(obj) == 1 and "$bytes" in obj and isinstance(obj["$bytes"], str):
        import base64
        return base64.b64decode(obj["$bytes"])
    return obj


def _default(value):
    """A value json cannot encode, as one it can (bytes as {"$bytes": ...}; the table in
    docs/agents.md, "Results as JSON values"); TypeError for what has no such form."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("pandas"):
        name = kind.__name__
        if name == "DataFrame":
            return value.to_dict(orient="records")
        if name == "Series":
            return value.to_dict()
        if name in ("NaTType", "NAType"):  # NaT is a datetime: before the isoformat below
            return None
    import datetime
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if module.startswith(("numpy", "pandas")) and hasattr(value, "tolist"):
        dtype = getattr(value, "dtype", None)
        if getattr(dtype, "kind", "") in ("M", "m"):  # datetime64/timedelta64 as datetime objects
            value = value.astype("datetime64[us]" if dtype.kind == "M" else "timedelta64[us]")
        return value.tolist()
    import decimal, enum, fractions, pathlib, uuid
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (decimal.Decimal, fractions.Fraction)):
        return float(value)
    if isinstance(value, (uuid.UUID, pathlib.PurePath, complex)):
        return str(value)
    if isinstance(value, range):
        return list(value)
    import dataclasses
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(
        f"a value of type {type(value).__name__} cannot be returned to the host: "
        "return JSON values (None, bool, int, float, str, list, tuple, dict), bytes, or the "
        "types the documentation's table converts (numpy, pandas, datetime, set...)"
    )


_MAX_DEPTH = 200


def _plain(value, loose, depth=0, path=None):
    """``value`` as plain JSON values: NaN and infinities as None, dict keys as strings, the
    other types by ``_default``; with ``loose`` (a code cell's result), what has no JSON form
    as its repr() instead of a TypeError, and a container that holds itself as ``"[...]"``."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"the value nests more than {_MAX_DEPTH} levels deep")
    if value is None or value is True or value is False or type(value) in (int, str):
        return value
    if isinstance(value, float):
        return float(value) if value - value == 0 else None  # NaN and +-inf: None
    if isinstance(value, (int, str)):
        return int(value) if isinstance(value, int) else str(value)
    if isinstance(value, (dict, list, tuple)):
        path = set() if path is None else path
        if id(value) in path:  # a reference cycle: JSON cannot hold it
            if loose:
                return "{...}" if isinstance(value, dict) else "[...]"
            raise ValueError("the value contains itself (a reference cycle): JSON cannot hold it")
        path.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): _plain(v, loose, depth + 1, path) for k, v in value.items()}
            return [_plain(v, loose, depth + 1, path) for v in value]
        finally:
            path.discard(id(value))
    try:
        converted = _default(value)
    except TypeError:
        if not loose:
            raise
        text = repr(value)
        return text if len(text) <= 100000 else text[:100000] + "..."
    if isinstance(converted, dict) and "$bytes" in converted:
        return converted
    return _plain(converted, loose, depth + 1, path)


def _key(key):
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    plain = _plain(key, True)
    return plain if isinstance(plain, str) else str(plain)


def _send(frame):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        text = _dumps(frame, default=_default, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):  # NaN, a key json refuses: the value walked (or its error)
        if "ok" not in frame:
            raise
        text = _dumps({"ok": _plain(frame["ok"], False)}, default=_default, allow_nan=False,
                      separators=(",", ":"))
    _host.call(text.encode("utf-8"))


def _tb_text(exc):
    import traceback
    te = traceback.TracebackException.from_exception(exc)
    for link in (te, te.__cause__, te.__context__):
        if link is not None and link.stack:
            kept = [f for f in link.stack if not f.filename.startswith(_DRIVER)]
            link.stack = traceback.StackSummary.from_list(kept)
    return "".join(te.format())


_TOO_BIG = ("cannot fit 'int' into an index-sized integer", "repeated string is too long",
            "repeated bytes are too long", "Python int too large to convert to C ssize_t")


def _out_of_memory(exc):
    """An allocation the 32-bit guest cannot make: MemoryError, or a size past its index."""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, OverflowError) and any(t in str(exc) for t in _TOO_BIG)


def _error(exc):
    frame = {"error": {"type": type(exc).__name__, "message": str(exc),
                       "traceback": _tb_text(exc)}}
    if _out_of_memory(exc):
        frame["oom"] = True
    return frame


def _remember(filename, source):
    import linecache
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _main_dict():
    return sys.modules["__main__"].__dict__


def _run_main(req):
    import os
    sys.argv = req["argv"]
    namespace = _main_dict()
    _remember(req["filename"], req["source"])
    code = 0
    try:
        exec(compile(req["source"], req["filename"], "exec"), namespace)
    except SystemExit as stop:
        value = stop.code
        if value is None:
            code = 0
        elif isinstance(value, int):
            code = value & 0xFF
        else:
            print(value, file=sys.stderr)
            code = 1
    except BaseException as exc:
        sys.stderr.write(_tb_text(exc))
        if _out_of_memory(exc):
            return _error(exc)
        code = 1
    return {"exit": code}


def _function(namespace, name):
    fn = namespace.get(name)
    if not callable(fn):
        available = sorted(k for k, v in namespace.items()
                           if callable(v) and not k.startswith("_")
                           and getattr(v, "__module__", None) == namespace.get("__name__"))
        return None, {"missing": {"name": name, "available": available}}
    return fn, None


def _renew(fresh):
    """A new instance made from a snapshot: the state that must differ between executions
    (the environment, the random streams) is drawn again."""
    if "env" in fresh:
        import os
        environ = dict(item.split("=", 1) for item in fresh["env"] if "=" in item)
        for key in [k for k in os.environ if k not in environ]:
            del os.environ[key]
        os.environ.update(environ)
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None
    nprandom = sys.modules.get("numpy.random")
    if nprandom is not None:
        nprandom.seed()


def _use_path(entries):
    """The sandbox's python_path entries on sys.path, before the standard library."""
    missing = [entry for entry in entries if entry not in sys.path]
    if missing:
        sys.path[:0] = missing


def _load_module(req):
    """The source run as the module a call uses (with "prelude": after setup's globals)."""
    import types
    module = types.ModuleType(req["module"])
    module.__file__ = req["filename"]
    sys.modules[req["module"]] = module
    if req.get("prelude"):
        module.__dict__.update((k, v) for k, v in _main_dict().items() if not k.startswith("__"))
    _remember(req["filename"], req["source"])
    exec(compile(req["source"], req["filename"], "exec"), module.__dict__)
    return module


def _loaded(req):
    """The module preinitialisation loaded (a call's source is not run again)."""
    module = sys.modules.get(req["module"])
    if module is None:
        raise RuntimeError(f"the preinitialised module {req['module']!r} is gone from sys.modules")
    return module


def _preinit(req):
    """Run the setup code in __main__, or without setup load the source as a call's module;
    then collect garbage and freeze what is left (never scanned again by the collector, so
    an execution does not touch, and copy, every page of it)."""
    setup = req.get("setup")
    if setup is None:
        _load_module(req)
    else:
        _remember("<setup>", setup)
        exec(compile(setup, "<setup>", "exec"), _main_dict())
    import gc
    gc.collect()
    gc.freeze()
    _reserve(req.get("reserve", 0))
    return {"ok": None}


def _reserve(size):
    """Leave ``size`` bytes of free heap in the state (allocated, then freed: the allocator
    keeps what it grew), so that executions starting from it seldom grow the memory."""
    while size >= (1 << 20):
        try:
            block = bytearray(size)
        except MemoryError:
            size //= 2
            continue
        del block
        return


def _cell(req):
    """Code run as a notebook cell in __main__ (after the sandbox's own source, if any): the
    value of its last statement when that is an expression, as plain JSON values."""
    import ast
    namespace = _main_dict()
    if req.get("loaded"):  # preinitialize() loaded the source as the calls' module
        namespace.update((k, v) for k, v in _loaded(req).__dict__.items() if not k.startswith("__"))
    elif req.get("script"):
        _remember(req["filename"], req["script"])
        exec(compile(req["script"], req["filename"], "exec"), namespace)
    source = req["source"]
    _remember("<cell>", source)
    try:
        tree = ast.parse(source, "<cell>")
    except SyntaxError as exc:  # without the frames of ast.parse
        raise exc.with_traceback(None) from None
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), namespace)
    value = None if last is None else eval(compile(last, "<cell>", "eval"), namespace)
    return {"ok": _plain(value, True)}


def _arguments(req):
    return (_loads(req.get("args", "[]"), object_hook=_from_json),
            _loads(req.get("kwargs", "{}"), object_hook=_from_json))


def _line_buffered():
    """The host streams this instance's output: write it out at each line, not each 8 KiB."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if not stream.line_buffering:
                stream.reconfigure(line_buffering=True)
        except Exception:
            pass


def _answer(req):
    op = req["op"]
    fresh = req.get("fresh")
    if fresh is not None:
        _renew(fresh)
    if req.get("lines"):
        _line_buffered()
    path = req.get("path")
    if path:
        _use_path(path)
    if op == "exec":  # a session's statement: the hot path
        exec(compile(req["source"], "<session>", "exec"), _main_dict())
        return {"ok": None}
    if op == "boot":
        return {"ok": None}
    if op == "run":
        return _run_main(req)
    if op == "call":
        module = _loaded(req) if req.get("loaded") else _load_module(req)
        fn, missing = _function(module.__dict__, req["fn"])
        args, kwargs = _arguments(req)
        return missing or {"ok": fn(*args, **kwargs)}
    if op == "preinit":
        return _preinit(req)
    if op == "cell":
        return _cell(req)
    namespace = _main_dict()
    if op == "load":
        _remember(req["filename"], req["source"])
        namespace["__name__"] = req["module"]
        try:
            exec(compile(req["source"], req["filename"], "exec"), namespace)
        finally:
            namespace["__name__"] = "__main__"
        return {"ok": None}
    if op == "eval":
        return {"ok": eval(compile(req["source"], "<session>", "eval"), namespace)}
    if op == "scall":
        fn, missing = _function(namespace, req["fn"])
        if missing:
            return missing
        args, kwargs = _arguments(req)
        return {"ok": fn(*args, **kwargs)}
    raise ValueError(f"unknown request {op!r}")


_QUIET_OK = {"ok": None}
_RAW = "__import__('sys').modules['__wsbx__'].unhooked()\n"  # a bare statement's first line


def main(text):
    _handle(_loads(text))


def _handle(req):
    try:
        frame = _answer(req)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        frame = {"exit": code & 0xFF}
    except BaseException as exc:
        frame = _error(exc)
    if req["op"] in _CAPTURED:
        _release_fonts()
    if frame == _QUIET_OK and req.get("quiet"):
        return  # the host reads a turn that ends without an answer as this one
    try:
        _send(frame)
    except BaseException as exc:
        _send(_error(exc))


_CAPTURED = frozenset({"exec", "eval", "scall", "load", "preinit"})  # states a snapshot may take


def _release_fonts():
    """matplotlib keeps each font it drew with open (FreeType reads the file as it goes), and
    a state holding an open file cannot be captured: after a session's statement and after
    preinitialisation its font cache is dropped (a font is opened again when next used)."""
    fonts = sys.modules.get("matplotlib.font_manager")
    clear = getattr(getattr(fonts, "_get_font", None), "cache_clear", None)
    if clear is not None:
        try:
            clear()
        except Exception:
            pass


def unhooked():
    """The first line of a bare statement's turn, run only where the turn hook is not
    installed (see ``_hook_turns``): the turn stops before the statement, saying so, and the
    host sends the statement again as a request."""
    _host.call(b'{"unhooked":1}')
    raise SystemExit(87)


def _hook_turns():
    """Requests reach the driver without the reactor compiling the turn: the runtime's
    reactor (``_reactor``) hands each turn's text to its ``_run_turn``, which would parse and
    compile it. A text that starts with ``#wsbx `` carries a request on its first line; one
    that starts with ``_RAW`` is a session's statement (a quiet exec) as it stands. Without
    the hook, a request's text goes on with a call to ``main`` (what runs instead), and a
    statement's first line stops the turn before the statement."""
    reactor = sys.modules.get("_reactor")
    run_turn = getattr(reactor, "_run_turn", None)
    if run_turn is None or getattr(run_turn, "__wsbx__", False):
        return

    def _run_turn(text, name):
        if text.startswith(_RAW):
            _handle({"op": "exec", "source": text[len(_RAW):], "quiet": True})
        elif text.startswith("#wsbx "):
            main(text[6:text.index("\n")])
        else:
            run_turn(text, name)

    _run_turn.__wsbx__ = True
    reactor._run_turn = _run_turn


# --- network: socket.create_connection through the host (which applies the policy) --------


def _net(request):
    answer = _loads(_host.call(_dumps(request).encode()) or b"{}")
    if "errno" in answer:
        import os
        code, message = answer["errno"], answer.get("message")
        raise OSError(code, message if isinstance(message, str) else os.strerror(code))
    return answer


class _SocketIO(io.RawIOBase):
    """The raw file under a connection's makefile()."""

    def __init__(self, sock, mode):
        super().__init__()
        self._sock, self.mode = sock, mode
        sock._io_refs += 1

    def close(self):
        if not self.closed:
            super().close()
            self._sock._io_refs -= 1
            if self._sock._closed:
                self._sock._release()

    def readable(self):
        return "r" in self.mode

    def writable(self):
        return "w" in self.mode

    def seekable(self):
        return False

    def readinto(self, buffer):
        data = self._sock.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data):
        return self._sock.send(data)

    def fileno(self):
        return self._sock.fileno()


class _Socket:
    """socket.socket in the sandbox: a TCP client whose connection the host opens (after its
    network policy); the subset of the socket API that clients use."""

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        import errno, socket
        if fileno is not None:
            raise OSError(errno.EBADF, "the sandbox cannot make a socket from a descriptor")
        family = socket.AF_INET if family == -1 else family
        type = socket.SOCK_STREAM if type == -1 else type
        if family not in (socket.AF_INET, socket.AF_INET6) or (type & 0xF) != socket.SOCK_STREAM:
            raise OSError(errno.EPROTONOSUPPORT,
                          "the sandbox offers TCP client connections only (no UDP, no raw sockets)")
        self._fd, self._address = None, None
        self._timeout = socket.getdefaulttimeout()
        self._io_refs, self._closed = 0, False  # as socket.socket: makefile() objects keep it open
        self.family, self.type, self.proto = family, socket.SOCK_STREAM, 0

    def connect(self, address):
        import errno
        if self._fd is not None:
            raise OSError(errno.EISCONN, "already connected")
        host, port = str(address[0]), int(address[1])
        self._fd = _net({"net": "connect", "host": host, "port": port})["fd"]
        self._address = (host, port)
        if self._timeout is not None:
            self.settimeout(self._timeout)

    def connect_ex(self, address):
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or 1
        return 0

    def _unsupported(self, *args, **kwargs):
        import errno
        raise OSError(errno.EOPNOTSUPP, "the sandbox offers TCP client connections only")

    bind = listen = accept = sendto = recvfrom = _unsupported

    def fileno(self):
        return -1 if self._fd is None else self._fd

    def settimeout(self, value):
        self._timeout = None if value is None else float(value)
        if self._fd is not None:
            _net({"net": "timeout", "fd": self._fd, "seconds": self._timeout})

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self.settimeout(None if flag else 0.0)

    def setsockopt(self, level, option, value, *rest):
        import errno, socket
        known = {(socket.IPPROTO_TCP, getattr(socket, "TCP_NODELAY", None)): "nodelay",
                 (socket.SOL_SOCKET, getattr(socket, "SO_KEEPALIVE", None)): "keepalive"}
        name = known.get((level, option))
        if name is None or self._fd is None:
            raise OSError(errno.ENOPROTOOPT, "socket option not supported in the sandbox")
        _net({"net": "sockopt", "fd": self._fd, "option": name, "value": bool(value)})

    def getpeername(self):
        return self._address

    def getsockname(self):
        return ("0.0.0.0", 0)

    def send(self, data, flags=0):
        import os
        return os.write(self._fd, data)

    def sendall(self, data, flags=0):
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view):]

    def recv(self, size, flags=0):
        import os
        return os.read(self._fd, size)

    def recv_into(self, buffer, nbytes=0, flags=0):
        data = self.recv(nbytes or len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        import io
        raw = _SocketIO(self, "rb" if "r" in mode else "wb")
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        if "r" in mode and "w" in mode:
            binary = io.BufferedRWPair(raw, raw, size)
        elif "r" in mode:
            binary = io.BufferedReader(raw, size)
        else:
            binary = io.BufferedWriter(raw, size)
        if "b" in mode:
            return binary
        return io.TextIOWrapper(binary, encoding, errors, newline)

    def shutdown(self, how):
        _net({"net": "shutdown", "fd": self._fd, "how": how + 1})

    def _start_tls(self, server_hostname):
        _net({"net": "tls", "fd": self._fd, "host": str(server_hostname)})
        self._tls = True

    def version(self):
        return "TLS (host)" if getattr(self, "_tls", False) else None

    def getpeercert(self, binary_form=False):
        return None

    def close(self):
        self._closed = True
        self._release()

    def _release(self):
        if self._fd is not None and self._io_refs <= 0:
            import os
            os.close(self._fd)
            self._fd = None

    def detach(self):
        fd, self._fd = self._fd, None
        return fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_SSL = """
class SSLError(OSError):
    pass

class SSLCertVerificationError(SSLError, ValueError):
    pass

# What other modules read at import (asyncio's sslproto: SSLWantReadError, SSLSyscallError).
class SSLZeroReturnError(SSLError):
    pass

class SSLWantReadError(SSLError):
    pass

class SSLWantWriteError(SSLError):
    pass

class SSLSyscallError(SSLError):
    pass

class SSLEOFError(SSLError):
    pass

class SSLSocket:  # no socket of the sandbox is one (the host does TLS): isinstance checks
    pass

class SSLObject:  # never made in the sandbox: isinstance checks
    pass

CertificateError = SSLCertVerificationError
PROTOCOL_TLS = 2
PROTOCOL_TLS_CLIENT = 16
CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = 0, 1, 2
HAS_SNI = HAS_ALPN = True
OPENSSL_VERSION = "host TLS (wasm-sandbox)"

class Purpose:
    SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
    CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"

class SSLContext:
    \"\"\"TLS done by the host: it verifies the server's certificate and name against the trust
    store the sandbox's NetworkPolicy names; the guest reads and writes plaintext.\"\"\"

    def __init__(self, protocol=PROTOCOL_TLS_CLIENT):
        self.protocol = protocol
        self.check_hostname = True
        self.verify_mode = CERT_REQUIRED
        self.post_handshake_auth = None
        self.minimum_version = self.maximum_version = None
        self.options = 0

    def set_alpn_protocols(self, protocols):
        # The host offers no ALPN, so servers answer HTTP/1.1: what http.client asks for.
        if any(p != "http/1.1" for p in protocols):
            raise NotImplementedError("the sandbox's TLS speaks HTTP/1.1 only (no ALPN)")

    def set_ciphers(self, ciphers):
        raise NotImplementedError("the host chooses the TLS ciphers (its default policy)")

    def load_default_certs(self, purpose=Purpose.SERVER_AUTH):
        pass

    def set_default_verify_paths(self):
        pass

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        raise NotImplementedError(
            "in the sandbox the host decides which certificate authorities to trust "
            "(NetworkPolicy(ca_file=...))"
        )

    def load_cert_chain(self, certfile, keyfile=None, password=None):
        raise NotImplementedError("client certificates are not supported in the sandbox")

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    suppress_ragged_eofs=True, server_hostname=None, session=None):
        if server_side:
            raise NotImplementedError("the sandbox has no TLS servers")
        if not self.check_hostname or self.verify_mode != CERT_REQUIRED:
            raise ValueError("the sandbox's TLS always verifies the certificate and the name")
        sock._start_tls(server_hostname or sock.getpeername()[0])
        return sock

def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None):
    context = SSLContext()
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    return context

_create_default_https_context = create_default_context

def _create_unverified_context(*args, **kwargs):
    context = SSLContext()
    context.check_hostname, context.verify_mode = False, CERT_NONE
    return context
"""


_DEFAULT = object()


def create_connection(address, timeout=_DEFAULT, source_address=None, *, all_errors=False):
    """socket.create_connection in the sandbox: the host connects, after its policy."""
    import socket
    sock = _Socket()
    if timeout is not _DEFAULT and timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
        sock.settimeout(timeout)
    sock.connect(address)
    return sock


class _SslLoader:
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(_SSL, "<wsbx-ssl>", "exec"), module.__dict__)


def _patch_socket(module):
    module.create_connection = create_connection
    module.socket = module.SocketType = _Socket


class _NetFinder:
    """Patches the socket module when the guest first imports it."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "ssl":  # the WebAssembly CPython has no _ssl: TLS is the host's
            import importlib.util
            return importlib.util.spec_from_loader("ssl", _SslLoader())
        if name != "socket":
            return None
        sys.meta_path.remove(cls)
        try:
            import importlib.util
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, cls)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader

        class _Loader:
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                _patch_socket(module)

        spec.loader = _Loader()
        return spec


if "socket" in sys.modules:
    _patch_socket(sys.modules["socket"])
else:
    sys.meta_path.insert(0, _NetFinder)

# --- host functions: ``from wasm_sandbox_host import name`` -------------------------------
# A call is one read of the host's channel descriptor (never open; see _wasi/_hostcalls.py):
# the buffer goes in with a u32 length and the JSON request, and comes back with the
# answer's u32 length and as much of it as fits (the rest: one more read, length 0). The
# module is compiled when the guest first imports it: compiled at boot, its code would cost
# every instance the pages the compiler wrote.

_HOST = """
import json, os
from json import encoder as _encoder, scanner as _scanner

_FD = 0x7FFFFF00
_BUFFER = 16384  # kept between calls: an answer seldom needs more (the rest: one more read)
_buffers = []
_kinds = {}


class HostError(Exception):
    # A host function raised an exception that is not a Python built-in one: its class
    # here is named as the host's was, and derives from this one.
    __doc__ = "A host function's exception of a type that is not a Python built-in one."


def _codecs():
    # JSON without json's per-call set-up (its C encoder and scanner made once: a third of
    # the cost of a small call); ASCII out, as the host answers.
    plain, with_bytes = json.JSONDecoder(), json.JSONDecoder(object_hook=_from_json)
    make, scan = _encoder.c_make_encoder, _scanner.c_make_scanner
    if make is None or scan is None:  # a runtime without _json
        coder = json.JSONEncoder(default=_default, allow_nan=False, separators=(",", ":"))
        return coder.encode, plain.decode, with_bytes.decode
    chunks = make(None, _default, _encoder.c_encode_basestring_ascii, None, ":", ",",
                  False, False, False)
    scanners = scan(plain), scan(with_bytes)
    return ((lambda value: "".join(chunks(value, 0))),
            (lambda text: scanners[0](text, 0)[0]), (lambda text: scanners[1](text, 0)[0]))


_encode, _decode, _decode_bytes = _codecs()


def _raise(error):
    import builtins
    kind = str(error.get("type") or "HostError")
    cls = getattr(builtins, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = _kinds.get(kind)
        if cls is None:
            cls = _kinds[kind] = type(kind, (HostError,), {"__module__": __name__})
    raise cls(str(error.get("message", "")))


def _exchange(data):
    size = len(data)
    if not _buffers:
        _buffers.append(bytearray(_BUFFER))
    buf = _buffers[0] if size + 4 <= _BUFFER else bytearray(size + 4)
    buf[0:4] = size.to_bytes(4, "little")
    buf[4:size + 4] = data
    got = os.readinto(_FD, buf) - 4
    total = int.from_bytes(buf[0:4], "little")
    if total <= got:
        return buf[4:got + 4].decode("utf-8")
    rest = bytearray(total - got + 4)
    more = os.readinto(_FD, rest) - 4
    return (buf[4:got + 4] + rest[4:more + 4]).decode("utf-8")


def _ask(text):
    reply = _exchange(text.encode("ascii"))
    answer = (_decode_bytes if '"$bytes"' in reply else _decode)(reply)
    if "ok" in answer:
        return answer["ok"]
    _raise(answer.get("error") or {})


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    names = _ask('{"host_list":1}')
    if name not in names:
        raise AttributeError(f"the sandbox has no host function {name!r} "
                             f"(it has: {', '.join(names) or 'none'})")
    head = '{"host":"' + name + '","args":'

    def function(*args, **kwargs):
        tail = ',"kwargs":' + _encode(kwargs) + "}" if kwargs else "}"
        return _ask(head + _encode(args) + tail)

    function.__name__ = function.__qualname__ = name
    function.__module__ = __name__
    globals()[name] = function
    return function


def __dir__():
    return sorted([*_ask('{"host_list":1}'), "HostError"])
"""


class _HostFinder:
    """Makes the module ``wasm_sandbox_host`` (``_HOST``) when the guest first imports it."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "wasm_sandbox_host":
            return None
        import importlib.util
        return importlib.util.spec_from_loader(name, cls)

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        module.__doc__ = "The sandbox's host functions: from wasm_sandbox_host import name"
        module._default, module._from_json = _default, _from_json
        exec(compile(_HOST, "<wsbx-host>", "exec"), module.__dict__)


sys.meta_path.insert(0, _HostFinder)
sys.modules["__wsbx__"] = type(sys)("__wsbx__")
sys.modules["__wsbx__"].main = main
sys.modules["__wsbx__"].unhooked = unhooked
_hook_turns()
'''

"""The guest half of the Python protocol: code that runs inside the WebAssembly CPython.

``BOOT`` is executed once per instance, in its own namespace, and registers the module
``__wsbx__`` in the guest's ``sys.modules``. Each turn then calls ``__wsbx__.main(request)``
with a JSON request; the answer leaves through the runtime's door (``_host.call``) as one JSON
frame, the same envelope as the compiled guests' data ABI:
``{"ok": value}``, ``{"error": {"type", "message", "traceback"}}``, ``{"exit": code}`` or
``{"missing": {"name", "available"}}``. Bytes travel as ``{"$bytes": "<base64>"}``.

This text is guest code: it is never executed by the host.
"""

from __future__ import annotations

__all__ = ["BOOT"]

BOOT = r'''
import sys, json, _host

_DRIVER = ("<wsbx", "<turn")


def _from_json(obj):
    if len(obj) == 1 and "$bytes" in obj and isinstance(obj["$bytes"], str):
        import base64
        return base64.b64decode(obj["$bytes"])
    return obj


def _default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(
        f"a value of type {type(value).__name__} cannot be returned to the host: "
        "return JSON values (None, bool, int, float, str, list, tuple, dict) or bytes"
    )


def _send(frame):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    _host.call(json.dumps(frame, default=_default, allow_nan=False,
                          separators=(",", ":")).encode("utf-8"))


def _tb_text(exc):
    import traceback
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_DRIVER):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


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


def _answer(req):
    op = req["op"]
    if op == "run":
        return _run_main(req)
    args = json.loads(req.get("args", "[]"), object_hook=_from_json)
    kwargs = json.loads(req.get("kwargs", "{}"), object_hook=_from_json)
    if op == "call":
        import types
        module = types.ModuleType(req["module"])
        module.__file__ = req["filename"]
        sys.modules[req["module"]] = module
        _remember(req["filename"], req["source"])
        exec(compile(req["source"], req["filename"], "exec"), module.__dict__)
        fn, missing = _function(module.__dict__, req["fn"])
        return missing or {"ok": fn(*args, **kwargs)}
    namespace = _main_dict()
    if op == "load":
        _remember(req["filename"], req["source"])
        namespace["__name__"] = req["module"]
        try:
            exec(compile(req["source"], req["filename"], "exec"), namespace)
        finally:
            namespace["__name__"] = "__main__"
        return {"ok": None}
    if op == "exec":
        exec(compile(req["source"], "<session>", "exec"), namespace)
        return {"ok": None}
    if op == "eval":
        return {"ok": eval(compile(req["source"], "<session>", "eval"), namespace)}
    if op == "scall":
        fn, missing = _function(namespace, req["fn"])
        return missing or {"ok": fn(*args, **kwargs)}
    raise ValueError(f"unknown request {op!r}")


def main(text):
    req = json.loads(text)
    try:
        frame = _answer(req)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        frame = {"exit": code & 0xFF}
    except BaseException as exc:
        frame = _error(exc)
    try:
        _send(frame)
    except BaseException as exc:
        _send(_error(exc))


sys.modules["__wsbx__"] = type(sys)("__wsbx__")
sys.modules["__wsbx__"].main = main
'''

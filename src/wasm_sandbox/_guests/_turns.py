"""The host half of the script runtimes: how one request (a call, a run, a session statement)
is driven through a Python or a JavaScript interpreter instance, and its answer read.

Both answer with one JSON frame (``_data.decode_frame``): Python through the door
(``host.call``), JavaScript as the string value of its driver script.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Protocol

from .. import _errors as e
from .._runtime._engine import GuestInstance
from .._wasi._context import WasiContext
from .._wasi._http import MAX_REQUEST_TEXT, http_exchange
from .._wasi._net import net_request
from .._wasi._state import Door
from ._data import decode_frame
from ._jsdriver import BOOT as JS_BOOT
from ._python import statement_code, turn_code
from ._reactor import turn_flag

__all__ = ["JavaScriptTurn", "PythonTurn", "ScriptTurn", "script_turn"]

_MASK32 = 0xFFFFFFFF
# What a bare statement's turn ends with where the driver's turn hook is not installed: its
# first line stopped it (``_pydriver.unhooked``) before the statement ran.
_UNHOOKED_STATUS = 87
_UNHOOKED_FRAME = b'{"unhooked":1}'
# A turn that writes out what Python still buffers (a statement: the reactor echoes nothing).
_FLUSH = (
    b"for _wsbx_s in (__import__('sys').stdout, __import__('sys').stderr):\n"
    b"    try: _wsbx_s.flush()\n"
    b"    except BaseException: pass\n"
)
_TAG_EXCEPTION = 6  # QuickJS's JS_TAG_EXCEPTION, in the high word of a NaN-boxed JSValue
_STASH_VALUE = b"__wsbx_val\0"
_STASH_ERROR = b"__wsbx_exc\0"
_EVAL_GLOBAL, _EVAL_MODULE = 0, 1  # JS_EVAL_TYPE_GLOBAL, JS_EVAL_TYPE_MODULE
_MAX_SAFE_INTEGER = 1 << 53
# The driver hands over at most 16 queued requests at a time, each with at most 64 Ki
# characters of URL and headers (up to 6 bytes each as JSON); a longer queue is refused unread.
_MAX_QUEUE_TEXT = 16 * (6 * MAX_REQUEST_TEXT + 4096)
# The timers of QuickJS's os module, as the usual globals; nothing else of that module. And
# for the driver (it takes it at boot): how a new instance made from a snapshot gets its own
# environment (the C library read the booted one's), and the read host functions are
# called through.
_TIMERS = (
    "import { setTimeout as osSetTimeout, clearTimeout } from 'qjs:os';\n"
    "import { getenviron, setenv, unsetenv } from 'qjs:std';\n"
    "import { read } from 'qjs:os';\n"
    "Object.defineProperty(globalThis, '__wsbx_hostread', { configurable: true, value: read });\n"
    # A timer callback that throws: QuickJS's loop would drop the error unseen; the first one
    # is kept for the driver (__wsbx_timer_error, taken at boot), which reports it.
    # (No Array method is called: guest code may replace them.)
    "let timerFailed = false, timerError;\n"
    "const setTimeout = (fn, ms, ...args) => osSetTimeout(() => {\n"
    "  try { if (typeof fn === 'function') fn(...args); }\n"
    "  catch (e) { if (!timerFailed) { timerFailed = true; timerError = e; } }\n"
    "}, ms);\n"
    "Object.defineProperty(globalThis, '__wsbx_timer_error', { configurable: true, value: () => {\n"
    "  const taken = timerFailed ? [timerError] : [];\n"
    "  timerFailed = false; timerError = undefined;\n"
    "  return taken;\n"
    "} });\n"
    "for (const [k, v] of Object.entries({ setTimeout, clearTimeout }))\n"
    "  Object.defineProperty(globalThis, k, { value: v, writable: true, configurable: true });\n"
    "Object.defineProperty(globalThis, '__wsbx_renew', { configurable: true, value: (env) => {\n"
    "  for (const k of Object.keys(getenviron())) unsetenv(k);\n"
    "  for (const [k, v] of env) setenv(k, v);\n"
    "} });\n"
)


class ScriptTurn(Protocol):
    """One request to a script runtime's instance."""

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int | None]:
        """(value, None), or (None, exit code) for a run; raises what the guest reported."""
        ...

    def rescue_output(self, instance: GuestInstance) -> None:
        """After a limit stopped the guest mid-turn: write out what its runtime still
        buffers (may raise ``GuestFailure``: the caller ignores it)."""
        ...


@dataclass(frozen=True, slots=True)
class PythonTurn:
    """Python: the request is one ``turn`` of the reactor; the answer comes through the door.
    The driver is sent along only to an instance that has not loaded it yet."""

    request: dict[str, Any]

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int | None]:
        frames: list[bytes] = []  # the last frame handed to the door: the turn's answer

        def door(frame: bytes) -> bytes:
            if frame.startswith(b'{"net"'):
                return net_request(ctx, frame)
            frames[:] = [frame]  # an earlier one is dropped, never piled up
            return b""

        def deliver(data: bytes, out_ptr: int, out_len: int) -> bool:
            ptr = int(instance.invoke("host_alloc", (len(data),), fuel=None)) & _MASK32
            return bool(ptr) and all(
                instance.write_memory(at, value)
                for at, value in (
                    (ptr, data),
                    (out_ptr, ptr.to_bytes(4, "little")),
                    (out_len, len(data).to_bytes(4, "little")),
                )
            )

        ctx.door = Door(door, deliver)
        try:
            statement = self._statement(instance)
            if statement is not None:  # a bare statement, unless the turn hook is missing
                status = self._send(instance, statement)
                if status != _UNHOOKED_STATUS or frames != [_UNHOOKED_FRAME]:
                    return self._answer(instance, ctx, self.request, frames, status)
                instance.raw_turns = False  # the statement did not run: send it as a request
                frames.clear()
            request = self._request(instance, ctx)
            status = self._send(instance, turn_code(request, boot=not instance.script_ready))
        finally:
            ctx.door = None  # its closures hold the context: no cycle outlives the turn
        return self._answer(instance, ctx, request, frames, status)

    def _statement(self, instance: GuestInstance) -> bytes | None:
        """A session statement's turn as the bare statement (the driver's turn hook runs it
        without parsing a request), when the instance is ready for one."""
        request = self.request
        if request["op"] != "exec" or not request.get("quiet") or instance.reseed:
            return None
        if not instance.script_ready or not instance.raw_turns:
            return None
        return statement_code(request["source"])

    def _request(self, instance: GuestInstance, ctx: WasiContext) -> dict[str, Any]:
        """The request as this instance needs it sent."""
        request = self.request
        if instance.reseed:  # made from a snapshot: fresh randomness, and this environment
            fresh: dict[str, Any] = {}
            if tuple(ctx.env) != instance.snapshot_env:
                fresh["env"] = [item.decode("utf-8", "surrogateescape") for item in ctx.env]
            request = {**request, "fresh": fresh}
        if not instance.script_ready and "quiet" in request:  # the answer says it booted
            request = {**request, "quiet": False}
        if ctx.streams.output is not None:  # streamed: print() reaches the host line by line
            request = {**request, "lines": 1}
        return request

    def rescue_output(self, instance: GuestInstance) -> None:
        """Flush the guest's ``sys.stdout`` and ``sys.stderr``: Python buffers what a script
        prints (8 KiB at a time) and a trap would lose it. A plain turn of the reactor, so it
        needs nothing of the driver; it runs on top of the stopped turn's frames, once the
        reactor's in-a-turn flag is cleared (``_reactor``: without it, nothing is done)."""
        flag = turn_flag(instance.digest)
        if flag is None or instance.read_memory(flag, 1) != b"\1":
            return
        instance.write_memory(flag, b"\0")
        instance.invoke_on_copy("host_alloc", "turn", _FLUSH)

    @staticmethod
    def _send(instance: GuestInstance, code: bytes) -> int:
        """Run one turn of ``code``; its status."""
        status = instance.invoke_on_copy("host_alloc", "turn", code)
        if status is None:
            raise e.GuestError("MemoryError", f"the guest could not allocate {len(code)} bytes")
        return status

    @staticmethod
    def _answer(
        instance: GuestInstance,
        ctx: WasiContext,
        request: dict[str, Any],
        frames: list[bytes],
        status: int,
    ) -> tuple[Any, int | None]:
        """The turn's answer: its last frame's, or a quiet request's success."""
        if not frames:
            if status != 0 or not request.get("quiet"):
                raise _no_answer(ctx, status)
            instance.reseed = False
            return None, None  # a quiet request that succeeded: {"ok": None}, unsent
        instance.script_ready = True  # the driver answered: it is loaded
        instance.reseed = False
        return decode_frame(frames[-1])


@dataclass(frozen=True, slots=True)
class JavaScriptTurn:
    """JavaScript: the guest's code evaluated as a global script (its value or exception
    stashed), then the driver's ``main``; a promise is settled by running the event loop."""

    request: dict[str, Any]
    code: str | None  # the guest code to evaluate first, if any
    filename: str
    prelude: tuple[str, str] | None = None  # (code, filename) evaluated before ``code``

    def run(self, instance: GuestInstance, ctx: WasiContext) -> tuple[Any, int | None]:
        js = _QuickJs(instance)
        if instance.reseed:
            js.renew(ctx)
        if self.request["op"] == "boot":  # to be snapshotted: Math.random must be reseedable
            js.random_state()
        if self.prelude is not None:  # the sandbox's script, before a code cell
            value = js.eval(*self.prelude)
            if _is_exception(value):
                js.stash(_STASH_ERROR, int(instance.invoke("JS_GetException", (js.ctx,), None)))
                return self._answer(js, ctx)
            js.free(value)
        if self.code is not None:
            value = js.eval(self.code, self.filename)
            if _is_exception(value):
                js.stash(_STASH_ERROR, int(instance.invoke("JS_GetException", (js.ctx,), None)))
            else:
                js.stash(_STASH_VALUE, value)
            if self.request["op"] in ("run", "preinit"):  # what they start finishes now
                js.settle(ctx)
        return self._answer(js, ctx)

    def _answer(self, js: _QuickJs, ctx: WasiContext) -> tuple[Any, int | None]:
        """The driver's answer to the request (a promise settled first)."""
        text = json.dumps(self.request, separators=(",", ":"))
        answer = js.string(js.eval(f"__wsbx.main({text})", "<wsbx>"))
        if answer == b'{"pending":true}':
            js.settle(ctx)
            answer = js.string(js.eval("__wsbx.take()", "<wsbx>"))
        elif self.request["op"] == "cell":
            # A cell's timers and fetches finish too: after its value was answered (a promise
            # it ends with is awaited above, its handlers attached before the loop runs, so
            # a rejection is the cell's error, not an unhandled one); a timer that threw
            # meanwhile is the cell's error.
            js.settle(ctx)
            late = js.string(js.eval("__wsbx.late()", "<wsbx>"))
            if late:
                answer = late
        return _js_frame(answer, ctx)

    def rescue_output(self, instance: GuestInstance) -> None:
        """Nothing to do: QuickJS's ``console.log`` writes through (each call reaches the
        host before it returns)."""


def _js_frame(answer: bytes, ctx: WasiContext) -> tuple[Any, int | None]:
    """Decode the driver's answer; an uncaught error of a run goes to stderr first."""
    if answer.startswith(b'{"exit"'):
        frame = _json(answer, "answer")
        if isinstance(frame, dict):
            stderr = frame.pop("stderr", None)
            if isinstance(stderr, str):
                ctx.streams.stderr.write(stderr.encode("utf-8", "replace"))
            try:
                answer = json.dumps(frame).encode()
            except RecursionError:
                raise e.GuestError("ProtocolError", "the guest's answer nests too deeply") from None
    return decode_frame(answer)


def _json(text: bytes, what: str) -> Any:
    """Parse what the JavaScript driver said; whatever it is, never a host exception (guest
    code can replace the builtins the driver uses)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise e.GuestError("ProtocolError", f"the JavaScript driver's {what} is not JSON") from None


def _request_id(value: Any) -> int:
    if type(value) is not int or not 0 < value < _MAX_SAFE_INTEGER:
        raise e.GuestError("ProtocolError", "the JavaScript driver's request queue is malformed")
    return value


class _QuickJs:
    """The few QuickJS-NG C-API calls a turn makes, through the instance's exports."""

    def __init__(self, instance: GuestInstance) -> None:
        self.instance = instance
        ctx = int(instance.invoke("qjs_get_context", (), None))
        if ctx == 0:  # a fresh instance: start the engine, then our driver, before guest code
            if int(instance.invoke("qjs_init", (), None)) != 0:
                raise e.GuestError("InternalError", "QuickJS could not start (out of memory?)")
            self.ctx = ctx = int(instance.invoke("qjs_get_context", (), None))
            self.free(self.eval(_TIMERS, "<wsbx>", module=True))
            self.loop()
            instance.script_ready = True
            booted = self.eval(JS_BOOT, "<wsbx>")
            if _is_exception(booted):
                raise e.GuestError("InternalError", "the JavaScript driver did not start")
            self.free(booted)
        self.ctx = ctx

    def renew(self, ctx: WasiContext) -> None:
        """A new instance made from a snapshot: its own environment, and a Math.random
        stream of its own."""
        seed = int.from_bytes(os.urandom(8), "little") or 1
        self.instance.write_memory(self.random_state(), seed.to_bytes(8, "little"))
        if tuple(ctx.env) != self.instance.snapshot_env:
            pairs = [item.decode("utf-8", "replace").split("=", 1) for item in ctx.env]
            env = json.dumps([pair for pair in pairs if len(pair) == 2])
            self.free(self.eval(f"__wsbx.renew({env})", "<wsbx>"))
        self.instance.reseed = False

    def random_state(self, ctx: int | None = None) -> int:
        """The address of the context's Math.random state (QuickJS's xorshift64*: the state
        x gives the mantissa (x * 0x2545F4914F6CDD1D) >> 12), found once per module and
        context by matching one draw, then checked by predicting the next one."""
        ctx = self.ctx if ctx is None else ctx
        key = (self.instance.digest, ctx)
        found = _RANDOM_STATES.get(key)
        if found is not None:
            return found
        self.ctx = ctx
        mantissa = self._draw()
        region = self.instance.read_memory(ctx, _CONTEXT_SCAN) or b""
        words = memoryview(region).cast("B")[: len(region) // 8 * 8].cast("Q")
        for index, word in enumerate(words):
            if ((word * _XORSHIFT_MULT) & _MASK64) >> 12 == mantissa:
                address = ctx + 8 * index
                probe = 0x9E3779B97F4A7C15
                self.instance.write_memory(address, probe.to_bytes(8, "little"))
                if self._draw() == ((_xorshift(probe) * _XORSHIFT_MULT) & _MASK64) >> 12:
                    _RANDOM_STATES[key] = address
                    return address
        raise e.GuestError("InternalError", "Math.random's state was not found in this QuickJS")

    def _draw(self) -> int:
        """One Math.random() draw's 52 mantissa bits."""
        text = self.string(self.eval("String(Math.random())", "<wsbx>"))
        try:  # guest code may have replaced Math.random: its answer is untrusted text
            bits: int = struct.unpack("<Q", struct.pack("<d", float(text) + 1.0))[0]
        except ValueError:
            raise e.GuestError("InternalError", "Math.random does not answer a number") from None
        return bits & ((1 << 52) - 1)

    def _cstring(self, data: bytes) -> int:
        ptr = int(self.instance.invoke("malloc", (len(data),), None)) & _MASK32
        if ptr == 0 or not self.instance.write_memory(ptr, data):
            raise e.GuestError("InternalError", "out of memory")
        return ptr

    def _free_ptr(self, ptr: int) -> None:
        self.instance.invoke("free", (ptr,), None)

    def eval(self, code: str, filename: str, module: bool = False) -> int:
        source = code.encode("utf-8", "surrogatepass")
        src = self._cstring(source + b"\0")
        name = self._cstring(filename.encode("utf-8", "replace") + b"\0")
        flags = _EVAL_MODULE if module else _EVAL_GLOBAL
        try:
            args = (self.ctx, src, len(source), name, flags)
            return int(self.instance.invoke("JS_Eval", args, None))
        finally:
            self._free_ptr(src)
            self._free_ptr(name)

    def stash(self, prop: bytes, value: int) -> None:
        """``globalThis[prop] = value`` (takes ownership of ``value``)."""
        glob = int(self.instance.invoke("JS_GetGlobalObject", (self.ctx,), None))
        name = self._cstring(prop)
        try:
            self.instance.invoke("JS_SetPropertyStr", (self.ctx, glob, name, value), None)
        finally:
            self._free_ptr(name)
            self.free(glob)

    def free(self, value: int) -> None:
        self.instance.invoke("JS_FreeValue", (self.ctx, value), None)

    def string(self, value: int, limit: int | None = None) -> bytes:
        """The UTF-8 bytes of a string value (freed); a ProtocolError if it is longer than
        ``limit`` (then it is not read)."""
        if _is_exception(value):
            raise e.GuestError("InternalError", "the JavaScript driver failed (out of memory?)")
        length_ptr = self._cstring(b"\0\0\0\0")
        try:
            ptr = int(
                self.instance.invoke("JS_ToCStringLen2", (self.ctx, length_ptr, value, 0), None)
            )
            if ptr == 0:
                raise e.GuestError("InternalError", "the JavaScript driver's answer is unreadable")
            raw = self.instance.read_memory(length_ptr, 4)
            length = int.from_bytes(raw or b"\0\0\0\0", "little")
            too_long = limit is not None and length > limit
            data = None if too_long else self.instance.read_memory(ptr & _MASK32, length)
            self.instance.invoke("JS_FreeCString", (self.ctx, ptr), None)
        finally:
            self._free_ptr(length_ptr)
            self.free(value)
        if too_long:
            raise e.GuestError("ProtocolError", "the JavaScript driver's answer is too long")
        if data is None:
            raise e.GuestError("InternalError", "the JavaScript driver's answer is out of memory")
        return data

    def clear_exception(self) -> None:
        """Drop the exception an evaluation left pending."""
        self.free(int(self.instance.invoke("JS_GetException", (self.ctx,), None)))

    def loop(self) -> None:
        """Run pending jobs and timers until none is left (``js_std_loop``)."""
        self.instance.invoke("js_std_loop", (self.ctx,), None)

    def settle(self, ctx: WasiContext) -> None:
        """Run the event loop, serving the guest's ``fetch`` requests between runs, until
        nothing is left to do."""
        while True:
            self.loop()
            text = self.string(self.eval("__wsbx.requests()", "<wsbx>"), _MAX_QUEUE_TEXT)
            queued = _json(text, "request queue")
            if not isinstance(queued, list):
                raise e.GuestError("ProtocolError", "the JavaScript driver's queue is malformed")
            if not queued:
                return
            for request in queued:
                self.fetch(ctx, request)

    def fetch(self, ctx: WasiContext, request: Any) -> None:
        """Make one queued request; its body crosses in pieces both ways (``upload`` pulls
        the request's, ``chunk`` pushes the response's), then ``respond`` settles it."""
        ident = _request_id(request.get("id") if isinstance(request, dict) else None)

        def pull(start: int, end: int) -> bytes:
            value = self.eval(f"__wsbx.upload({ident},{int(start)},{int(end)})", "<wsbx>")
            text = self.string(value, 4 * (end - start) // 3 + 8)
            try:
                return base64.b64decode(text, validate=True)
            except ValueError:
                return b""

        def push(piece: bytes) -> bool:
            encoded = base64.b64encode(piece).decode("ascii")
            try:
                value = self.eval(f'__wsbx.chunk({ident},"{encoded}")', "<wsbx>")
            except e.GuestError:  # no room for the piece's text in the guest
                return False
            if _is_exception(value):
                self.clear_exception()
                return False
            self.free(value)
            return True

        result = http_exchange(ctx, request, pull, push)
        reply = json.dumps(result, separators=(",", ":"))
        self.free(self.eval(f"__wsbx.respond({ident}, {reply})", "<wsbx>"))


_XORSHIFT_MULT = 0x2545F4914F6CDD1D
_MASK64 = (1 << 64) - 1
_CONTEXT_SCAN = 16384  # bytes of the JSContext searched for the state
_RANDOM_STATES: dict[tuple[str, int], int] = {}  # (module digest, context) -> state's address


def _xorshift(x: int) -> int:
    """QuickJS's xorshift64* step (the state after one draw)."""
    x ^= x >> 12
    x ^= (x << 25) & _MASK64
    x ^= x >> 27
    return x


def _is_exception(value: int) -> bool:
    return ((value & 0xFFFFFFFFFFFFFFFF) >> 32) == _TAG_EXCEPTION


def _no_answer(ctx: WasiContext, status: int) -> e.GuestError:
    tail = bytes(ctx.streams.stderr.data[-2000:]).decode("utf-8", "replace").strip()
    return e.GuestError(
        "ProtocolError",
        f"the guest ended its turn (status {status}) without an answer"
        + (f"; it wrote:\n{tail}" if tail else ""),
    )


def script_turn(
    language: str, request: dict[str, Any], code: str | None, filename: str
) -> ScriptTurn:
    """The turn that carries ``request`` (and, for JavaScript, the guest ``code`` to evaluate
    first) to a ``language`` runtime. For Python, ``code`` is already in the request."""
    if language == "python":
        return PythonTurn(request)
    return JavaScriptTurn(request, code, filename)

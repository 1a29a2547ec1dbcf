"""The guest half of the JavaScript protocol: code that runs inside QuickJS-NG.

``BOOT`` runs once per instance, before any guest code, and defines the hidden global
``__wsbx``. A turn evaluates the guest's code as a global script (so its top-level ``let``,
``const`` and functions persist, as in a browser's successive scripts); the host stashes the
completion value as ``__wsbx_val`` or the exception as ``__wsbx_exc``; then
``__wsbx.main(request)`` returns the answer as one JSON string, the same envelope as the other
guests: ``{"ok": value}``, ``{"error": {"type", "message", "traceback"}}``,
``{"exit": code}``, ``{"missing": {...}}`` or ``{"pending": true}`` when the value is a
promise (the host then runs the event loop and asks ``__wsbx.take()``). Bytes travel as
``{"$bytes": "<base64>"}`` and arrive as ``Uint8Array``.

This text is guest code: it is never executed by the host.
"""

from __future__ import annotations

__all__ = ["BOOT"]

BOOT = r"""
(function () {
  const renew = globalThis.__wsbx_renew; // set by the host's first module (the environment)
  delete globalThis.__wsbx_renew;
  const timerErrors = globalThis.__wsbx_timer_error; // [] or [the first error a timer threw]
  delete globalThis.__wsbx_timer_error;
  const hostRead = globalThis.__wsbx_hostread; // qjs:os read, set by the host's first module
  delete globalThis.__wsbx_hostread;
  const builtins = new Set([...Object.getOwnPropertyNames(globalThis), "fetch", "host"]);
  let pending = null;

  function fromJson(v) {
    if (Array.isArray(v)) return v.map(fromJson);
    if (v !== null && typeof v === "object") {
      const keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === "$bytes" && typeof v.$bytes === "string")
        return Uint8Array.fromBase64(v.$bytes);
      const o = {};
      for (const k of keys) o[k] = fromJson(v[k]);
      return o;
    }
    return v;
  }

  function replacer(key, value) {
    if (value instanceof ArrayBuffer) value = new Uint8Array(value);
    if (value instanceof Uint8Array) return { $bytes: value.toBase64() };
    if (value instanceof Set) return Array.from(value);
    const kind = typeof value;
    if (kind === "number" && !Number.isFinite(value)) return null; // as Python's NaN: None
    if (kind === "bigint" || kind === "function" || kind === "symbol" || value instanceof Map)
      throw new TypeError(
        `a value of type ${value instanceof Map ? "Map" : kind} cannot be returned to the ` +
          "host: return JSON values (null, boolean, number, string, array, object) or a Uint8Array"
      );
    return value;
  }

  // A code cell's value: what JSON lacks becomes its nearest JSON form, never an error.
  function looseReplacer(key, value) {
    if (value instanceof ArrayBuffer) value = new Uint8Array(value);
    if (value instanceof Uint8Array) return { $bytes: value.toBase64() };
    if (ArrayBuffer.isView(value)) return Array.from(value, (v) => (typeof v === "bigint" ? looseReplacer("", v) : v));
    if (value instanceof Set) return Array.from(value);
    if (value instanceof Map) {
      const o = {};
      for (const [k, v] of value) o[String(k)] = v;
      return o;
    }
    if (value instanceof Error) return { type: value.name || "Error", message: String(value.message) };
    const kind = typeof value;
    if (kind === "number" && !Number.isFinite(value)) return null;
    if (kind === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : String(value);
    if (kind === "function" || kind === "symbol") return String(value);
    return value;
  }

  function encodeLoose(value) {
    try {
      return JSON.stringify({ ok: value === undefined ? null : value }, looseReplacer);
    } catch (e) {
      let text;
      try {
        text = String(value);
      } catch (e2) {
        text = Object.prototype.toString.call(value);
      }
      return JSON.stringify({ ok: text });
    }
  }

  function ownFrames(stack) {
    return String(stack || "").split("\n").filter((line) => !line.includes("(<wsbx>")).join("\n");
  }

  function errorOf(e) {
    if (e instanceof Error)
      return { type: e.name || "Error", message: String(e.message), traceback: ownFrames(e.stack) };
    const type = e !== null && typeof e === "object" ? (e.constructor && e.constructor.name) || "Object" : typeof e;
    return { type: type, message: String(e), traceback: "" };
  }

  function failure(e) {
    const frame = { error: errorOf(e) };
    if (e instanceof InternalError && /out of memory/.test(String(e.message))) frame.oom = true;
    if (e instanceof RangeError && /invalid array (buffer )?length/.test(String(e.message))) frame.oom = true;
    return frame;
  }

  function encode(frame) {
    try {
      return JSON.stringify(frame, replacer);
    } catch (e) {
      return JSON.stringify(failure(e));
    }
  }

  function answer(value, loose) {
    if (value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function") {
      const p = (pending = { state: "pending", loose: loose === true });
      value.then((v) => { p.state = "ok"; p.value = v; }, (e) => { p.state = "error"; p.error = e; });
      return JSON.stringify({ pending: true });
    }
    if (loose === true) return encodeLoose(value);
    return encode({ ok: value === undefined ? null : value });
  }

  function lookup(name) {
    if (!/^[A-Za-z_$][\w$]*$/.test(name)) return undefined;
    try {
      return (0, eval)(name);
    } catch (e) {
      return undefined;
    }
  }

  function available() {
    return Object.getOwnPropertyNames(globalThis)
      .filter((k) => !builtins.has(k) && !k.startsWith("__wsbx") && typeof globalThis[k] === "function")
      .sort();
  }

  function call(req) {
    const fn = lookup(req.fn);
    if (typeof fn !== "function") return JSON.stringify({ missing: { name: req.fn, available: available() } });
    const args = fromJson(JSON.parse(req.args));
    const kwargs = fromJson(JSON.parse(req.kwargs));
    if (Object.keys(kwargs).length > 0) args.push(kwargs);
    return answer(fn(...args));
  }

  function step() {
    const had = Object.prototype.hasOwnProperty.call(globalThis, "__wsbx_exc");
    const exc = globalThis.__wsbx_exc;
    const val = globalThis.__wsbx_val;
    delete globalThis.__wsbx_exc;
    delete globalThis.__wsbx_val;
    return { failed: had, exc: exc, val: val };
  }

  function main(req) {
    const s = step();
    try {
      if (req.op === "run") {
        // As node: an uncaught error, in the script or in a timer it set, ends it with 1.
        const late = timerErrors();
        if (s.failed || late.length > 0) {
          const e = errorOf(s.failed ? s.exc : late[0]);
          const text = `${e.type}: ${e.message}\n${e.traceback}`;
          return JSON.stringify({ exit: 1, stderr: text });
        }
        return JSON.stringify({ exit: 0 });
      }
      if (s.failed) return encode(failure(s.exc));
      if (req.op === "call" || req.op === "scall") return call(req);
      if (req.op === "eval") return answer(s.val);
      if (req.op === "cell") return answer(s.val, true);
      const late = timerErrors(); // a setup's (preinit) or a script's (load) timers
      if (late.length > 0) return encode(failure(late[0]));
      return encode({ ok: null });
    } catch (e) {
      return encode(failure(e));
    }
  }

  function lateError() {
    const late = timerErrors();
    return late.length > 0 ? encode(failure(late[0])) : "";
  }

  function take() {
    const p = pending;
    pending = null;
    if (p === null || p.state === "pending")
      return encode({ error: { type: "Error", message: "the promise never settled (nothing was left to run)", traceback: "" } });
    if (p.state === "error") return encode(failure(p.error));
    const late = timerErrors(); // a timer that threw while the promise was awaited
    if (late.length > 0) return encode(failure(late[0]));
    if (p.loose) return encodeLoose(p.value);
    return encode({ ok: p.value === undefined ? null : p.value });
  }

  // fetch(): the host makes the request (after its network policy) between event-loop runs.
  // Bodies cross in pieces, so the host never holds one whole: it pulls the request body with
  // upload() and pushes the response body with chunk(), then settles it with respond().
  const outbox = [];
  const waiting = new Map();
  let nextRequest = 1;
  const MAX_TEXT = 65536;
  const ASCII = /^[\x00-\x7f]*$/;

  function bodyOf(body) {
    if (body instanceof ArrayBuffer) return new Uint8Array(body);
    if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    const text = String(body).toWellFormed();
    return ASCII.test(text) ? text : unescape(encodeURIComponent(text)); // UTF-8, a char per byte
  }

  function fetch(resource, init) {
    init = init || {};
    let request;
    try {
      for (const key of Object.keys(init)) {
        if (!["method", "headers", "body"].includes(key))
          throw new TypeError(`fetch option ${key} is not supported in the sandbox`);
      }
      const url = String(resource);
      const headers = {};
      let length = url.length;
      for (const [k, v] of Object.entries(init.headers || {})) {
        headers[k] = String(v);
        length += k.length + headers[k].length;
      }
      if (length > MAX_TEXT) throw new TypeError(`fetch: the URL and headers exceed ${MAX_TEXT} characters`);
      const body = init.body === undefined || init.body === null ? null : bodyOf(init.body);
      request = { url: url, method: String(init.method || "GET"), headers: headers, body: body };
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const id = nextRequest++;
      const size = request.body === null ? null : request.body.length;
      outbox.push({ id: id, url: request.url, method: request.method, headers: request.headers, size: size });
      waiting.set(id, { resolve: resolve, reject: reject, body: request.body, pieces: [], size: 0 });
    });
  }

  function upload(id, start, end) {
    const w = waiting.get(id);
    if (w === undefined || w.body === null) return "";
    const part = w.body.slice(start, end);
    return typeof part === "string" ? btoa(part) : part.toBase64();
  }

  function chunk(id, encoded) {
    const w = waiting.get(id);
    if (w === undefined) return;
    const piece = Uint8Array.fromBase64(encoded);
    w.pieces.push(piece);
    w.size += piece.length;
  }

  function joined(pieces, size) {
    if (pieces.length === 1) return pieces[0];
    const out = new Uint8Array(size);
    let at = 0;
    for (const piece of pieces) {
      out.set(piece, at);
      at += piece.length;
    }
    return out;
  }

  // UTF-8 to text with U+FFFD for each maximal ill-formed subsequence (as TextDecoder does).
  function decodeLoose(bytes) {
    const parts = [];
    let codes = [];
    for (let i = 0; i < bytes.length; ) {
      const b = bytes[i];
      let need = 0, cp = 0, lower = 0x80, upper = 0xbf;
      if (b < 0x80) { codes.push(b); i++; }
      else {
        if (b >= 0xc2 && b <= 0xdf) { need = 1; cp = b & 0x1f; }
        else if (b >= 0xe0 && b <= 0xef) { need = 2; cp = b & 0x0f; if (b === 0xe0) lower = 0xa0; if (b === 0xed) upper = 0x9f; }
        else if (b >= 0xf0 && b <= 0xf4) { need = 3; cp = b & 0x07; if (b === 0xf0) lower = 0x90; if (b === 0xf4) upper = 0x8f; }
        if (need === 0) { codes.push(0xfffd); i++; }
        else {
          let j = i + 1, k = 0;
          for (; k < need && j < bytes.length; k++, j++) {
            const c = bytes[j];
            if (c < lower || c > upper) break; // not consumed: the next sequence starts here
            cp = (cp << 6) | (c & 0x3f);
            lower = 0x80;
            upper = 0xbf;
          }
          codes.push(k === need ? cp : 0xfffd);
          i = j;
        }
      }
      if (codes.length >= 8192) { parts.push(String.fromCodePoint(...codes)); codes = []; }
    }
    parts.push(String.fromCodePoint(...codes));
    return parts.join("");
  }

  function utf8(bytes) {
    if (bytes.length === 0) return "";
    const binary = atob(bytes.toBase64());
    if (ASCII.test(binary)) return binary;
    try {
      return decodeURIComponent(escape(binary));
    } catch (e) {
      return decodeLoose(bytes);
    }
  }

  function response(r, pieces, size) {
    let used = false;
    const body = () => {
      if (used) throw new TypeError("the body has already been read");
      used = true;
      const bytes = joined(pieces, size);
      pieces = null;
      return bytes;
    };
    return {
      status: r.status,
      statusText: r.reason,
      ok: r.status >= 200 && r.status < 300,
      url: r.url,
      headers: {
        get: (name) => (r.headers[String(name).toLowerCase()] ?? null),
        has: (name) => String(name).toLowerCase() in r.headers,
        entries: () => Object.entries(r.headers)[Symbol.iterator](),
      },
      text: async () => utf8(body()),
      json: async () => JSON.parse(utf8(body())),
      arrayBuffer: async () => body().buffer,
    };
  }

  function requests() {
    return JSON.stringify(outbox.splice(0, 16));
  }

  function respond(id, result) {
    const w = waiting.get(id);
    waiting.delete(id);
    if (!w) return;
    if (result.error !== undefined) w.reject(new TypeError(`fetch failed: ${result.error}`));
    else w.resolve(response(result, w.pieces, w.size));
  }

  // host.name(...): a host function, called with one read of the host's channel descriptor
  // (never open; see _wasi/_hostcalls.py): the buffer goes in with a u32 length and the
  // request, and comes back with the answer's u32 length and as much of it as fits. Both
  // are ASCII JSON (so base64 moves them between strings and bytes natively).
  const HOST_FD = 0x7fffff00;
  const NON_ASCII = /[\u007f-\uffff]/g;
  const NATIVE_ERRORS = { TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };
  let hostBuffer = null;

  function hostRound(buf) {
    const got = hostRead(HOST_FD, buf.buffer, 0, buf.length);
    if (got < 4) throw new Error(`the host function channel failed (${got})`);
    return [new DataView(buf.buffer).getUint32(0, true), buf.subarray(4, got)];
  }

  function hostExchange(text) {
    const size = text.length;
    const buf = size + 4 <= 16384 ? (hostBuffer ??= new Uint8Array(16384)) : new Uint8Array(size + 4);
    new DataView(buf.buffer).setUint32(0, size, true);
    buf.set(Uint8Array.fromBase64(btoa(text)), 4);
    let [total, bytes] = hostRound(buf);
    if (total > bytes.length) {
      const [, more] = hostRound(new Uint8Array(total - bytes.length + 4));
      const all = new Uint8Array(bytes.length + more.length);
      all.set(bytes);
      all.set(more, bytes.length);
      bytes = all;
    }
    return atob(bytes.toBase64());
  }

  function hostError(e) {
    const type = String((e && e.type) || "Error");
    const message = String((e && e.message) || "");
    const Native = NATIVE_ERRORS[type];
    const error = Native ? new Native(message) : new Error(message);
    if (!Native) error.name = type;
    return error;
  }

  function hostCall(name, args) {
    const request = JSON.stringify({ host: name, args: args }, replacer);
    const text = request.replace(NON_ASCII, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
    const answer = JSON.parse(hostExchange(text));
    if (answer !== null && typeof answer === "object" && "ok" in answer) return fromJson(answer.ok);
    throw hostError(answer && answer.error);
  }

  const host = new Proxy(Object.create(null), {
    get: (target, name) => (typeof name === "string" && name !== "then" ? (...args) => hostCall(name, args) : undefined),
  });

  Object.defineProperty(globalThis, "host", { value: host, writable: true, configurable: true });
  Object.defineProperty(globalThis, "fetch", { value: fetch, writable: true, configurable: true });
  Object.defineProperty(globalThis, "__wsbx", {
    value: Object.freeze({ main: main, take: take, late: lateError, requests: requests, upload: upload, chunk: chunk, respond: respond, renew: renew }),
    enumerable: false,
  });
})();
"""

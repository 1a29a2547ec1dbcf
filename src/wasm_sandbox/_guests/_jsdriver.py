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
  const builtins = new Set([...Object.getOwnPropertyNames(globalThis), "fetch"]);
  let pending = null;

  function fromJson(v) {
    if (Array.isArray(v)) return v.map(fromJson);
    if (v !== null && typeof v === "object") {
      const keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === "$bytes" && typeof v.$bytes === "string") {
        const s = atob(v.$bytes);
        const out = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
        return out;
      }
      const o = {};
      for (const k of keys) o[k] = fromJson(v[k]);
      return o;
    }
    return v;
  }

  function replacer(key, value) {
    if (value instanceof ArrayBuffer) value = new Uint8Array(value);
    if (value instanceof Uint8Array) {
      let s = "";
      for (let i = 0; i < value.length; i++) s += String.fromCharCode(value[i]);
      return { $bytes: btoa(s) };
    }
    if (value instanceof Set) return Array.from(value);
    const kind = typeof value;
    if (kind === "number" && !Number.isFinite(value))
      throw new TypeError(`${value} cannot be returned to the host: JSON has no NaN or infinity`);
    if (kind === "bigint" || kind === "function" || kind === "symbol" || value instanceof Map)
      throw new TypeError(
        `a value of type ${value instanceof Map ? "Map" : kind} cannot be returned to the ` +
          "host: return JSON values (null, boolean, number, string, array, object) or a Uint8Array"
      );
    return value;
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

  function answer(value) {
    if (value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function") {
      const p = (pending = { state: "pending" });
      value.then((v) => { p.state = "ok"; p.value = v; }, (e) => { p.state = "error"; p.error = e; });
      return JSON.stringify({ pending: true });
    }
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
        if (s.failed) {
          const e = errorOf(s.exc);
          const text = `${e.type}: ${e.message}\n${e.traceback}`;
          return JSON.stringify({ exit: 1, stderr: text });
        }
        return JSON.stringify({ exit: 0 });
      }
      if (s.failed) return encode(failure(s.exc));
      if (req.op === "call" || req.op === "scall") return call(req);
      if (req.op === "eval") return answer(s.val);
      return encode({ ok: null });
    } catch (e) {
      return encode(failure(e));
    }
  }

  function take() {
    const p = pending;
    pending = null;
    if (p === null || p.state === "pending")
      return encode({ error: { type: "Error", message: "the promise never settled (nothing was left to run)", traceback: "" } });
    if (p.state === "error") return encode(failure(p.error));
    return encode({ ok: p.value === undefined ? null : p.value });
  }

  // fetch(): the host makes the request (after its network policy) between event-loop runs.
  const outbox = [];
  const waiting = new Map();
  let nextRequest = 1;

  function fetch(resource, init) {
    init = init || {};
    for (const key of Object.keys(init)) {
      if (!["method", "headers", "body"].includes(key))
        return Promise.reject(new TypeError(`fetch option ${key} is not supported in the sandbox`));
    }
    return new Promise((resolve, reject) => {
      const id = nextRequest++;
      const body = init.body === undefined || init.body === null ? null : String(init.body);
      const headers = {};
      for (const [k, v] of Object.entries(init.headers || {})) headers[k] = String(v);
      outbox.push({ id: id, url: String(resource), method: String(init.method || "GET"), headers: headers, body: body });
      waiting.set(id, { resolve: resolve, reject: reject });
    });
  }

  function response(r) {
    const bytes = fromJson({ $bytes: r.body64 });
    let used = false;
    const consume = () => {
      if (used) throw new TypeError("the body has already been read");
      used = true;
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
      text: async () => { consume(); return r.text; },
      json: async () => { consume(); return JSON.parse(r.text); },
      arrayBuffer: async () => { consume(); return bytes.buffer; },
    };
  }

  function requests() {
    return JSON.stringify(outbox.splice(0, outbox.length));
  }

  function respond(id, result) {
    const pending = waiting.get(id);
    waiting.delete(id);
    if (!pending) return;
    if (result.error !== undefined) pending.reject(new TypeError(`fetch failed: ${result.error}`));
    else pending.resolve(response(result));
  }

  Object.defineProperty(globalThis, "fetch", { value: fetch, writable: true, configurable: true });
  Object.defineProperty(globalThis, "__wsbx", {
    value: Object.freeze({ main: main, take: take, requests: requests, respond: respond }),
    enumerable: false,
  });
})();
"""

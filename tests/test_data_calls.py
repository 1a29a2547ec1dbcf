"""Calls with structured data through the JSON data ABI, on a C guest that implements the
ABI by hand: values in and out, bytes, guest errors, malformed guest output, limits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.conftest import CLANG


@pytest.fixture(scope="module")
def data_guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data-guest") / "data_abi.wasm"
    src = Path(__file__).parent / "guests" / "data_abi.c"
    subprocess.run(
        [
            CLANG or "clang-14",
            "--target=wasm32-wasi",
            "-O2",
            "-mexec-model=reactor",
            "-o",
            str(out),
            str(src),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def guest(data_guest: Path) -> ws.WasmSandbox:
    return ws.WasmSandbox.builder().source(data_guest).build()


@pytest.mark.parametrize(
    "args",
    [
        ({"rows": [1, 2, 3], "name": "ünïcödé 🎉", "nested": {"a": [None, True, False, 1.5]}},),
        (1, "two", [3], {"four": 4}),
        (),
        (2**53, -0.0, 1e300, 'quote " backslash \\ newline \n'),
    ],
    ids=["object", "mixed", "none", "edge-numbers"],
)
def test_values_round_trip(guest: ws.WasmSandbox, args: tuple[object, ...]) -> None:
    """Arguments arrive as a JSON array; the guest's value comes back as Python values."""
    assert guest.call("echo", *args) == list(args)


def test_bytes_travel_as_base64(guest: ws.WasmSandbox) -> None:
    """bytes go as {"$bytes": base64} and come back as bytes."""
    blob = bytes(range(256)) * 10
    assert guest.call("echo", blob, {"inner": b"\x00\xff"}) == [blob, {"inner": b"\x00\xff"}]


def test_guest_error_is_raised_with_its_fields(guest: ws.WasmSandbox) -> None:
    """An {"error": ...} envelope raises GuestError with the guest's type, message, traceback."""
    with pytest.raises(ws.GuestError, match=r"^ValueError: bad rows$") as info:
        guest.call("fail", {"rows": []})
    assert (info.value.type, info.value.guest_message) == ("ValueError", "bad rows")
    assert info.value.guest_traceback == "at fail()"
    assert info.value.report.outcome == "GuestError"


@pytest.mark.parametrize(
    ("function", "message"),
    [("garbage", "not valid JSON"), ("wild", "outside memory")],
)
def test_malformed_guest_output_is_a_protocol_error(
    guest: ws.WasmSandbox, function: str, message: str
) -> None:
    """Output that is not a JSON envelope, or lies outside memory, is a ProtocolError."""
    with pytest.raises(ws.GuestError, match=message) as info:
        guest.call(function)
    assert info.value.type == "ProtocolError"


def test_numeric_functions_of_a_data_module_stay_numeric(guest: ws.WasmSandbox) -> None:
    """Only (ptr, len) -> i64 exports are data functions; others take numbers as before."""
    assert guest.call("add", 2, 3) == 5


@pytest.mark.parametrize(
    ("value", "message"),
    [(float("nan"), "NaN"), ({1: "x"}, "keys must be str"), ({1, 2}, "set cannot be sent")],
    ids=["nan", "int-key", "set"],
)
def test_values_json_cannot_carry_are_refused(
    guest: ws.WasmSandbox, value: object, message: str
) -> None:
    """Only JSON values and bytes cross: anything else is InvalidArguments before the call."""
    with pytest.raises(ws.InvalidArguments, match=message):
        guest.call("echo", value)


def test_input_larger_than_the_memory_cap_is_memory_limit_exceeded(data_guest: Path) -> None:
    """A payload the guest cannot allocate under its cap raises MemoryLimitExceeded."""
    sb = ws.WasmSandbox.builder().source(data_guest).memory_limit(2 * 1024 * 1024).build()
    assert sb.call("length", "x" * 1000) == len('["' + "x" * 1000 + '"]')
    with pytest.raises(ws.MemoryLimitExceeded):
        sb.call("length", "x" * (4 * 1024 * 1024))


def test_data_calls_are_isolated_and_do_not_grow_memory(data_guest: Path) -> None:
    """Isolated data calls start from fresh memory; a kept instance frees what each call used."""
    kept = ws.WasmSandbox.builder().source(data_guest).keep_instance(True).build()
    reports = [
        kept.call_with_detailed_monitoring("echo", "y" * 100_000).resource_report for _ in range(50)
    ]
    assert reports[-1].peak_memory_bytes == reports[5].peak_memory_bytes


def test_async_data_call(data_guest: Path) -> None:
    """The asyncio twin takes data too."""
    import asyncio  # noqa: PLC0415 - only this test needs it

    async def main() -> object:
        sb = await ws.WasmSandbox.builder().source(data_guest).build_async()
        return await sb.call("echo", {"k": [1]})

    assert asyncio.run(main()) == [{"k": [1]}]


RUST_TOOL = r"""
include!("wasm_sandbox.rs");

fn total(input: Value) -> Result<Value, String> {
    let rows = input.get("rows").and_then(Value::as_array).ok_or("rows: expected a list")?;
    let sum: f64 = rows.iter().filter_map(Value::as_f64).sum();
    Ok(Value::object(vec![("sum", Value::from(sum)), ("count", Value::from(rows.len() as i64))]))
}
wasm_sandbox_export!(process_data => total);
"""

C_TOOL = r"""
#include "wasm_sandbox.h"
static char *describe(const char *args, size_t len, const char **error_type) {
    (void)error_type;
    if (len <= 2) return wsbx_error("ValueError", "expected arguments");
    wsbx_builder b; wsbx_builder_init(&b);
    wsbx_json_begin_object(&b);
    wsbx_json_key(&b, "args"); wsbx_json_raw(&b, args);
    wsbx_json_key(&b, "length"); wsbx_json_number(&b, (double)len);
    wsbx_json_end_object(&b);
    return wsbx_builder_finish(&b);
}
WASM_SANDBOX_EXPORT(process_data, describe)
"""


def test_rust_guest_with_the_shipped_helper(tmp_path: Path) -> None:
    """A Rust fn(Value) -> Result<Value, String> is callable with Python data, no glue."""
    path = tmp_path / "processor.rs"
    path.write_text(RUST_TOOL)
    sb = ws.WasmSandbox.builder().source(path).build()
    assert sb.call("process_data", {"rows": [1, 2, 3.5]}) == {"sum": 6.5, "count": 3}
    with pytest.raises(ws.GuestError, match="rows: expected a list") as info:
        sb.call("process_data", {"rows": "nope"})
    assert info.value.type == "GuestError"
    assert ws.run(path, "process_data", {"rows": [10]}) == {"sum": 10, "count": 1}


def test_c_guest_with_the_shipped_header(tmp_path: Path) -> None:
    """A C function with the documented signature gets the JSON of its arguments."""
    path = tmp_path / "tool.c"
    path.write_text(C_TOOL)
    sb = ws.WasmSandbox.builder().source(path).build()
    sent = b'[{"a":[1,2]},"x"]'
    assert sb.call("process_data", {"a": [1, 2]}, "x") == {
        "args": [{"a": [1, 2]}, "x"],
        "length": len(sent),
    }
    with pytest.raises(ws.GuestError, match=r"^ValueError: expected arguments$"):
        sb.call("process_data")

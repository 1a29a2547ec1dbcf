"""Tests of the pure-Python wasm parser/rewriter (wasm_sandbox._runtime._wasm) against the real engine.

Modules are written in WAT (or as raw bytes where WAT cannot express them), instrumented,
validated and run with wasmtime; malformed inputs must raise WasmFormatError and nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasm_sandbox._runtime._wasm import (
    DENIED_DELTA_EXPORT,
    DENIED_KIND_EXPORT,
    DENIED_PAGES_EXPORT,
    GROW_MAX_PAGES_EXPORT,
    MEM_MAX_PAGES_EXPORT,
    MEMORY_EXPORT,
    START_EXPORT,
    MemoryInfo,
    WasmFormatError,
    instrument,
    parse_module_info,
)
from wasm_sandbox._runtime._wasm import _decode as decode
from wasm_sandbox._runtime._wasm import _scan as scan
from wasm_sandbox._runtime._wasm import _sections as wasm_sections

ENGINE = wasmtime.Engine()
ADDED_GLOBALS = (
    GROW_MAX_PAGES_EXPORT,
    MEM_MAX_PAGES_EXPORT,
    DENIED_KIND_EXPORT,
    DENIED_PAGES_EXPORT,
    DENIED_DELTA_EXPORT,
)

GROWER = """
(module
  (memory (export "memory") 1)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size)))
"""


# --------------------------------------------------------------------------- helpers


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def uleb(value: int) -> bytes:
    return decode._uleb(value)


def section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + uleb(len(payload)) + payload


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def custom(name: str, payload: bytes = b"x") -> bytes:
    encoded = name.encode()
    return section(0, uleb(len(encoded)) + encoded + payload)


HEADER = b"\0asm\x01\0\0\0"


def func_module(instructions: bytes, *, memory: bool = True, end: bytes = b"\x0b") -> bytes:
    """A module with one ``(func)`` whose body is ``instructions`` followed by ``end``."""
    body = b"\x00" + instructions + end
    return (
        HEADER
        + section(1, vec([b"\x60\x00\x00"]))
        + section(3, vec([b"\x00"]))
        + (section(5, vec([b"\x00\x01"])) if memory else b"")
        + section(10, vec([uleb(len(body)) + body]))
    )


@dataclass
class Guest:
    """An instantiated module with helpers to call functions and read/write globals."""

    store: wasmtime.Store
    instance: wasmtime.Instance

    def call(self, name: str, *args: Any) -> Any:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return func(self.store, *args)

    def global_(self, name: str) -> wasmtime.Global:
        glob = self.instance.exports(self.store)[name]
        assert isinstance(glob, wasmtime.Global)
        return glob

    def get(self, name: str) -> Any:
        return self.global_(name).value(self.store)

    def set_i32(self, name: str, value: int) -> None:
        self.global_(name).set_value(self.store, wasmtime.Val.i32(value))

    def set_i64(self, name: str, value: int) -> None:
        self.global_(name).set_value(self.store, wasmtime.Val.i64(value))

    def denial(self) -> tuple[int, int]:
        return self.get(DENIED_KIND_EXPORT), self.get(DENIED_PAGES_EXPORT)


Imports = Callable[[wasmtime.Store], list[Any]]


def load(data: bytes, *, memory_size: int | None = None, imports: Imports | None = None) -> Guest:
    store = wasmtime.Store(ENGINE)
    if memory_size is not None:
        store.set_limits(memory_size=memory_size)
    module = wasmtime.Module(ENGINE, data)
    return Guest(store, wasmtime.Instance(store, module, imports(store) if imports else []))


def grower(memory_size: int | None = None) -> Guest:
    return load(instrument(wat(GROWER)), memory_size=memory_size)


def is_valid(data: bytes) -> bool:
    try:
        wasmtime.Module.validate(ENGINE, data)
    except wasmtime.WasmtimeError:
        return False
    return True


# --------------------------------------------------------------------------- the hook


def test_added_globals_start_unlimited_and_undenied() -> None:
    """The five globals are exported mutable with 'unlimited' and 'no denial' initial values."""
    guest = grower()
    assert guest.get(GROW_MAX_PAGES_EXPORT) == -1
    assert guest.get(MEM_MAX_PAGES_EXPORT) == -1
    assert guest.denial() == (0, 0)
    types = {e.name: e.type for e in wasmtime.Module(ENGINE, instrument(wat(GROWER))).exports}
    contents = []
    for name in ADDED_GLOBALS:
        global_type = types[name]
        assert isinstance(global_type, wasmtime.GlobalType)
        assert global_type.mutable
        contents.append(str(global_type.content))
    assert contents == ["i32", "i64", "i32", "i64", "i64"]


def test_grow_under_limits_returns_old_size_and_records_nothing() -> None:
    """A memory.grow within both caps (exact fits included) grows and returns the old size, and no
    denial is recorded."""
    guest = grower()
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 4)
    guest.set_i64(MEM_MAX_PAGES_EXPORT, 9)
    assert guest.call("grow", 4) == 1
    assert guest.call("grow", 0) == 5
    assert guest.call("grow", 4) == 5
    assert guest.call("size") == 9
    assert guest.denial() == (0, 0)


def test_grow_over_per_grow_limit_returns_minus_one_and_records_kind_1() -> None:
    """A grow asking for more than the per-grow cap returns -1, leaves the memory as it was, and
    records kind 1 with the pages it would have reached and the delta asked for."""
    guest = grower()
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 3)
    assert guest.call("grow", 4) == -1
    assert guest.call("size") == 1
    assert guest.denial() == (1, 1 + 4)
    assert guest.get(DENIED_DELTA_EXPORT) == 4


def test_per_grow_limit_is_unsigned() -> None:
    """A delta of 0xFFFFFFFF is compared unsigned: it exceeds any per-grow cap below it."""
    guest = grower()
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 0x7FFFFFFF)
    assert guest.call("grow", -1) == -1
    assert guest.denial() == (1, 1 + 0xFFFFFFFF)
    assert guest.get(DENIED_DELTA_EXPORT) == 0xFFFFFFFF


def test_grow_over_total_cap_records_kind_2_and_exact_fit_succeeds() -> None:
    """A grow past the total cap returns -1 and records kind 2; a grow reaching the cap exactly
    succeeds."""
    guest = grower()
    guest.set_i64(MEM_MAX_PAGES_EXPORT, 3)
    assert guest.call("grow", 3) == -1
    assert guest.denial() == (2, 4)
    assert guest.call("grow", 2) == 1  # 1 + 2 == cap: allowed
    assert guest.call("size") == 3


def test_engine_refusal_under_store_limits_records_kind_3() -> None:
    """When wasmtime's store limiter refuses a grow the hook allowed, the guest gets -1 and kind 3
    is recorded; smaller grows still work."""
    guest = grower(memory_size=4 * 65536)
    guest.set_i64(MEM_MAX_PAGES_EXPORT, 100)
    assert guest.call("grow", 10) == -1
    assert guest.denial() == (3, 11)
    assert guest.call("grow", 3) == 1  # within the store limit the hook still grows


def test_engine_refusal_at_declared_maximum_records_kind_3() -> None:
    """A grow past the memory's own declared maximum is refused by the engine: -1 and kind 3."""
    source = wat(GROWER.replace('(memory (export "memory") 1)', '(memory (export "memory") 1 2)'))
    assert parse_module_info(source).memories[0].max_pages == 2
    guest = load(instrument(source))
    assert guest.call("grow", 5) == -1
    assert guest.denial() == (3, 6)


def test_huge_delta_attempted_total_is_computed_in_64_bits() -> None:
    """With no caps, growing by 0xFFFFFFFF pages fails in the engine: 1 + 2**32 - 1 recorded."""
    guest = grower()
    assert guest.call("grow", -1) == -1
    assert guest.denial() == (3, 2**32)


def test_only_the_first_denial_is_recorded_until_the_host_resets_it() -> None:
    """Only the first refusal is recorded; after the host resets the kind to 0, the next refusal is
    recorded."""
    guest = grower()
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 2)
    guest.set_i64(MEM_MAX_PAGES_EXPORT, 5)
    assert guest.call("grow", 3) == -1
    assert guest.call("grow", 2) == 1
    assert guest.call("grow", 2) == 3
    assert guest.call("grow", 1) == -1  # total cap: not recorded, kind 1 stays
    assert guest.denial() == (1, 4)
    guest.set_i32(DENIED_KIND_EXPORT, 0)
    assert guest.call("grow", 1) == -1
    assert guest.denial() == (2, 6)


def test_start_function_is_exported_and_not_run_at_instantiation() -> None:
    """The start section is removed and its function exported as START_EXPORT: instantiating runs
    nothing, and calling the export runs it under the grow limits."""
    source = wat("""
    (module
      (memory 1)
      (global $g (export "g") (mut i32) (i32.const 0))
      (func $init
        (global.set $g (i32.const 42))
        (global.set $g (i32.add (global.get $g) (memory.grow (i32.const 1)))))
      (start $init))
    """)
    assert parse_module_info(source).has_start
    out = instrument(source)
    assert not parse_module_info(out).has_start
    guest = load(out)
    assert guest.get("g") == 0
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 0)
    guest.call(START_EXPORT)
    assert guest.get("g") == 41  # 42 + (-1): the start function ran under the limits
    assert guest.denial() == (1, 2)


def test_module_without_start_gets_no_start_export() -> None:
    """A module without a start function gets the limit globals but no START_EXPORT."""
    exports = {name for name, _ in parse_module_info(instrument(wat(GROWER))).exports}
    assert START_EXPORT not in exports
    assert set(ADDED_GLOBALS) <= exports


def test_a_memory_the_module_does_not_export_is_exported_under_the_reserved_name() -> None:
    """Monitoring measures the memory through MEMORY_EXPORT: hiding it blinds nothing."""
    source = wat("""
    (module
      (memory 2)
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
    """)
    assert ("memory", "memory") not in parse_module_info(source).exports
    out = instrument(source)
    assert (MEMORY_EXPORT, "memory") in parse_module_info(out).exports
    guest = load(out)
    assert guest.call("grow", 3) == 2
    memory = guest.instance.exports(guest.store)[MEMORY_EXPORT]
    assert isinstance(memory, wasmtime.Memory)
    assert memory.size(guest.store) == 5


def test_an_exported_memory_is_also_exported_under_the_reserved_name() -> None:
    """A module's exported memory keeps its export and is also exported as MEMORY_EXPORT."""
    exports = parse_module_info(instrument(wat(GROWER))).exports
    assert ("memory", "memory") in exports and (MEMORY_EXPORT, "memory") in exports


def test_module_without_memory_keeps_its_code_and_gets_the_globals() -> None:
    """A module without memory gets the limit globals (after its own exports) and no hook; its
    functions work as before."""
    source = wat('(module (func (export "f") (result i32) (i32.const 64)))')
    out = instrument(source)
    info = parse_module_info(out)
    assert info.exports == (("f", "func"), *((name, "global") for name in ADDED_GLOBALS))
    assert info.memories == ()
    guest = load(out)
    assert guest.call("f") == 64
    assert guest.denial() == (0, 0)


def test_memory_only_module_gets_type_function_and_code_sections_added_in_order() -> None:
    """A module with memory but no functions gets type, function and code sections inserted in the
    right order: the result validates."""
    for text in ('(module (memory 1) (data (i32.const 0) "\\40"))', "(module (memory 0))"):
        out = instrument(wat(text))
        assert is_valid(out), text
        assert load(out).denial() == (0, 0)


def test_imported_memory_is_limited_too() -> None:
    """An imported memory is exported under the reserved name and its grows go through the hook like
    a defined memory's."""
    source = wat("""
    (module
      (import "env" "mem" (memory 1))
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
    """)
    info = parse_module_info(source)
    assert info.memories == (MemoryInfo(1, None, False, False, True),)

    def imports(store: wasmtime.Store) -> list[Any]:
        return [wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, None)))]

    out = instrument(source)
    assert (MEMORY_EXPORT, "memory") in parse_module_info(out).exports
    guest = load(out, imports=imports)
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 1)
    assert guest.call("grow", 1) == 1
    assert guest.call("grow", 2) == -1
    assert guest.denial() == (1, 4)


def test_existing_functions_types_and_globals_keep_their_indices() -> None:
    """The hook, its type and the globals are appended: tables, elements and globals still work."""
    source = wat("""
    (module
      (type $t (func (result i32)))
      (import "env" "f" (func $imp (result i32)))
      (import "env" "g" (global $ig i32))
      (memory 1)
      (global $g (mut i32) (i32.const 5))
      (table 2 funcref)
      (elem (i32.const 0) $imp $own)
      (func $own (result i32) (i32.add (global.get $ig) (global.get $g)))
      (func (export "run") (param i32) (result i32)
        (drop (memory.grow (i32.const 1)))
        (call_indirect (type $t) (local.get 0))))
    """)

    def imports(store: wasmtime.Store) -> list[Any]:
        func = wasmtime.Func(store, wasmtime.FuncType([], [wasmtime.ValType.i32()]), lambda: 7)
        glob = wasmtime.Global(
            store, wasmtime.GlobalType(wasmtime.ValType.i32(), False), wasmtime.Val.i32(30)
        )
        return [func, glob]

    guest = load(instrument(source), imports=imports)
    assert guest.call("run", 0) == 7
    assert guest.call("run", 1) == 35


# --------------------------------------------------------------------------- behaviour unchanged

FILLERS = 70  # so that `call 64` encodes its index as the byte 0x40
TRICKY = (
    "(module\n"
    "  (type $binop (func (param i32 i32) (result i32)))\n"
    '  (memory (export "memory") 1)\n'
    "  (table 4 funcref)\n"
    "  (elem (i32.const 0) $add $sub $mul)\n"
    '  (data $d "\\40\\40hello")\n'
    "  (global $g (mut i32) (i32.const 64))\n"
    "  (tag $exn (param i32))\n"
    + "".join(f"  (func $f{i} (result i32) (i32.const {i}))\n" for i in range(FILLERS))
    + """
  (func $add (type $binop) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $binop) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $binop) (i32.mul (local.get 0) (local.get 1)))
  (func (export "call64") (result i32) (call $f64))
  (func (export "blocks") (param i32) (result i32)
    (block (br_if 0 (local.get 0)))
    (loop (nop))
    (if (local.get 0) (then (nop)) (else (nop)))
    (i32.add (local.get 0) (i32.const -64)))
  (func (export "floats") (result f64)
    (f64.add (f64.const 2.0) (f64.promote_f32 (f32.const 3.0))))
  (func (export "i64s") (param i64) (result i64)
    (i64.add (i64.mul (local.get 0) (i64.const 64)) (i64.const -64)))
  (func (export "switch") (param i32) (result i32)
    (block (block (block (br_table 0 1 2 (local.get 0)))
      (return (i32.const 64))) (return (i32.const 65))) (i32.const 66))
  (func (export "indirect") (param i32 i32 i32) (result i32)
    (call_indirect (type $binop) (local.get 1) (local.get 2) (local.get 0)))
  (func (export "bulk") (result i32)
    (memory.fill (i32.const 64) (i32.const 0x40) (i32.const 64))
    (memory.copy (i32.const 200) (i32.const 60) (i32.const 8))
    (memory.init $d (i32.const 300) (i32.const 0) (i32.const 7))
    (data.drop $d)
    (i32.add (i32.load offset=64 (i32.const 136)) (i32.load8_u (i32.const 302))))
  (func (export "locals") (result i32)
    (local i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32
           i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32
           i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32
           i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64)
    (local.set 64 (i64.const 0x4040404040))
    (i32.wrap_i64 (local.get 64)))
  (func (export "simd") (result i32)
    (local v128)
    (local.set 0 (i32x4.add (v128.const i32x4 0x40404040 64 0x40 -64)
                            (v128.const i8x16 0x40 1 2 3 4 5 6 7 8 9 10 11 12 13 14 0x40)))
    (v128.store offset=64 (i32.const 0) (local.get 0))
    (i32.add
      (i32x4.extract_lane 1
        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (local.get 0) (v128.load offset=64 (i32.const 0))))
      (i32.add (i8x16.extract_lane_u 15 (local.get 0))
               (i32x4.extract_lane 0 (v128.load32_lane 0 (i32.const 64) (local.get 0))))))
  (func (export "relaxed") (result i32)
    (i8x16.extract_lane_u 1
      (i8x16.relaxed_swizzle (v128.const i8x16 0x40 0x41 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
                             (v128.const i8x16 1 0 3 2 5 4 7 6 9 8 11 10 13 12 15 14))))
  (func (export "select_t") (param i32) (result i64)
    (select (result i64) (i64.const 64) (i64.const 65) (local.get 0)))
  (func (export "globals") (result i32)
    (global.set $g (i32.add (global.get $g) (i32.const 64))) (global.get $g))
  (func (export "trunc_sat") (param f32) (result i32) (i32.trunc_sat_f32_s (local.get 0)))
  (func (export "refs") (result i32)
    (i32.add (ref.is_null (ref.null func))
             (i32.add (table.size 0) (ref.is_null (ref.func $add)))))
  (func (export "tail") (param i32) (result i32)
    (return_call $add (local.get 0) (i32.const 64)))
  (func (export "atomic") (result i32)
    (drop (i32.atomic.rmw.add offset=64 (i32.const 0) (i32.const 64)))
    (atomic.fence)
    (i32.atomic.load offset=64 (i32.const 0)))
  (func (export "exceptions") (param i32) (result i32)
    (block $h (result i32)
      (try_table (result i32) (catch $exn $h)
        (if (local.get 0) (then (throw $exn (i32.const 64))))
        (i32.const 65))))
  (func (export "grow_and_size") (param i32) (result i32)
    (block (result i32) (i32.add (memory.grow (local.get 0)) (memory.size))))
)
"""
)
TRICKY_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("call64", ()),
    ("blocks", (0,)),
    ("blocks", (100,)),
    ("floats", ()),
    ("i64s", (3,)),
    ("switch", (0,)),
    ("switch", (1,)),
    ("switch", (2,)),
    ("switch", (7,)),
    ("indirect", (0, 6, 7)),
    ("indirect", (1, 6, 7)),
    ("indirect", (2, 6, 7)),
    ("bulk", ()),
    ("locals", ()),
    ("simd", ()),
    ("relaxed", ()),
    ("select_t", (0,)),
    ("select_t", (1,)),
    ("globals", ()),
    ("globals", ()),
    ("trunc_sat", (1e20,)),
    ("refs", ()),
    ("tail", (1,)),
    ("atomic", ()),
    ("atomic", ()),
    ("exceptions", (0,)),
    ("exceptions", (1,)),
    ("grow_and_size", (2,)),
    ("grow_and_size", (0,)),
]


def test_tricky_module_computes_the_same_results_after_rewriting() -> None:
    """0x40 bytes in block types, constants, SIMD, indices and memargs are not mistaken for grow."""
    source = wat(TRICKY)
    before, after = load(source), load(instrument(source))
    for name, args in TRICKY_CALLS:
        assert after.call(name, *args) == before.call(name, *args), (name, args)
    assert after.denial() == (0, 0)


def test_tricky_module_grow_goes_through_the_hook() -> None:
    """In a module full of constructs that look like memory.grow bytes, the real memory.grow still
    goes through the hook."""
    guest = load(instrument(wat(TRICKY)))
    guest.set_i32(GROW_MAX_PAGES_EXPORT, 1)
    assert guest.call("grow_and_size", 2) == -1 + 1
    assert guest.denial() == (1, 3)


def test_exactly_the_memory_grow_instructions_are_replaced() -> None:
    """Every occurrence is rewritten (count by decoding), other bytes are copied unchanged."""
    source = wat(TRICKY)
    out = instrument(source)
    assert grow_count(source) == 1
    assert grow_count(out) == 1  # the one left is the hook's own
    data_section = next(s for s in wasm_sections._walk_sections(source) if s.sid == 11)
    assert source[data_section.start :] in out  # sections after the code are copied as is


def grow_count(data: bytes) -> int:
    _, sections = wasm_sections._parse_sections(data, frozenset(wasm_sections._PARSERS))
    code = next(s for s in sections if s.sid == 10)
    r = decode._Reader(data, code.body, code.end, "code section")
    body_reader = decode._Reader(data, 0, 0, "code section")
    total = 0
    for _ in range(r.uleb()):
        body = r.skip(r.uleb())
        total += len(scan._scan_body(body_reader, body, r.pos))
    return total


def test_memory_grow_with_a_padded_memory_index_is_replaced_whole() -> None:
    """A memory.grow whose memory index is written in two LEB bytes is replaced whole by the call to
    the hook."""
    source = func_module(b"\x41\x01\x40\x80\x00\x1a")  # memory.grow with memidx 0x80 0x00
    assert is_valid(source)
    out = instrument(source)
    assert is_valid(out)
    assert b"\x41\x01\x10\x01\x1a\x0b" in out


def test_legacy_exception_instructions_are_decoded() -> None:
    """try/catch/catch_all/rethrow/delegate (legacy proposal) around memory.grow is rewritten."""
    legacy = (
        b"\x06\x40"  # try
        + b"\x41\x01\x40\x00\x1a"  # memory.grow 1, drop
        + b"\x07\x00"  # catch tag 0
        + b"\x06\x40\x01\x18\x00"  # try nop delegate 0
        + b"\x19\x09\x00"  # catch_all rethrow 0
        + b"\x0b"
    )
    out = instrument(func_module(legacy))
    assert b"\x41\x01\x10\x01\x1a\x07\x00" in out  # memory.grow -> call 1 (the hook)
    assert legacy not in out


# --------------------------------------------------------------------------- sections


def test_debug_custom_sections_are_dropped_and_others_kept() -> None:
    """Instrumenting drops the .debug_* custom sections and keeps the others, in place."""
    source = wat(GROWER)
    decorated = (
        source[:8]
        + custom("first", b"a")
        + source[8:]
        + custom(".debug_info", b"\x40\x00")
        + custom("name", b"")
        + custom("producers", b"p")
    )
    out = instrument(decorated)
    assert is_valid(out)
    assert b".debug_info" not in out
    assert out[8:].startswith(custom("first", b"a"))
    assert out.endswith(custom("name", b"") + custom("producers", b"p"))


def test_output_is_deterministic() -> None:
    """The same module gives the same bytes, whether passed as bytes, bytearray or memoryview."""
    source = wat(TRICKY)
    assert instrument(source) == instrument(bytearray(source)) == instrument(memoryview(source))


def test_exports_using_the_reserved_prefix_are_refused() -> None:
    """A module exporting a name with the reserved prefix (an instrumented module included) is
    refused."""
    for name in (START_EXPORT, DENIED_KIND_EXPORT, MEMORY_EXPORT, "__wsbx_other"):
        with pytest.raises(WasmFormatError, match="reserved prefix"):
            instrument(wat(f'(module (func (export "{name}")))'))
    with pytest.raises(WasmFormatError, match="reserved prefix"):
        instrument(instrument(wat(GROWER)))


# --------------------------------------------------------------------------- unsupported


@pytest.mark.parametrize(
    ("text", "proposal"),
    [
        ("(module (memory i64 1))", "memory64"),
        ("(module (memory 1 2 shared))", "threads"),
        ("(module (memory 1) (memory 1))", "multi-memory"),
        ('(module (import "a" "b" (memory 1)) (memory 1))', "multi-memory"),
        (
            "(module (func (param eqref eqref) (result i32) (ref.eq (local.get 0) (local.get 1))))",
            "GC",
        ),
        (
            "(module (type $t (func)) (func $f) (elem declare func $f)"
            " (func (call_ref $t (ref.func $f))))",
            "function-references",
        ),
        (
            "(module (func (param i64 i64 i64 i64) (result i64 i64)"
            " (i64.add128 (local.get 0) (local.get 1) (local.get 2) (local.get 3))))",
            "wide-arithmetic",
        ),
        ("(module (type (struct (field i32))))", "GC"),
    ],
)
def test_unsupported_proposals_are_refused_with_a_clear_message(text: str, proposal: str) -> None:
    """Modules using memory64, shared memory, multi-memory, GC, function references or wide
    arithmetic are refused naming the proposal."""
    with pytest.raises(WasmFormatError, match=rf"{proposal}.*not supported"):
        instrument(wat(text))


def test_unknown_opcode_is_reported_with_its_offset() -> None:
    """An unknown opcode is refused with its value and its offset in the module."""
    data = func_module(b"\x01\xff")
    offset = data.index(b"\x01\xff\x0b") + 1
    with pytest.raises(
        WasmFormatError, match=rf"unknown instruction opcode 0xff .*offset {offset}$"
    ):
        instrument(data)


def test_memory_grow_in_a_module_without_memory_is_refused() -> None:
    """memory.grow in a module that has no memory is refused."""
    with pytest.raises(WasmFormatError, match="without memory"):
        instrument(func_module(b"\x41\x00\x40\x00\x1a", memory=False))


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unexpected end of data in header at offset 0"),
        (b"\0as", "unexpected end of data in header at offset 3"),
        (b"\x7fELF\x02\x01\x01\0", "bad magic"),
        (b"\0asm\x02\0\0\0", "unknown binary version"),
        (b"\0asm\x0d\0\x01\0", "component-model binary.*not supported"),
        (HEADER + b"\x01", "unexpected end of data in section header at offset 9"),
        (HEADER + b"\x01\x05\x00", "unexpected end of data"),
        (HEADER + b"\x01\xff\xff\xff\xff\xff\x00", "integer representation too long"),
        (HEADER + b"\x01\xff\xff\xff\xff\x7f", "integer too large"),
        (HEADER + b"\x0e\x00", "unknown section id 14"),
        (HEADER + section(3, b"\x00") + section(1, b"\x00"), "type section out of order"),
        (HEADER + section(1, b"\x00") + section(1, b"\x00"), "out of order or duplicated"),
        (HEADER + section(1, b"\x00\x00"), "section size mismatch"),
        (HEADER + section(1, b"\x01\x61"), "invalid type form 0x61"),
        (HEADER + section(7, b"\x01\x02\xff\xfe\x00\x00"), "malformed UTF-8"),
        (HEADER + section(0, b"\x05ab"), "unexpected end of data in custom section"),
        (HEADER + section(3, b"\x01\x00"), "inconsistent lengths"),
        (func_module(b"\x41"), "unexpected end of data in code section"),
        (func_module(b"\x10\x80\x80\x80\x80\x80\x00"), "too long"),
        (func_module(b"\x41\x80\x80\x80\x80\x10"), "integer too large for s32"),
    ],
)
def test_malformed_modules_raise_wasm_format_error(data: bytes, message: str) -> None:
    """Each kind of malformed module (header, LEB integers, section ids, order and sizes, types,
    UTF-8, code) raises WasmFormatError with its own message."""
    with pytest.raises(WasmFormatError, match=message):
        instrument(data)


def test_function_body_must_end_with_end() -> None:
    """A function body must end with an end instruction, and a final 0x0b that belongs to an
    immediate does not count."""
    with pytest.raises(WasmFormatError, match="does not end with an 'end'"):
        instrument(func_module(b"\x01", end=b"\x01"))
    # `i32.const 11`: the last byte is 0x0b, but it is an immediate, not `end`
    with pytest.raises(WasmFormatError, match="unexpected end of data in code section"):
        instrument(func_module(b"\x41", end=b"\x0b"))


def test_message_names_section_and_offset() -> None:
    """A module cut inside its code section is refused with a message naming the problem and its
    offset."""
    data = func_module(b"\x41\x01\x1a")
    truncated_body = data[:-3]  # cut inside the code section, sizes now lie
    with pytest.raises(WasmFormatError) as caught:
        instrument(truncated_body)
    assert str(caught.value).startswith("malformed module: unexpected end of data")
    assert "at offset" in str(caught.value)


def check_only_format_errors(data: bytes) -> None:
    """Instrumenting/parsing ``data`` gives a result or WasmFormatError; valid in, valid out."""
    valid = is_valid(data)
    try:
        out = instrument(data)
    except WasmFormatError as error:
        assert not valid or "not supported" in str(error), str(error)
    else:
        assert is_valid(out) or not valid
    try:
        parse_module_info(data)
    except WasmFormatError:
        assert not valid


def test_every_prefix_of_a_module_raises_only_wasm_format_error() -> None:
    """Instrumenting or parsing any truncation of a module raises WasmFormatError or nothing, never
    another exception."""
    source = wat(TRICKY)
    for end in range(len(source)):
        check_only_format_errors(source[:end])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_byte_flips_raise_only_wasm_format_error(data: st.DataObject) -> None:
    """Instrumenting or parsing a module with random bytes changed raises WasmFormatError or
    nothing, never another exception; a module that is still valid stays valid."""
    source = bytearray(wat(TRICKY))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(source) - 1))
        source[index] = data.draw(st.integers(0, 255))
    check_only_format_errors(bytes(source))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_after_the_header_raise_only_wasm_format_error(tail: bytes) -> None:
    """Instrumenting or parsing random bytes after a valid header raises WasmFormatError or nothing,
    never another exception; a valid module stays valid."""
    check_only_format_errors(HEADER + tail)


# --------------------------------------------------------------------------- fast scanner


def leb(value: int, pad: int = 0) -> bytes:
    out = bytearray(uleb(value))
    for _ in range(pad):
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


@st.composite
def immediates(draw: st.DrawFn, kind: int) -> bytes:
    u32 = st.builds(leb, st.integers(0, 2**32 - 1), st.integers(0, 1))
    if kind == decode._NONE:
        return b""
    if kind in (decode._U32, decode._GROW):
        return draw(u32)
    if kind == decode._U32X2:
        return draw(u32) + draw(u32)
    if kind == decode._S32:
        return decode._sleb(draw(st.integers(-(2**31), 2**31 - 1)))
    if kind == decode._S64:
        return decode._sleb(draw(st.integers(-(2**63), 2**63 - 1)))
    if kind in (decode._F32, decode._F64, decode._LANE, decode._V128):
        size = {decode._F32: 4, decode._F64: 8, decode._LANE: 1, decode._V128: 16}[kind]
        return draw(st.binary(min_size=size, max_size=size))
    if kind in (decode._MEMARG, decode._MEMARG_LANE):
        align = draw(st.integers(0, 0x7F))
        memidx = leb(0) if align & 0x40 else b""
        lane = draw(st.binary(min_size=1, max_size=1)) if kind == decode._MEMARG_LANE else b""
        return leb(align) + memidx + draw(u32) + lane
    if kind == decode._BLOCK:
        return draw(st.sampled_from([b"\x40", b"\x7f", b"\x7b", b"\x70", b"\x00", b"\x85\x01"]))
    if kind == decode._BR_TABLE:
        labels = draw(st.lists(u32, max_size=4))
        return leb(len(labels)) + b"".join(labels) + draw(u32)
    if kind == decode._SELECT_T:
        return b"\x01" + draw(st.sampled_from([b"\x7f", b"\x7e", b"\x6f"]))
    if kind == decode._TRY_TABLE:
        return b"\x40\x02\x00\x00\x00\x02\x01"
    if kind == decode._HEAP:
        return draw(st.sampled_from([b"\x70", b"\x6f"]))
    return b"\x00"  # _ZERO


@st.composite
def instruction(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from([None, 0xFC, 0xFD, 0xFE]))
    table = decode._OPS if prefix is None else decode._PREFIXED[prefix]
    op = draw(st.sampled_from(sorted(table)))
    if prefix is None:
        return bytes([op]) + draw(immediates(table[op]))
    padding = draw(st.integers(0, 1))  # sometimes a non-canonical sub-opcode encoding
    return bytes([prefix]) + leb(op, padding) + draw(immediates(table[op]))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(instruction(), st.binary(max_size=2)), max_size=12))
def test_fast_scanner_agrees_with_the_instruction_decoder(parts: list[bytes]) -> None:
    """The regex fast path finds the same memory.grow spans (or error) as pure decoding."""
    body = b"\x00" + b"".join(parts) + b"\x0b"
    results: list[object] = []
    for fast in (True, False):
        reader = decode._Reader(body, 0, 0, "code section")
        try:
            results.append(scan._scan_body(reader, 0, len(body), fast))
        except WasmFormatError as error:
            results.append(str(error))
    assert results[0] == results[1]


# --------------------------------------------------------------------------- parse_module_info


def test_parse_module_info_reports_imports_exports_memories_and_start() -> None:
    """parse_module_info lists every kind of import and export in order, the memories with their
    limits, and the start function."""
    source = wat("""
    (module
      (import "env" "f" (func (param i32)))
      (import "env" "t" (table 1 funcref))
      (import "env" "m" (memory 2 5))
      (import "env" "g" (global i64))
      (import "env" "e" (tag (param i32)))
      (func $s)
      (table $tt 1 funcref)
      (global $gg i32 (i32.const 0))
      (tag $tg)
      (export "s" (func $s))
      (export "tt" (table $tt))
      (export "mm" (memory 0))
      (export "gg" (global $gg))
      (export "tg" (tag $tg))
      (start $s))
    """)
    info = parse_module_info(source)
    assert info.imports == (
        ("env", "f", "func"),
        ("env", "t", "table"),
        ("env", "m", "memory"),
        ("env", "g", "global"),
        ("env", "e", "tag"),
    )
    assert info.exports == (
        ("s", "func"),
        ("tt", "table"),
        ("mm", "memory"),
        ("gg", "global"),
        ("tg", "tag"),
    )
    assert info.memories == (MemoryInfo(2, 5, False, False, True),)
    assert info.has_start


def test_parse_module_info_reports_memory64_and_shared_without_refusing() -> None:
    """parse_module_info describes memory64 and shared memories (only instrument refuses them), and
    an empty module has nothing."""
    assert parse_module_info(wat("(module (memory i64 3))")).memories == (
        MemoryInfo(3, None, True, False, False),
    )
    assert parse_module_info(wat("(module (memory 1 4 shared))")).memories == (
        MemoryInfo(1, 4, False, True, False),
    )
    empty = parse_module_info(wat("(module)"))
    assert (empty.memories, empty.imports, empty.exports, empty.has_start) == ((), (), (), False)


# --------------------------------------------------------------------------- a real C program

CLANG = shutil.which("clang-14")
WASI_SYSROOT = Path("/usr")
HAVE_WASI_LIBC = (WASI_SYSROOT / "lib/wasm32-wasi/libc.a").exists()
C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    size_t size = (size_t)atoi(argv[1]) << 20;
    char *p = malloc(size);
    if (p == NULL) { puts("malloc failed"); return 3; }
    memset(p, 0x40, size);
    printf("allocated %zu: %d\n", size, p[size / 2]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_module(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if CLANG is None or not HAVE_WASI_LIBC:
        pytest.skip("clang-14 and wasi-libc are needed to build a WASI module")
    work = tmp_path_factory.mktemp("c-wasm")
    (work / "alloc.c").write_text(C_PROGRAM)
    out = work / "alloc.wasm"
    subprocess.run(
        [
            CLANG,
            "--target=wasm32-wasi",
            f"--sysroot={WASI_SYSROOT}",
            "-O2",
            "-g",
            "-o",
            str(out),
            str(work / "alloc.c"),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def run_wasi(data: bytes, megabytes: int, setup: Callable[[Guest], None]) -> tuple[int, Guest]:
    store = wasmtime.Store(ENGINE)
    config = wasmtime.WasiConfig()
    config.argv = ["alloc", str(megabytes)]
    store.set_wasi(config)
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    guest = Guest(store, linker.instantiate(store, wasmtime.Module(ENGINE, data)))
    setup(guest)
    try:
        guest.call("_start")
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code, guest
    return 0, guest


def test_c_wasi_module_still_validates_and_runs_under_limits(c_module: bytes) -> None:
    """A real C program stays valid after instrumenting (its debug sections dropped) and runs as
    before; with a 16-page per-grow cap its allocation fails and the refusal is recorded as kind
    1."""
    out = instrument(c_module)
    assert is_valid(out)
    assert b".debug_info" in c_module and b".debug_info" not in out
    assert run_wasi(c_module, 8, lambda guest: None)[0] == 0
    code, guest = run_wasi(out, 8, lambda guest: None)
    assert (code, guest.denial()) == (0, (0, 0))

    def cap_grow(guest: Guest) -> None:
        guest.set_i32(GROW_MAX_PAGES_EXPORT, 16)

    code, guest = run_wasi(out, 8, cap_grow)
    assert code == 3
    kind, pages = guest.denial()
    assert kind == 1 and pages > 8 * 16


def test_parse_module_info_gives_export_signatures() -> None:
    """Exported functions' signatures are read from the type/function sections, counting
    imported functions in the index space."""
    source = wat(
        """(module
          (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
          (func $f (param i64 f32) (result f64 i32) f64.const 0 i32.const 0)
          (export "f" (func $f)) (export "y" (func $y)) (export "g" (func $f)))"""
    )
    info = parse_module_info(source)
    assert info.functions == {
        "f": (("i64", "f32"), ("f64", "i32")),
        "y": ((), ("i32",)),
        "g": (("i64", "f32"), ("f64", "i32")),
    }

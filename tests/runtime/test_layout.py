"""Which modules can be reset in place: read from the binary, refused whenever any state is unreachable."""

from __future__ import annotations

import pytest
import wasmtime

from tests.runtime.wasm import BYTES, IN_PLACE, PASSIVE_DATA, STATEFUL, WASI, compile_wat
from warmpool_runtime.layout import HIDDEN_GLOBAL_PREFIX, LayoutError, export_hidden_globals, scan

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("wat", "reason"), [
    (IN_PLACE, None),
    (WASI, None),
    (STATEFUL, "the module's code writes a table"),
    (BYTES, None),  # its hidden mutable global is exported by the runtime under a reserved name
    (PASSIVE_DATA, "the module has passive data or element segments"),
    ("(module (func (export \"f\")))", "the module does not have exactly one memory, exported"),
    ("(module (memory 1) (func (export \"f\")))", "the module does not have exactly one memory, exported"),
    ("(module (import \"env\" \"g\" (global (mut i32))) (memory (export \"memory\") 1))",
     "the module imports a mutable global"),
    ("(module (memory (export \"memory\") 1) (global (export \"g\") (mut i64) (i64.const -5))"
     " (global i32 (i32.const 7)))", None),
])
def test_in_place_reset_only_when_all_state_is_reachable(wat: str, reason: str | None) -> None:
    layout = scan(compile_wat(wat))
    assert layout.why_not_in_place() == reason
    assert layout.in_place_reset_ok is (reason is None)


COMPILED_LIKE = """(module
  (type $unary (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (global $sp (mut i32) (i32.const 4096))
  (elem (i32.const 0) $double $triple)
  (func $double (type $unary) (i32.mul (local.get 0) (i32.const 2)))
  (func $triple (type $unary) (i32.mul (local.get 0) (i32.const 3)))
  (func (export "apply") (param i32 i32) (result i32) (local i64) (local f64)
    (global.set $sp (i32.sub (global.get $sp) (i32.const 16)))
    (drop (block $out (result i32)
      (loop $again
        (br_if $again (i32.eqz (i32.const 1))))
      (if (result i32) (i32.gt_u (local.get 0) (i32.const 1))
        (then (i32.const 0))
        (else (call_indirect (type $unary) (local.get 1) (local.get 0))))
      (br_table $out $out (i32.const 0))))
    (drop (f64.const 1.5))
    (drop (f32.const 2.5))
    (drop (i64.const -9))
    (drop (table.get 0 (i32.const 0)))
    (drop (table.size 0))
    (i64.store offset=8 (i32.const 0) (i64.const 7))
    (memory.fill (i32.const 100) (i32.const 0) (i32.const 4))
    (memory.copy (i32.const 200) (i32.const 100) (i32.const 4))
    (drop (i32.trunc_sat_f64_s (f64.const 1.0)))
    (select (i32.const 1) (i32.const 2) (i32.const 0))))"""


@pytest.mark.parametrize(("body", "reason"), [
    ("", None),
    ("(table.set 0 (i32.const 0) (ref.null func))", "the module's code writes a table"),
    ("(drop (table.grow 0 (ref.null func) (i32.const 1)))", "the module's code writes a table"),
    ("(table.fill 0 (i32.const 0) (ref.null func) (i32.const 1))", "the module's code writes a table"),
    ("(table.copy (i32.const 0) (i32.const 1) (i32.const 1))", "the module's code writes a table"),
    ("(drop (i32.atomic.load (i32.const 0)))", "the module has a table and code the scanner cannot read"),
    # SIMD reads and writes values and memory only: every immediate shape is skipped exactly.
    ("(drop (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (v128.const i32x4 1 2 3 4)"
     " (v128.load offset=16 (i32.const 0))))"
     " (v128.store (i32.const 32) (i32x4.replace_lane 3 (v128.load32_zero (i32.const 0)) (i32.const 5)))"
     " (drop (i32x4.extract_lane 1 (v128.load8_lane 2 (i32.const 0) (i32x4.splat (i32.const 1)))))"
     " (v128.store64_lane 1 (i32.const 64) (f64x2.add (v128.const f64x2 1 2) (v128.const f64x2 3 4)))"
     " (table.set 0 (i32.const 0) (ref.null func))", "the module's code writes a table"),
    ("(drop (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (v128.const i32x4 1 2 3 4)"
     " (v128.load offset=16 (i32.const 0))))"
     " (drop (i32x4.extract_lane 1 (v128.load8_lane 2 (i32.const 0) (i32x4.splat (i32.const 1)))))", None),
])
def test_a_table_the_code_only_reads_allows_an_in_place_reset(body: str, reason: str | None) -> None:
    wat = COMPILED_LIKE.replace('(drop (f64.const 1.5))', f"{body} (drop (f64.const 1.5))")
    layout = scan(compile_wat(wat))
    assert layout.why_not_in_place() == reason
    assert layout.hidden_globals == {0}


def test_hidden_globals_are_exported_under_reserved_names_and_nothing_else_changes() -> None:
    data = compile_wat(COMPILED_LIKE)
    layout = scan(data)
    rewritten = export_hidden_globals(data, layout)
    module = wasmtime.Module(wasmtime.Engine(), rewritten)
    exports = {e.name: e.type for e in module.exports}
    assert set(exports) == {"memory", "apply", f"{HIDDEN_GLOBAL_PREFIX}0"}
    hidden = exports[f"{HIDDEN_GLOBAL_PREFIX}0"]
    assert isinstance(hidden, wasmtime.GlobalType)
    assert hidden.mutable
    again = scan(rewritten)
    assert again.hidden_globals == frozenset()
    assert again.why_not_in_place() is None
    # A module without an export section gets one, in its place among the sections.
    bare = compile_wat("(module (memory 1) (global (mut i64) (i64.const 1)) (func (global.set 0 (i64.const 2))))")
    rebuilt = wasmtime.Module(wasmtime.Engine(), export_hidden_globals(bare, scan(bare)))
    assert [e.name for e in rebuilt.exports] == [f"{HIDDEN_GLOBAL_PREFIX}0"]


def test_a_module_already_using_the_reserved_names_is_recycled() -> None:
    wat = ('(module (memory (export "memory") 1) (global (mut i32) (i32.const 0))'
           f' (func (export "{HIDDEN_GLOBAL_PREFIX}0")))')
    assert scan(compile_wat(wat)).why_not_in_place() == (
        f"the module hides mutable globals and already exports names starting {HIDDEN_GLOBAL_PREFIX}")


def test_not_wasm_is_refused() -> None:
    with pytest.raises(LayoutError):
        scan(b"(module)")

"""Every function of the wasmtime adapter against the installed wasmtime; a failure names the function.

The adapter is the only module allowed below wasmtime-py's public API; the last test keeps it so.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.metadata
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from warmpool_runtime import wasmtime_adapter as adapter

pytestmark = pytest.mark.component

WASMTIME = importlib.metadata.version("wasmtime")
GUEST = """(module
  (memory (export "memory") 1)
  (global (export "g") (mut i64) (i64.const 7))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "trap") unreachable)
  (func (export "spin") (loop $l (br $l))))"""


@dataclass
class Guest:
    """One instance of GUEST in its own store, with the adapter's handles on it."""

    store: wasmtime.Store
    instance: wasmtime.Instance
    context: Any

    def export(self, name: str, kind: int) -> Any:
        item = adapter.export_of(self.context, self.instance, name, kind)
        assert item is not None, f"wasmtime_adapter.export_of found no {name!r}"
        return item


def make_guest(fuel: bool = False) -> Guest:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = fuel
    adapter.enable_pooling_allocator(config, slots=4, max_memory_bytes=1 << 20, max_unused_warm_slots=1,
                                     memory_keep_resident_bytes=1 << 16, table_keep_resident_bytes=1 << 12)
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 30)
    if fuel:
        store.set_fuel(1 << 30)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, GUEST), [])
    return Guest(store, instance, adapter.store_context(store))


def raw_call(guest: Guest, name: str, args: tuple[int, ...] = ()) -> tuple[Any, Any, Any]:
    """Call an export through `call_unchecked`: (slots, error address, trap out)."""
    func = guest.export(name, adapter.EXTERN_FUNC)
    slots = adapter.new_value_slots(max(1, len(args)))
    words = (ctypes.c_uint64 * (2 * len(slots))).from_buffer(slots)
    for i, value in enumerate(args):
        words[2 * i] = value
    trap = adapter.new_trap_out()
    error = adapter.call_unchecked(guest.context, ctypes.byref(func), slots, ctypes.c_size_t(len(slots)),
                                   ctypes.byref(trap))
    return slots, error, trap


def check_enable_pooling_allocator() -> None:
    assert make_guest().instance is not None


def check_store_context() -> None:
    assert adapter.store_context(make_guest().store)


def check_export_of() -> None:
    guest = make_guest()
    for name, kind in (("memory", adapter.EXTERN_MEMORY), ("g", adapter.EXTERN_GLOBAL), ("add", adapter.EXTERN_FUNC)):
        assert adapter.export_of(guest.context, guest.instance, name, kind) is not None, name
    assert adapter.export_of(guest.context, guest.instance, "add", adapter.EXTERN_MEMORY) is None
    assert adapter.export_of(guest.context, guest.instance, "absent", adapter.EXTERN_FUNC) is None


def check_memory_size() -> None:
    guest = make_guest()
    memory = ctypes.byref(guest.export("memory", adapter.EXTERN_MEMORY))
    assert adapter.memory_size(guest.context, memory) == 65536


def check_memory_address() -> None:
    guest = make_guest()
    memory = ctypes.byref(guest.export("memory", adapter.EXTERN_MEMORY))
    ctypes.memmove(adapter.memory_address(guest.context, memory) + 8, b"adapter", 7)
    exported = guest.instance.exports(guest.store)["memory"]
    assert isinstance(exported, wasmtime.Memory)
    assert bytes(exported.read(guest.store, 8, 15)) == b"adapter"


def check_global_get() -> None:
    guest = make_guest()
    value = adapter.global_get(guest.context, ctypes.byref(guest.export("g", adapter.EXTERN_GLOBAL)))
    assert adapter.value_bits(value)[1] == 7


def check_global_set() -> None:
    guest = make_guest()
    ref = ctypes.byref(guest.export("g", adapter.EXTERN_GLOBAL))
    saved = adapter.global_get(guest.context, ref)
    exported = guest.instance.exports(guest.store)["g"]
    assert isinstance(exported, wasmtime.Global)
    exported.set_value(guest.store, 99)
    assert adapter.global_set(guest.context, ref, saved)
    assert exported.value(guest.store) == 7


def check_value_bits() -> None:
    guest = make_guest()
    ref = ctypes.byref(guest.export("g", adapter.EXTERN_GLOBAL))
    before = adapter.value_bits(adapter.global_get(guest.context, ref))
    exported = guest.instance.exports(guest.store)["g"]
    assert isinstance(exported, wasmtime.Global)
    exported.set_value(guest.store, -1)
    after = adapter.value_bits(adapter.global_get(guest.context, ref))
    assert before[0] == after[0]  # same kind (i64)
    assert (before[1], after[1] & 0xFFFF_FFFF_FFFF_FFFF) == (7, 0xFFFF_FFFF_FFFF_FFFF)


def check_new_value_slots() -> None:
    slots = adapter.new_value_slots(3)
    assert len(slots) == 3
    assert ctypes.sizeof(slots) == 3 * 16


def check_call_unchecked() -> None:
    slots, error, trap = raw_call(make_guest(), "add", (40, 2))
    assert not error
    assert not trap
    assert slots[0].i32 == 42


def check_new_trap_out() -> None:
    trap = adapter.new_trap_out()
    assert not trap
    _, _, trap = raw_call(make_guest(), "trap")
    assert trap


def check_take_trap() -> None:
    _, _, trap = raw_call(make_guest(), "trap")
    assert adapter.take_trap(trap).trap_code == wasmtime.TrapCode.UNREACHABLE


def check_set_epoch_deadline() -> None:
    guest = make_guest()
    guest.store.engine.increment_epoch()
    adapter.set_epoch_deadline(guest.context, ctypes.c_uint64(1))
    guest.store.engine.increment_epoch()
    _, _, trap = raw_call(guest, "spin")
    assert adapter.take_trap(trap).trap_code == wasmtime.TrapCode.INTERRUPT


def check_set_fuel() -> None:
    guest = make_guest(fuel=True)
    assert not adapter.set_fuel(guest.context, ctypes.c_uint64(1000))
    _, _, trap = raw_call(guest, "spin")
    assert adapter.take_trap(trap).trap_code == wasmtime.TrapCode.OUT_OF_FUEL


def check_error_from_address() -> None:
    guest = make_guest(fuel=False)
    error = adapter.set_fuel(guest.context, ctypes.c_uint64(1))  # fuel is not enabled in this engine
    assert error
    assert "fuel" in str(adapter.error_from_address(error)).lower()


def host_guest(func: adapter.HostFunc) -> tuple[wasmtime.Store, wasmtime.Func]:
    """A store and the export `call(i32) -> i32` of a guest that calls the host function `func` with its argument."""
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    adapter.define_host_func(linker, "host", "f", wasmtime.FuncType([i32], [i32]), func)
    module = wasmtime.Module(engine, """(module (import "host" "f" (func $f (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "call") (param i32) (result i32) (call $f (local.get 0))))""")
    store = wasmtime.Store(engine)
    call = linker.instantiate(store, module).exports(store)["call"]
    assert isinstance(call, wasmtime.Func)
    return store, call


def check_define_host_func() -> None:
    def double(_caller: Any, slots: Any) -> int:
        slots[0].i32 = slots[0].i32 * 2
        return 0

    store, call = host_guest(double)
    assert call(store, 21) == 42


def check_caller_memory() -> None:
    seen = []

    def look(caller: Any, _slots: Any) -> int:
        seen.append(adapter.caller_memory(caller))
        return 0

    store, call = host_guest(look)
    call(store, 0)
    (memory,) = seen
    assert memory is not None
    assert memory[0]
    assert memory[1] == 65536


def check_new_trap() -> None:
    store, call = host_guest(lambda _caller, _slots: adapter.new_trap("the host refuses"))
    with pytest.raises((wasmtime.Trap, wasmtime.WasmtimeError), match="the host refuses"):
        call(store, 0)


CHECKS: dict[str, Callable[[], None]] = {
    name.removeprefix("check_"): check for name, check in globals().items() if name.startswith("check_")
}


def test_every_adapter_function_has_a_check() -> None:
    functions = {name for name in adapter.__all__ if not name.isupper()}
    defined = {name for name, value in vars(adapter).items()
               if inspect.isfunction(value) and value.__module__ == adapter.__name__ and not name.startswith("_")}
    assert defined <= functions, f"wasmtime_adapter functions missing from its __all__: {defined - functions}"
    assert functions == set(CHECKS), f"wasmtime_adapter functions without a check: {functions - set(CHECKS)}"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_adapter_function_works_with_the_installed_wasmtime(name: str) -> None:
    try:
        CHECKS[name]()
    except Exception as exc:  # any failure, not just an assertion: an upgrade may raise anything
        pytest.fail(f"wasmtime_adapter.{name} no longer works with wasmtime {WASMTIME}: "
                    f"{type(exc).__name__}: {exc}")


def test_the_extern_kinds_are_distinct() -> None:
    kinds = {adapter.EXTERN_FUNC, adapter.EXTERN_MEMORY, adapter.EXTERN_GLOBAL}
    assert len(kinds) == 3, f"wasmtime_adapter.EXTERN_* collapsed with wasmtime {WASMTIME}: {kinds}"


# Only the adapter goes below wasmtime-py's public API ---------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "runtime" / "warmpool_runtime", ROOT / "lab" / "warmpool_lab" / "runtime_bench")
PRIVATE_WASMTIME = {"_context", "_from_ptr", "_instance", "_ffi", "_bindings", "_ptr", "_func", "_store",
                    "_consumed", "_raw"}
"""wasmtime-py's private attributes (what `obj._x` on a wasmtime object would read)."""


def private_wasmtime_uses(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wasmtime"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            if node.module != "wasmtime" or private:
                yield f"line {node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wasmtime."):
                    yield f"line {node.lineno}: import {alias.name}"
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_WASMTIME:
            yield f"line {node.lineno}: .{node.attr}"
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and isinstance(node.value, ast.Name) and node.value.id == "wasmtime"):
            yield f"line {node.lineno}: wasmtime.{node.attr}"


def test_only_the_adapter_uses_wasmtime_private_api() -> None:
    offenders = {}
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if path.name == "wasmtime_adapter.py":
                continue
            uses = list(private_wasmtime_uses(path))
            if uses:
                offenders[str(path.relative_to(ROOT))] = uses
    assert not offenders, f"wasmtime private API outside runtime/warmpool_runtime/wasmtime_adapter.py: {offenders}"


def test_the_scan_sees_private_uses() -> None:
    sample = ROOT / "runtime" / "warmpool_runtime" / "wasmtime_adapter.py"
    assert {use.split(": ", 1)[1] for use in private_wasmtime_uses(sample)} >= {
        "from wasmtime import _ffi", "._context", "._from_ptr", "._instance"}

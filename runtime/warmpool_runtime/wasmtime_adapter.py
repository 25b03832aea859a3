"""The one module that uses wasmtime-py's private API (its ctypes bindings `_ffi`, `_context()`, `_from_ptr`, ...).

wasmtime-py exposes neither the pooling allocator nor an unchecked call path, and its checked
`Func.__call__` costs ~15x the raw call. Everything the runtime needs from below the public API is
a function or constant here, so a wasmtime upgrade that moves one breaks one module, and
tests/runtime/test_wasmtime_adapter.py names the function that broke.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

__all__ = [
    "EXTERN_FUNC", "EXTERN_GLOBAL", "EXTERN_MEMORY", "call_unchecked", "caller_memory",
    "define_host_func", "enable_pooling_allocator", "error_from_address", "export_of", "global_get", "global_set",
    "memory_address", "memory_size", "new_trap", "new_trap_out", "new_value_slots", "set_epoch_deadline",
    "set_fuel", "store_context", "take_trap", "value_bits",
]

# Kinds of an instance export, as `export_of` expects them.
EXTERN_FUNC = int(ffi.WASMTIME_EXTERN_FUNC.value)
EXTERN_MEMORY = int(ffi.WASMTIME_EXTERN_MEMORY.value)
EXTERN_GLOBAL = int(ffi.WASMTIME_EXTERN_GLOBAL.value)

# The raw C entry points of the call path, without ctypes argtypes conversion (1-2 µs a call):
# callers pass ready-made ctypes arguments only.
call_unchecked = ffi.dll["wasmtime_func_call_unchecked"]
"""(context, byref(func), raw slots, slot count, byref(trap out)) -> address of a wasmtime_error_t, or None."""
call_unchecked.restype = ctypes.c_void_p
set_epoch_deadline = ffi.dll["wasmtime_context_set_epoch_deadline"]
"""(context, c_uint64 ticks) -> None: the store traps with `interrupt` that many epochs from now."""
set_epoch_deadline.restype = None
set_fuel = ffi.dll["wasmtime_context_set_fuel"]
"""(context, c_uint64 fuel) -> address of a wasmtime_error_t (fuel not enabled), or None."""
set_fuel.restype = ctypes.c_void_p


def enable_pooling_allocator(config: wasmtime.Config, *, slots: int, max_memory_bytes: int,
                             max_unused_warm_slots: int, memory_keep_resident_bytes: int,
                             table_keep_resident_bytes: int) -> None:
    """Make engines built from `config` use the pooling instance allocator with `slots` instances."""
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, slots)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, max_memory_bytes)
        ffi.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pool, max_unused_warm_slots)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, memory_keep_resident_bytes)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, table_keep_resident_bytes)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


def store_context(store: wasmtime.Store) -> Any:
    """The store's C context pointer, which every raw entry point takes first."""
    return store._context()


def export_of(context: Any, instance: wasmtime.Instance, name: str, kind: int) -> Any | None:
    """The raw extern (func, memory or global struct) an instance exports as `name`, or None when it
    exports no `kind` of that name. Pass it to the raw entry points by `ctypes.byref`."""
    item = ffi.wasmtime_extern_t()
    raw = name.encode()
    found = ffi.wasmtime_instance_export_get(context, ctypes.byref(instance._instance), raw, len(raw),
                                             ctypes.byref(item))
    if not found or int(item.kind) != kind:
        return None
    if kind == EXTERN_MEMORY:
        return item.of.memory
    if kind == EXTERN_FUNC:
        return item.of.func
    return item.of.global_


def memory_size(context: Any, memory_ref: Any) -> int:
    """Bytes in a memory now (`memory_ref` is `ctypes.byref` of an `export_of` memory)."""
    return int(ffi.wasmtime_memory_data_size(context, memory_ref))


def memory_address(context: Any, memory_ref: Any) -> int:
    """Where a memory's bytes start in this process; valid until the memory grows."""
    data = ffi.wasmtime_memory_data(context, memory_ref)
    return int(ctypes.cast(data, ctypes.c_void_p).value or 0)


def global_get(context: Any, global_ref: Any) -> Any:
    """A global's current value, raw (a `wasmtime_val_t`), to hand back to `global_set` later."""
    value = ffi.wasmtime_val_t()
    ffi.wasmtime_global_get(context, global_ref, ctypes.byref(value))
    return value


def global_set(context: Any, global_ref: Any, value: Any) -> bool:
    """Write a raw value from `global_get` back; False when wasmtime refuses it."""
    return not ffi.wasmtime_global_set(context, global_ref, ctypes.byref(value))


def value_bits(value: Any) -> tuple[int, int]:
    """A numeric raw value as (kind, its 8 value bytes as an integer), to compare two of them."""
    return int(value.kind), int(value.of.i64)


def new_value_slots(count: int) -> Any:
    """An array of `count` raw value slots (`wasmtime_val_raw_t`, 16 bytes each) for `call_unchecked`."""
    return (ffi.wasmtime_val_raw_t * count)()


def new_trap_out() -> Any:
    """An empty trap pointer for `call_unchecked` to fill (test it for truth after the call)."""
    return ctypes.POINTER(ffi.wasm_trap_t)()


def take_trap(trap_out: Any) -> wasmtime.Trap:
    """The trap a call left in `trap_out`, which now belongs to the returned object (use a new trap_out)."""
    return wasmtime.Trap._from_ptr(trap_out)


def error_from_address(address: int) -> wasmtime.WasmtimeError:
    """The error a raw entry point returned by address (`call_unchecked`, `set_fuel`), now owned by Python."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(address, ctypes.POINTER(ffi.wasmtime_error_t)))


HostFunc = Callable[[Any, Any], int]
"""A host function: (caller, raw value slots: its arguments in, its results out) -> 0, or the address of
a trap to raise in the guest (`new_trap`)."""
_HOST_CALLBACKS: list[Any] = []  # the C callbacks of defined host functions, kept alive with the process


def define_host_func(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, func: HostFunc) -> None:
    """Define `module.name` in `linker` as `func`, called without wasmtime-py's trampoline: unlike a
    `Linker.define_func` callback, it can trap with a message of its own (a Python exception there
    becomes an anonymous trap and a process-wide pending exception)."""

    def trampoline(_env: Any, caller: Any, slots: Any, _count: int) -> int:
        try:
            return func(caller, slots)
        except BaseException as exc:  # nothing may unwind through the C frames
            return new_trap(f"host function {module}.{name} failed: {exc!r}")

    callback = ffi.wasmtime_func_unchecked_callback_t(trampoline)
    _HOST_CALLBACKS.append(callback)
    raw_module, raw_name = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(linker.ptr(), raw_module, len(raw_module), raw_name,
                                                      len(raw_name), ty.ptr(), callback, None, _NO_FINALIZER)
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()


def caller_memory(caller: Any) -> tuple[int, int] | None:
    """(address, size in bytes) of the calling instance's exported `memory`, or None when it has none.
    Valid only during the host call, and only until the guest's memory grows."""
    item = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(item)):
        return None
    if int(item.kind) != EXTERN_MEMORY:
        return None
    context = ffi.wasmtime_caller_context(caller)
    memory = ctypes.byref(item.of.memory)
    return memory_address(context, memory), memory_size(context, memory)


def new_trap(message: str) -> int:
    """The address of a new trap carrying `message`, for a host function to return (the guest then owns it)."""
    raw = message.encode()
    trap = ffi.wasmtime_trap_new(raw, len(raw))
    return int(ctypes.cast(trap, ctypes.c_void_p).value or 0)

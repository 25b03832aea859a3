"""One warm instance: its own Store (limits, deadline, fuel) and the fast call path into it."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from warmpool_runtime import abi
from warmpool_runtime.engine import WASM_PAGE
from warmpool_runtime.errors import (
    BadArguments,
    BadGuestOutput,
    DeadlineExceeded,
    FuelExhausted,
    GuestTrap,
    InstantiateFailed,
    MemoryLimitExceeded,
    RuntimeFault,
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance resource limits."""

    memory_bytes: int = 64 << 20
    timeout_ms: int = 1000
    fuel: int | None = None
    table_elements: int = 10_000
    max_module_bytes: int = 50 << 20


@dataclass(frozen=True, slots=True)
class Template:
    """Everything needed to stamp out instances of one tuple, resolved once at load time."""

    tenant: str
    sha256: str
    engine: wasmtime.Engine
    pre: wasmtime.InstancePre
    signatures: dict[str, abi.Signature]
    has_memory: bool
    wasi: bool
    limits: Limits
    deadline_ticks: int


class WarmInstance:
    """An instantiated module in a Store no other instance shares; used by one caller at a time."""

    __slots__ = ("_ctx", "_funcs", "_instance", "_memory", "_slots", "initial_memory", "store", "template")

    def __init__(self, template: Template) -> None:
        self.template = template
        store = wasmtime.Store(template.engine)
        limits = template.limits
        store.set_limits(
            memory_size=limits.memory_bytes, table_elements=limits.table_elements, instances=1, memories=1
        )
        if template.wasi:
            store.set_wasi(wasmtime.WasiConfig())  # no preopens, env, args or stdio
        store.set_epoch_deadline(template.deadline_ticks)
        if limits.fuel is not None:
            store.set_fuel(limits.fuel)
        try:
            self._instance = template.pre.instantiate(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise InstantiateFailed(f"instantiating {template.sha256[:12]} failed: {exc}") from exc
        self.store = store
        self._ctx = store._context()
        self._funcs: dict[str, Any] = {}
        self._slots: dict[str, Any] = {}
        self._memory: Any = None
        if template.has_memory:
            self._memory = self._export(abi.MEMORY_EXPORT, abi.EXTERN_MEMORY)
        self.initial_memory = self.memory_len()

    def _export(self, name: str, kind: int) -> Any:
        item = ffi.wasmtime_extern_t()
        raw = name.encode()
        found = ffi.wasmtime_instance_export_get(
            self._ctx, ctypes.byref(self._instance._instance), raw, len(raw), ctypes.byref(item)
        )
        if not found or int(item.kind) != kind:
            return None
        return item.of.memory if kind == abi.EXTERN_MEMORY else item.of.func

    def _func(self, name: str) -> tuple[Any, Any]:
        func = self._funcs.get(name)
        if func is None:
            func = self._export(name, abi.EXTERN_FUNC)
            if func is None:
                raise BadArguments(f"export {name!r} is missing from the instance")
            self._funcs[name] = func
            self._slots[name] = abi.new_slots(self.template.signatures[name].slots)
        return ctypes.byref(func), self._slots[name]

    def memory_len(self) -> int:
        if self._memory is None:
            return 0
        return int(ffi.wasmtime_memory_data_size(self._ctx, ctypes.byref(self._memory)))

    @property
    def grew(self) -> bool:
        return self.memory_len() != self.initial_memory

    def _arm(self, deadline_ticks: int) -> None:
        abi.set_epoch_deadline(self._ctx, deadline_ticks)
        fuel = self.template.limits.fuel
        if fuel is not None:
            ffi.wasmtime_context_set_fuel(self._ctx, fuel)

    def _call(self, func_ref: Any, buf: Any, n: int) -> None:
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = abi.call_unchecked(self._ctx, func_ref, buf, n, ctypes.byref(trap))
        if error:
            raise GuestTrap(f"guest failed: {wasmtime.WasmtimeError._from_ptr(error)}")
        if trap:
            raise self._classify(wasmtime.Trap._from_ptr(trap))

    def _classify(self, trap: wasmtime.Trap) -> RuntimeFault:
        code = trap.trap_code
        message = trap.message.splitlines()[0] if trap.message else "trap"
        if code == wasmtime.TrapCode.INTERRUPT:
            return DeadlineExceeded(f"guest ran past its {self.template.limits.timeout_ms} ms deadline")
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return FuelExhausted(f"guest used up its {self.template.limits.fuel} units of fuel")
        limit = self.template.limits.memory_bytes
        if self._memory is not None and self.memory_len() + WASM_PAGE > limit:
            # memory.grow past the store limit returns -1 to the guest; most guests then trap.
            return MemoryLimitExceeded(
                f"guest trapped at its memory limit ({self.memory_len()} of {limit} bytes): {message}",
                trap=code.name.lower() if code else None,
            )
        return GuestTrap(message, trap=code.name.lower() if code else None)

    def call_numeric(self, export: str, args: Sequence[Any], deadline_ticks: int) -> list[int | float]:
        signature = abi.lookup(self.template.signatures, export)
        func_ref, buf = self._func(export)
        abi.encode_args(signature, args, buf, export)
        self._arm(deadline_ticks)
        self._call(func_ref, buf, signature.slots)
        return abi.decode_results(signature, buf)

    def call_bytes(self, export: str, payload: bytes, deadline_ticks: int) -> bytes:
        signature = abi.lookup(self.template.signatures, export)
        if not signature.is_bytes_handler or self._memory is None:
            raise BadArguments(f"{export} is not a bytes handler: the guest needs `memory`, `alloc` and (i32,i32)->i64")
        alloc_sig = self.template.signatures.get(abi.ALLOC_EXPORT)
        if alloc_sig is None or alloc_sig.params != ("i32",) or alloc_sig.results != ("i32",):
            raise BadArguments("module has no `alloc(len: i32) -> i32` export for the bytes ABI")
        self._arm(deadline_ticks)
        alloc_ref, alloc_buf = self._func(abi.ALLOC_EXPORT)
        alloc_buf[0].i32 = len(payload)
        self._call(alloc_ref, alloc_buf, 1)
        ptr = alloc_buf[0].i32 & 0xFFFF_FFFF
        base, size = self._memory_view()
        if ptr + len(payload) > size:
            raise BadGuestOutput(f"alloc returned {ptr}, leaving no room for {len(payload)} bytes")
        ctypes.memmove(base + ptr, payload, len(payload))
        func_ref, buf = self._func(export)
        buf[0].i32 = ptr
        buf[1].i32 = len(payload)
        self._call(func_ref, buf, 2)
        base, size = self._memory_view()
        out_ptr, out_len = abi.unpack_output(buf[0].i64, size)
        return ctypes.string_at(base + out_ptr, out_len)

    def _memory_view(self) -> tuple[int, int]:
        data = ffi.wasmtime_memory_data(self._ctx, ctypes.byref(self._memory))
        return int(ctypes.cast(data, ctypes.c_void_p).value or 0), self.memory_len()

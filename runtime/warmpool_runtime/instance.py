"""One warm instance: its own Store (limits, deadline, fuel) and the fast call path into it."""

from __future__ import annotations

import ctypes
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime

from warmpool_contract import (
    DEFAULT_MAX_MODULE_BYTES,
    DEFAULT_MEMORY_BYTES,
    DEFAULT_TABLE_ELEMENTS,
    DEFAULT_TIMEOUT_MS,
    SHORT_HASH,
)
from warmpool_runtime import abi
from warmpool_runtime.engine import WASM_PAGE, EpochClock
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
from warmpool_runtime.wasi_host import DEADLINE_TRAP, enter_call
from warmpool_runtime.wasmtime_adapter import (
    EXTERN_FUNC,
    EXTERN_GLOBAL,
    EXTERN_MEMORY,
    call_unchecked,
    error_from_address,
    export_of,
    global_get,
    global_set,
    memory_address,
    memory_size,
    new_trap_out,
    new_value_slots,
    set_epoch_deadline,
    set_fuel,
    store_context,
    take_trap,
)

_MASK32 = 0xFFFF_FFFF
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance resource limits."""

    memory_bytes: int = DEFAULT_MEMORY_BYTES
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    fuel: int | None = None
    table_elements: int = DEFAULT_TABLE_ELEMENTS
    max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES


class ResetMode(enum.Enum):
    """How a pool makes a used instance clean again."""

    RECYCLE = "recycle"
    """Drop the Store (the pooling allocator resets its slot) and stamp a fresh instance."""
    TRY_IN_PLACE = "try in place"
    """The module's whole mutable state is reachable from the host: the pool's first fill measures
    whether restoring it beats recycling, and settles on IN_PLACE or RECYCLE."""
    IN_PLACE = "in place"
    """Copy the post-start memory image back and rewrite the mutable globals."""


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
    clock: EpochClock
    """The ticker's count of the engine's epoch."""
    reset_mode: ResetMode = ResetMode.RECYCLE
    """What the module's binary allows: RECYCLE, or TRY_IN_PLACE (the pool decides)."""
    in_place_globals: tuple[str, ...] = ()
    """Exported mutable globals an in-place reset restores (empty when recycling)."""
    inline_ok: bool = True
    """False when the module imports a host call that can block (a WASI clock sleep, a read):
    the epoch deadline cannot interrupt a host call, so such calls never run on the server thread."""
    initializer: str | None = None
    """The export each new instance runs once before it is used (a WASI reactor's `_initialize`), or None."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Post-start state of an instance whose whole mutable state the host can reach."""

    memory: bytes
    globals: tuple[Any, ...]
    """Raw values (from `wasmtime_adapter.global_get`), in `Template.in_place_globals` order."""


class _Entry:
    """A resolved export: its signature, function reference, argument buffer and result decoder."""

    __slots__ = ("all_int", "buf", "decode", "func", "func_ref", "signature", "slots", "words")

    def __init__(self, signature: abi.Signature, func: Any) -> None:
        self.signature = signature
        self.all_int = signature.all_int
        self.func = func
        self.func_ref = ctypes.byref(func)
        self.buf = new_value_slots(signature.slots)
        self.words = (ctypes.c_uint64 * (2 * signature.slots)).from_buffer(self.buf)
        self.slots = ctypes.c_size_t(signature.slots)
        self.decode = abi.result_decoder(signature, self.buf, self.words)


class WarmInstance:
    """An instantiated module in a Store no other instance shares; used by one caller at a time."""

    __slots__ = ("_armed", "_base", "_clock", "_ctx", "_deadlines", "_entries", "_globals", "_memory",
                 "_memory_ref", "_trap", "_trap_ref", "_wasi_clock_base", "_wasm_instance", "from_pool",
                 "initial_memory", "store", "template")

    def __init__(self, template: Template) -> None:
        self.template = template
        store = wasmtime.Store(template.engine)
        limits = template.limits
        store.set_limits(
            memory_size=limits.memory_bytes, table_elements=limits.table_elements, instances=1, memories=1
        )
        self._wasi_clock_base = 0
        if template.wasi:
            store.set_wasi(wasmtime.WasiConfig())  # no preopens, env, args or stdio
            self._wasi_clock_base = time.monotonic_ns()  # (just after) the zero of its monotonic clock
        store.set_epoch_deadline(template.deadline_ticks)
        self._clock = clock = template.clock
        self._armed: tuple[int, int] | None = None  # (epoch, ticks) of the deadline set last
        if limits.fuel is not None:
            store.set_fuel(limits.fuel)
        # A start function is guest code too: the epoch must advance while it runs.
        clock.hold()
        try:
            if template.wasi:
                self.enter_host_calls()
            self._wasm_instance = template.pre.instantiate(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise InstantiateFailed(f"instantiating {template.sha256[:SHORT_HASH]} failed: {exc}") from exc
        finally:
            clock.release()
        self.store = store
        self.from_pool = False
        self._ctx = store_context(store)
        self._trap = new_trap_out()
        self._trap_ref = ctypes.byref(self._trap)
        self._deadlines: dict[int, ctypes.c_uint64] = {}
        self._memory: Any = None
        self._memory_ref: Any = None
        if template.has_memory:
            self._memory = self._export(abi.MEMORY_EXPORT, EXTERN_MEMORY)
            self._memory_ref = ctypes.byref(self._memory)
        if template.initializer is not None:
            self._initialize(template.initializer)
        # Sizes and the memory's address after `_initialize`: a constructor that grows the heap has not
        # grown the instance as far as resets are concerned.
        self.initial_memory = self.memory_len()
        # Where the memory starts, for in-place resets. Only growing can move a memory, and a grown
        # instance is never reset in place.
        in_place = self._memory is not None and template.reset_mode is not ResetMode.RECYCLE
        self._base = memory_address(self._ctx, self._memory_ref) if in_place else 0
        self._globals = [ctypes.byref(self._export(n, EXTERN_GLOBAL)) for n in template.in_place_globals]
        # Resolved here, on the reset side, so the request path does no export lookups.
        self._entries = {name: _Entry(sig, self._export(name, EXTERN_FUNC))
                         for name, sig in template.signatures.items()}

    def _initialize(self, name: str) -> None:
        """Run a reactor's initializer (static constructors, wasi-libc set-up) within the tuple's deadline,
        fuel and memory limits, as a call would; any failure fails the instantiation, with its reason.

        Every instance runs it once, before the pool holds it: a warm instance is always initialized. An
        in-place reset restores the snapshot a pool takes of a fresh instance, which is thus the
        post-initializer state, so it never runs again for that instance (see `TuplePool._choose_reset`).
        """
        entry = _Entry(abi.Signature((), ()), self._export(name, EXTERN_FUNC))
        clock = self._clock
        clock.hold()  # guest code outside a call: the epoch must advance for the deadline to fire
        try:
            if self.template.wasi:
                self.enter_host_calls()
            self._arm(self.template.deadline_ticks)
            self._call(entry)
        except RuntimeFault as fault:
            trap = fault.details.get("trap")
            raise InstantiateFailed(f"{name} of module {self.template.sha256[:SHORT_HASH]} failed: {fault.code}"
                                    f"{f' ({trap})' if trap else ''}: {fault.message}") from fault
        finally:
            clock.release()

    def _export(self, name: str, kind: int) -> Any:
        item = export_of(self._ctx, self._wasm_instance, name, kind)
        if item is None:
            raise InstantiateFailed(f"export {name!r} is missing from the instance")
        return item

    def memory_len(self) -> int:
        if self._memory is None:
            return 0
        return memory_size(self._ctx, self._memory_ref)

    @property
    def grew(self) -> bool:
        return self.memory_len() != self.initial_memory

    # Reset in place ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        base, size = self._memory_view()
        return Snapshot(ctypes.string_at(base, size), tuple(global_get(self._ctx, ref) for ref in self._globals))

    def restore(self, snapshot: Snapshot) -> bool:
        """Copy the post-start state back; False when that cannot make the instance clean (it grew)."""
        size = len(snapshot.memory)
        if self.memory_len() != size:
            return False
        ctypes.memmove(self._base, snapshot.memory, size)
        for ref, value in zip(self._globals, snapshot.globals, strict=True):
            if not global_set(self._ctx, ref, value):
                return False
        return True

    # Calls ---------------------------------------------------------------------------------------
    def enter_host_calls(self) -> None:
        """The next call runs on this thread: host calls that wait (WASI sleeps) end by its deadline.

        Only guests that can wait in a host call need it, and those never run on the inline lane.
        """
        enter_call(time.monotonic_ns() + self.template.limits.timeout_ms * 1_000_000, self._wasi_clock_base)

    def _arm(self, ticks: int) -> None:
        # A deadline is the epoch it was set in plus `ticks`: within the same epoch, setting it
        # again would set the very same deadline, so that call is skipped.
        armed = (self._clock.epoch, ticks)
        if self._armed != armed:
            deadline = self._deadlines.get(ticks)
            if deadline is None:
                deadline = self._deadlines[ticks] = ctypes.c_uint64(ticks)
            set_epoch_deadline(self._ctx, deadline)
            self._armed = armed
        fuel = self.template.limits.fuel
        if fuel is not None:
            set_fuel(self._ctx, ctypes.c_uint64(fuel))

    def _call(self, entry: _Entry) -> None:
        error = call_unchecked(self._ctx, entry.func_ref, entry.buf, entry.slots, self._trap_ref)
        if error:
            failure = str(error_from_address(error))
            if DEADLINE_TRAP in failure:  # a host function's trap comes back as an error
                raise self._deadline_exceeded()
            raise GuestTrap(f"guest failed: {failure}")
        if self._trap:
            trap = take_trap(self._trap)
            self._trap = new_trap_out()
            self._trap_ref = ctypes.byref(self._trap)
            raise self._classify(trap)

    def _entry(self, export: str) -> _Entry:
        entry = self._entries.get(export)
        if entry is None:
            abi.lookup(self.template.signatures, export)
            raise BadArguments(f"export {export!r} cannot be called")
        return entry

    def _classify(self, trap: wasmtime.Trap) -> RuntimeFault:
        code = trap.trap_code
        message = trap.message.splitlines()[0] if trap.message else "trap"
        if code == wasmtime.TrapCode.INTERRUPT or (code is None and DEADLINE_TRAP in message):
            return self._deadline_exceeded()
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

    def _deadline_exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"guest ran past its {self.template.limits.timeout_ms} ms deadline")

    def call_numeric(self, export: str, args: Sequence[Any], deadline_ticks: int) -> list[int | float]:
        entry = self._entry(export)
        if entry.all_int:
            abi.encode_int_args(entry.signature, args, entry.words, export)
        else:
            abi.encode_args(entry.signature, args, entry.buf, export)
        self._arm(deadline_ticks)
        self._call(entry)
        return entry.decode()

    def call_bytes(self, export: str, payload: bytes, deadline_ticks: int) -> bytes:
        entry = self._entry(export)
        if not entry.signature.is_bytes_handler or self._memory is None:
            raise BadArguments(f"{export} is not a bytes handler: the guest needs `memory`, `alloc` and "
                               "(i32, i32) -> i64")
        alloc = self._entries.get(abi.ALLOC_EXPORT)
        if alloc is None or alloc.signature.params != ("i32",) or alloc.signature.results != ("i32",):
            raise BadArguments("module has no `alloc(len: i32) -> i32` export for the bytes ABI")
        self._arm(deadline_ticks)
        alloc.words[0] = len(payload)
        self._call(alloc)
        ptr = alloc.buf[0].i32 & _MASK32
        base, size = self._memory_view()
        if ptr + len(payload) > size:
            raise BadGuestOutput(f"alloc returned {ptr}, leaving no room for {len(payload)} bytes")
        ctypes.memmove(base + ptr, payload, len(payload))
        entry.words[0] = ptr
        entry.words[2] = len(payload)
        self._call(entry)
        base, size = self._memory_view()
        out_ptr, out_len = abi.unpack_output(entry.buf[0].i64, size)
        return ctypes.string_at(base + out_ptr, out_len)

    def _memory_view(self) -> tuple[int, int]:
        return memory_address(self._ctx, self._memory_ref), self.memory_len()

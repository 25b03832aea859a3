"""One wasmtime Engine per process: pooling allocator, copy-on-write memory images, epoch ticker."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import wasmtime
from wasmtime import _ffi as ffi

WASM_PAGE = 65536


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Process-wide engine knobs; per-tuple limits live in the runtime config."""

    pool_slots: int = 1000
    """Instance slots (and memories, tables) the pooling allocator reserves up front."""
    max_memory_bytes: int = 256 << 20
    """Largest linear memory any slot can hold; per-tuple limits are at most this."""
    max_wasm_stack_bytes: int = 512 << 10
    """Guest stack limit; deeper recursion traps with `stack_overflow`."""
    epoch_tick_ms: float = 1.0
    """Granularity of per-call wall-clock deadlines."""
    consume_fuel: bool = False
    """Compile fuel metering in (costs ~10-30 % of guest speed); needed for `limits.fuel`."""
    pooling: bool = True
    """Use the pooling instance allocator (off only to measure what it buys)."""
    max_unused_warm_slots: int = 100
    """Freed slots kept hot (resident and already mapped) for the next instantiation."""


def _pooling_strategy(config: wasmtime.Config, settings: EngineSettings) -> None:
    """Enable wasmtime's pooling allocator; wasmtime-py exposes it only through its C bindings."""
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, settings.pool_slots)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, settings.pool_slots)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, settings.pool_slots)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, settings.max_memory_bytes)
        ffi.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pool, settings.max_unused_warm_slots)
        # Reset small dirty memories with memset rather than madvise: cheaper below ~1 MiB.
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, 1 << 20)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, 64 << 10)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


def build_engine(settings: EngineSettings) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = settings.consume_fuel
    config.max_wasm_stack = settings.max_wasm_stack_bytes
    config.memory_init_cow = True
    if settings.pooling:
        _pooling_strategy(config, settings)
    return wasmtime.Engine(config)


class EpochClock:
    """The engine's epoch as the host counts it: advanced just before the engine's own, so it
    never reads ahead of it. Calls within one epoch share a deadline without re-arming it."""

    __slots__ = ("epoch",)

    def __init__(self) -> None:
        self.epoch = 0


class EpochTicker:
    """A daemon thread advancing the engine's epoch every tick, so deadlines are counted in ticks."""

    def __init__(self, engine: wasmtime.Engine, tick_ms: float) -> None:
        self._engine = engine
        self.clock = EpochClock()
        self._interval = tick_ms / 1000.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasm-epoch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        clock = self.clock
        while not self._stop.wait(self._interval):
            clock.epoch += 1
            self._engine.increment_epoch()


def ticks_for(timeout_ms: float, tick_ms: float) -> int:
    """Epoch ticks that guarantee at least `timeout_ms` (the current tick may be partly spent)."""
    return max(1, int(-(-timeout_ms // tick_ms))) + 1

"""One wasmtime Engine per process: pooling allocator, copy-on-write memory images, epoch ticker."""

from __future__ import annotations

import threading

import wasmtime

from warmpool_runtime.settings import RuntimeSettings
from warmpool_runtime.wasmtime_adapter import enable_pooling_allocator

WASM_PAGE = 65536


def build_engine(settings: RuntimeSettings, *, fuel: bool = False) -> wasmtime.Engine:
    """The process's engine: epoch interruption, copy-on-write memory images, the pooling allocator.

    Fuel metering is compiled in when `fuel` (some tuple sets a fuel budget) or `settings.consume_fuel`.
    """
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = settings.consume_fuel or fuel
    config.max_wasm_stack = settings.max_wasm_stack_bytes
    config.memory_init_cow = True
    if settings.pooling:
        enable_pooling_allocator(
            config, slots=settings.pool_slots, max_memory_bytes=settings.max_memory_bytes,
            max_unused_warm_slots=settings.max_unused_warm_slots,
            memory_keep_resident_bytes=settings.memory_keep_resident_bytes,
            table_keep_resident_bytes=settings.table_keep_resident_bytes,
        )
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

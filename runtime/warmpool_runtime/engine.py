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
    """The engine's epoch as the host counts it, and what keeps the ticker advancing it.

    `epoch` is advanced just before the engine's own, so it never reads ahead of it; calls within
    one epoch share a deadline without re-arming it. The ticker runs only while guest code may run:
    `busy` counts calls in flight (changed by the serving thread only, so a plain integer), `hold`
    and `release` count instantiations from any thread. Whoever makes work appear checks `parked`
    after counting it, and the ticker re-checks the counts after setting `parked`, so the ticker
    never sleeps through work (every step is one bytecode-level operation under the GIL).
    """

    __slots__ = ("_held", "_lock", "_wake", "busy", "epoch", "parked")

    def __init__(self) -> None:
        self.epoch = 0
        self.busy = 0
        self.parked = False
        self._held = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()

    @property
    def idle(self) -> bool:
        return self.busy == 0 and self._held == 0

    def wake(self) -> None:
        """Start the parked ticker (called after counting new work)."""
        self._wake.set()

    def hold(self) -> None:
        """Guest code is about to run outside a call (a start function): keep ticking until `release`."""
        with self._lock:
            self._held += 1
        if self.parked:
            self._wake.set()

    def release(self) -> None:
        with self._lock:
            self._held -= 1

    def park(self) -> None:
        """The ticker's wait for work: returns at once when work appeared meanwhile."""
        self._wake.clear()
        self.parked = True
        if self.idle:
            self._wake.wait()
        self.parked = False


class EpochTicker:
    """A daemon thread advancing the engine's epoch every tick while guest code may run, so deadlines
    are counted in ticks; after `idle_park_ms` without any, it waits for the next call instead."""

    def __init__(self, engine: wasmtime.Engine, tick_ms: float, idle_park_ms: float = 100.0) -> None:
        self._engine = engine
        self.clock = EpochClock()
        self._interval = tick_ms / 1000.0
        self._park_after = max(1, int(idle_park_ms // tick_ms))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasm-epoch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.clock.wake()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        clock, stop, engine = self.clock, self._stop, self._engine
        idle_ticks = 0
        while not stop.wait(self._interval):
            clock.epoch += 1
            engine.increment_epoch()
            if not clock.idle:
                idle_ticks = 0
                continue
            idle_ticks += 1
            if idle_ticks < self._park_after:
                continue
            clock.park()
            idle_ticks = 0
            # The first tick after waking comes a full interval later, as a running ticker's would:
            # a deadline armed now may lose at most the partial tick `ticks_for` already allows for.


def ticks_for(timeout_ms: float, tick_ms: float) -> int:
    """Epoch ticks that guarantee at least `timeout_ms` (the current tick may be partly spent)."""
    return max(1, int(-(-timeout_ms // tick_ms))) + 1

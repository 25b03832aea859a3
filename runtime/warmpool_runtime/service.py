"""The Runtime: one process's engine, epoch ticker and refill thread, its tuple registry and its call lanes."""

from __future__ import annotations

import asyncio

from warmpool_runtime.config import RuntimeConfig
from warmpool_runtime.engine import EpochClock, EpochTicker, build_engine
from warmpool_runtime.instance import WarmInstance
from warmpool_runtime.lanes import CallLanes
from warmpool_runtime.pool import InstanceFactory, Refiller
from warmpool_runtime.registry import TupleRegistry


class Runtime:
    """Wires the parts together and runs their lifecycle; calls go `registry.target` -> `lanes.call`."""

    def __init__(self, config: RuntimeConfig, factory: InstanceFactory = WarmInstance) -> None:
        self.config = config
        settings = config.settings
        self.engine = build_engine(settings, fuel=config.needs_fuel)
        self._ticker = EpochTicker(self.engine, settings.epoch_tick_ms, settings.epoch_idle_park_ms)
        self._refiller = Refiller(settings.refill_retry_seconds)
        self.registry = TupleRegistry(config, self.engine, self._ticker.clock, self._refiller, factory)
        self.lanes = CallLanes(settings, self._ticker.clock, sorted({t.tenant for t in config.tuples}))

    @property
    def clock(self) -> EpochClock:
        """The epoch ticker's shared state (whether it is parked, the epoch it counted)."""
        return self._ticker.clock

    @property
    def saturated(self) -> bool:
        """Calls wait for a worker past the high-water mark: `/readyz` says so, so traffic goes elsewhere."""
        return self.lanes.saturated

    @property
    def ready(self) -> bool:
        """Every tuple is loaded and prewarmed, and the pod is not saturated."""
        return self.registry.ready and not self.lanes.saturated

    def start(self) -> None:
        """Start the epoch ticker and the refill thread."""
        self._ticker.start()
        self._refiller.start()

    def load_all(self) -> None:
        """Load every tuple (blocking: compiles modules); the refill thread then prewarms the pools."""
        self.registry.load_all()

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve calls on this loop: pools reset on it, worker calls complete on it."""
        self.lanes.serve_on(loop)
        self.registry.serve_on(loop)

    def close(self) -> None:
        self.lanes.close()
        self._refiller.stop()
        self._ticker.stop()
        self.registry.drain()

"""The Runtime: one process's engine, epoch ticker and refill thread, its tuple registry and its call lanes."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping

from warmpool_contract import SHORT_HASH
from warmpool_runtime.config import RuntimeConfig
from warmpool_runtime.engine import EpochClock, EpochTicker, build_engine
from warmpool_runtime.instance import WarmInstance
from warmpool_runtime.lanes import CallLanes
from warmpool_runtime.pool import InstanceFactory, Refiller
from warmpool_runtime.reconfig import ReloadStatus, TupleChanges
from warmpool_runtime.registry import TupleRegistry, TupleStatus

log = logging.getLogger(__name__)


class Runtime:
    """Wires the parts together and runs their lifecycle; calls go `registry.target` -> `lanes.call`.

    `tuples_gate_readiness`: the pod is Ready only once every tuple is warm (a pod dedicated to its tuples,
    whose rollout waits for them). Without it (a shared fleet whose tuple set changes live) the pod is
    Ready while it serves and is not saturated, whatever state each tuple is in.
    """

    def __init__(self, config: RuntimeConfig, factory: InstanceFactory = WarmInstance, *,
                 tuples_gate_readiness: bool = True) -> None:
        self.config = config
        settings = config.settings
        self.engine = build_engine(settings, fuel=config.needs_fuel)
        self._ticker = EpochTicker(self.engine, settings.epoch_tick_ms, settings.epoch_idle_park_ms)
        self._refiller = Refiller(settings.refill_retry_seconds)
        self.registry = TupleRegistry(config, self.engine, self._ticker.clock, self._refiller, factory,
                                      fuel=config.needs_fuel or settings.consume_fuel)
        self.lanes = CallLanes(settings, self._ticker.clock, sorted({t.tenant for t in config.tuples}))
        self.tuples_gate_readiness = tuples_gate_readiness
        self.reloads = ReloadStatus()
        """The config watcher's record, when there is one."""
        self.unauthorized: Counter[str] = Counter()
        """Calls refused for a missing or wrong bearer token, by tenant (counted on the serving thread)."""

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
        """Not saturated, and (when tuples gate readiness) every tuple is loaded and prewarmed."""
        return not self.lanes.saturated and (not self.tuples_gate_readiness or self.registry.ready)

    def start(self) -> None:
        """Start the epoch ticker and the refill thread."""
        self._ticker.start()
        self._refiller.start()

    def load_all(self) -> None:
        """Load every tuple (blocking: compiles modules and prewarms them)."""
        self.registry.load_all()

    def apply(self, config: RuntimeConfig) -> TupleChanges:
        """Change the tuple set live to `config`'s (see `TupleRegistry.apply`) and log what changed."""
        changes = self.registry.apply(config)
        self.lanes.workers.set_tenants(self.registry.tenants)
        for what, tuples in (("adding", changes.add), ("replacing", changes.replace), ("resizing", changes.resize)):
            for t in tuples:
                log.info("config: %s tuple %s/%s (warm %d)", what, t.tenant, t.sha256[:SHORT_HASH], t.warm)
        for tenant, sha256 in changes.remove:
            log.info("config: removing tuple %s/%s (calls in flight finish first)", tenant, sha256[:SHORT_HASH])
        if changes.cap_changed:
            log.info("config: maxTotalWarm is now %d", config.max_total_warm)
        if changes.restart_needed:
            log.warning("config: %s changed but only take(s) effect on a restart; running with the old value(s)",
                        ", ".join(changes.restart_needed))
        return changes

    def tuple_metrics(self) -> tuple[list[TupleStatus], ReloadStatus, Mapping[str, int]]:
        """What the metrics read at scrape time beside the pools."""
        return self.registry.statuses(), self.reloads, dict(self.unauthorized)

    def tick(self) -> None:
        """Periodic upkeep (see `TupleRegistry.tick`)."""
        self.registry.tick()

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve calls on this loop: pools reset on it, worker calls complete on it."""
        self.lanes.serve_on(loop)
        self.registry.serve_on(loop)

    def close(self) -> None:
        self.lanes.close()
        self._refiller.stop()
        self._ticker.stop()
        self.registry.drain()

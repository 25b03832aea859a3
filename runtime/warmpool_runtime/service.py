"""The Runtime: one process's engine, epoch ticker and refill thread, its tuple registry and its call lanes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from warmpool_contract import SHORT_HASH
from warmpool_runtime.config import RuntimeConfig
from warmpool_runtime.engine import EpochClock, EpochTicker, build_engine
from warmpool_runtime.instance import WarmInstance
from warmpool_runtime.lanes import CallLanes
from warmpool_runtime.pool import InstanceFactory, Refiller
from warmpool_runtime.reconfig import ReloadStatus, TupleChanges
from warmpool_runtime.registry import TupleRegistry, TupleStatus

log = logging.getLogger(__name__)


Startup = Literal["loading", "settled", "graceExpired"]
_NAMED = 20
"""Tuples a log line names at most (the rest are counted)."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the pod is Ready, and when it is not, why (what `/readyz` says)."""

    ready: bool
    saturated: bool
    reason: str | None
    """None when ready; else `saturated`, `tuples not warm` or `initial tuples loading`."""
    loading: int
    """Tuples holding readiness back: not yet warm (every tuple gates), or of the initial config and still
    loading (a fleet pod, during its startup)."""
    startup: Startup | None
    """A fleet pod's startup gate: its initial tuples `loading`, all `settled` (warm or failed), or the
    `graceExpired` while some still loaded; None when every tuple gates readiness."""


class Runtime:
    """Wires the parts together and runs their lifecycle; calls go `registry.target` -> `lanes.call`.

    `tuples_gate_readiness`: the pod is Ready only once every tuple is warm (a pod dedicated to its tuples,
    whose rollout waits for them). Without it (a shared fleet whose tuple set changes live) the pod is
    Ready once every tuple of the config it started with is warm or failed (or `startup_grace_seconds`
    passed), and from then on while it serves and is not saturated, whatever later configs bring.
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
        self._grace_ends = time.monotonic() + settings.startup_grace_seconds
        self._startup: Startup = "loading"
        """Only moves forward, to `settled` or `graceExpired` (under `_startup_lock`)."""
        self._startup_lock = threading.Lock()
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
        """Not saturated, and every tuple loaded and prewarmed (when tuples gate readiness), or the startup
        gate passed (when they do not)."""
        return self.readiness().ready

    def readiness(self) -> Readiness:
        """Ready or not, and why."""
        saturated = self.lanes.saturated
        if self.tuples_gate_readiness:
            waiting = sum(1 for s in self.registry.statuses() if not s.ready)
            reason = "tuples not warm" if waiting else "saturated" if saturated else None
            return Readiness(reason is None, saturated, reason, waiting, None)
        startup, loading = self._startup_gate()
        reason = "initial tuples loading" if startup == "loading" else "saturated" if saturated else None
        return Readiness(reason is None, saturated, reason, loading, startup)

    def _startup_gate(self) -> tuple[Startup, int]:
        """Where the startup gate stands, and how many initial tuples still load (0 once it passed)."""
        if self._startup != "loading":
            return self._startup, 0
        with self._startup_lock:
            if self._startup != "loading":
                return self._startup, 0
            loading = self.registry.initial_loading()
            if not loading:
                self._startup = "settled"
                log.info("startup: every tuple of the initial config is warm or failed")
                return self._startup, 0
            if time.monotonic() < self._grace_ends:
                return self._startup, len(loading)
            self._startup = "graceExpired"
            named = ", ".join(f"{tenant}/{sha256[:SHORT_HASH]}" for tenant, sha256 in loading[:_NAMED])
            more = f" and {len(loading) - _NAMED} more" if len(loading) > _NAMED else ""
            log.warning("startup: %d tuple(s) of the initial config still loading after settings.startupGraceSeconds "
                        "(%g s), ready anyway (see /readyz): %s%s", len(loading),
                        self.config.settings.startup_grace_seconds, named, more)
            return self._startup, 0

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

    def tuple_metrics(self) -> tuple[list[TupleStatus], ReloadStatus, Mapping[str, int], Mapping[str, int]]:
        """What the metrics read at scrape time beside the pools."""
        return (self.registry.statuses(), self.reloads, dict(self.unauthorized),
                dict(self.registry.token_files_refused))

    def tick(self) -> None:
        """Periodic upkeep (see `TupleRegistry.tick`); moves the startup gate on even with no probe asking."""
        self.registry.tick()
        if not self.tuples_gate_readiness:
            self._startup_gate()

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve calls on this loop: pools reset on it, worker calls complete on it."""
        self.lanes.serve_on(loop)
        self.registry.serve_on(loop)

    def close(self) -> None:
        self.lanes.close()
        self._refiller.stop()
        self._ticker.stop()
        self.registry.drain()

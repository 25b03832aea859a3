"""One autoscaling tick of a RuntimeFleet: scrape its Ready pods by IP, run the two-level decision, apply.

The decision (`warmpool_operator.fleet.decide`) is pure; this is its I/O edge: `/stats` of each
Ready pod (`/metrics` of a runtime without it), and the seam (`Controller`) that writes warm counts
into the fleet's ConfigMap (only when they change) and replicas into its Deployment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from warmpool_operator.fleet.decide import FleetDecision, FleetState, decide
from warmpool_operator.fleet.observations import FleetObservations, PodScrape, TupleKey
from warmpool_operator.runtimefleet.scaling import pod_scrape, pod_scrape_from_stats
from warmpool_operator.runtimefleet.spec import RuntimeFleet
from warmpool_operator.scaling.exposition import ExpositionError
from warmpool_operator.scraper import ScrapeFailed, read_pod


class FleetScalingSeam(Protocol):
    async def fleet_targets(self, namespace: str, name: str) -> list[tuple[str, str, int]]: ...

    def fleet_tuples(self, namespace: str, name: str) -> frozenset[TupleKey]: ...

    async def fleet_replicas(self, namespace: str, name: str) -> int | None: ...

    async def apply_fleet_decision(
        self, namespace: str, name: str, *, pods: int, warm: Mapping[TupleKey, int], miss_ratio: float | None
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class FleetTick:
    decision: FleetDecision
    before: int
    scaled: bool
    failures: int


class FleetAutoscaler:
    """Per-fleet decision state, one scraping session for all fleets."""

    def __init__(self, seam: FleetScalingSeam, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seam = seam
        self.clock = clock
        self._states: dict[str, FleetState] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def forget(self, uid: str) -> None:
        self._states.pop(uid, None)

    async def tick(self, fleet: RuntimeFleet) -> FleetTick | None:
        """None before the fleet's Deployment exists."""
        ns, name = fleet.meta.namespace, fleet.meta.name
        current = await self.seam.fleet_replicas(ns, name)
        if current is None:
            return None
        spec = fleet.spec.sizing()
        tuples = self.seam.fleet_tuples(ns, name)
        targets = await self.seam.fleet_targets(ns, name)
        timeout = max(0.5, min(5.0, spec.tick_seconds * 0.8))
        scrapes = await asyncio.gather(*(self._scrape(pod, ip, port, tuples, timeout) for pod, ip, port in targets))
        usable: Sequence[PodScrape] = [s for s in scrapes if s is not None]
        state = self._states.get(fleet.meta.uid, FleetState())
        decision, self._states[fleet.meta.uid] = decide(
            spec, state, FleetObservations(tuples=tuples, pods=usable, pods_asked=current), self.clock())
        miss = decision.misses / decision.arrivals if decision.arrivals > 0 else None
        scaled = await self.seam.apply_fleet_decision(ns, name, pods=decision.pods, warm=decision.warm,
                                                      miss_ratio=miss)
        return FleetTick(decision=decision, before=current, scaled=scaled, failures=len(scrapes) - len(usable))

    async def _scrape(
        self, pod: str, ip: str, port: int, tuples: frozenset[TupleKey], timeout: float
    ) -> PodScrape | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=False)
        return await scrape_fleet_pod(self._session, pod, ip, port, tuples, timeout=timeout)


async def scrape_fleet_pod(
    session: aiohttp.ClientSession, pod: str, ip: str, port: int, tuples: frozenset[TupleKey], *, timeout: float
) -> PodScrape | None:
    """The wanted tuples' counters on one pod, from `/stats` or (a runtime without it) `/metrics`; None when
    the pod gave nothing usable."""
    try:
        reading = await read_pod(session, ip, port, timeout=timeout)
        if isinstance(reading, str):
            return pod_scrape(pod, reading, tuples)
        return pod_scrape_from_stats(pod, reading, tuples)
    except (ScrapeFailed, ExpositionError):
        return None

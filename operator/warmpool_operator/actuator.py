"""One autoscaling tick of one WarmPool: scrape its Ready pods by IP, decide, apply, measure.

The I/O edge around the pure Autoscaler: pod targets and replica writes go through the
controller's seam (serialised with reconciliation), scrapes through `scraper.py`, and the
decision is exported into the operator's metrics. kopf stays in `handlers.py`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from prometheus_client import Counter, Gauge

from warmpool_operator.metrics import OperatorMetrics
from warmpool_operator.scalers import (
    STATUS_REFRESH_SECONDS,
    Published,
    Scalers,
    Series,
    direction,
    scale_notice,
    scrape_timeout,
    should_publish,
)
from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.decider import Decision
from warmpool_operator.scraper import ScrapeTarget, scrape_pods
from warmpool_operator.spec import PoolMeta, WarmPool
from warmpool_operator.status import Notice


class ScalingSeam(Protocol):
    """What the actuator needs from the operator (`warmpool_operator.controller.Controller`)."""

    @property
    def metrics(self) -> OperatorMetrics: ...

    async def ready_pod_targets(self, namespace: str, name: str) -> list[tuple[str, str, int]]: ...

    async def deployment_replicas(self, namespace: str, name: str) -> int | None: ...

    async def apply_scaling(
        self, namespace: str, name: str, *, desired_replicas: int, miss_ratio: float | None, reason: str | None = None
    ) -> bool: ...

    async def release_scaling(self, namespace: str, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What one tick decided and did."""

    decision: Decision
    before: int
    """The Deployment's replicas when the tick started."""
    scaled: bool
    """The Deployment's replicas were changed to `decision.desired_replicas`."""
    notice: Notice | None
    """The Event to post (only when `scaled`)."""
    failures: tuple[Scrape, ...]
    """Scrapes of Ready pods that gave no usable metrics."""


class Actuator:
    """Runs ticks for every autoscaled WarmPool; one scraping session and one Scalers for all."""

    def __init__(
        self,
        seam: ScalingSeam,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = STATUS_REFRESH_SECONDS,
    ) -> None:
        self.seam = seam
        self.clock = clock
        self.scalers = Scalers()
        self._refresh_seconds = refresh_seconds
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def tick(self, pool: WarmPool) -> TickOutcome | None:
        """Scrape, observe, decide and apply; None while the pool has no Deployment to scale yet."""
        meta, spec = pool.meta, pool.spec
        ns, name = meta.namespace, meta.name
        current = await self.seam.deployment_replicas(ns, name)
        if current is None:
            return None
        series = Series(spec.tenant, spec.module.short_hash)
        scaler = self.scalers.get(meta.uid, series, spec.autoscaling)
        targets = [ScrapeTarget(pod, ip, port) for pod, ip, port in await self.seam.ready_pod_targets(ns, name)]
        scrapes = await scrape_pods(
            self._open(),
            targets,
            timeout=scrape_timeout(spec.autoscaling.tick_seconds),
            tenant=series.tenant,
            module=series.module,
        )
        now = self.clock()
        scaler.observe(scrapes, now)
        decision = scaler.decide(current, now)
        failures = tuple(s for s in scrapes if s.metrics is None)

        desired = decision.desired_replicas
        published = Published(now, desired, measured=decision.load is not None)
        publish = should_publish(
            self.scalers.published(meta.uid),
            published,
            scaled=desired != current,
            refresh_seconds=self._refresh_seconds,
        )
        scaled = False
        if publish or desired != current:
            scaled = await self.seam.apply_scaling(
                ns, name, desired_replicas=desired, miss_ratio=decision.observed_miss_ratio, reason=decision.reason
            )
            self.scalers.mark_published(meta.uid, published)
        self._measure(meta, decision, current, scaled, failures)
        return TickOutcome(
            decision=decision,
            before=current,
            scaled=scaled,
            notice=scale_notice(current, desired, decision.reason) if scaled else None,
            failures=failures,
        )

    def _measure(
        self, meta: PoolMeta, decision: Decision, before: int, scaled: bool, failures: tuple[Scrape, ...]
    ) -> None:
        metrics = self.seam.metrics
        pool = (meta.namespace, meta.name)
        metrics.desired_replicas.labels(*pool).set(decision.desired_replicas)
        metrics.decisions.labels(*pool, decision.signal).inc()
        if decision.observed_miss_ratio is None:
            _remove(metrics.observed_miss_ratio, pool)
        else:
            metrics.observed_miss_ratio.labels(*pool).set(decision.observed_miss_ratio)
        way = direction(before, decision.desired_replicas)
        for each in ("up", "down"):
            metrics.scale_events.labels(*pool, each)  # counted from 0, so increase() sees the first event
        if scaled and way is not None:
            metrics.scale_events.labels(*pool, way).inc()
        if failures:
            metrics.scrape_failures.labels(*pool).inc(len(failures))

    async def stop(self, meta: PoolMeta, *, turned_off: bool = False, deleted: bool = False) -> None:
        """The pool's ticks end: forget its Autoscaler and gauges (its counters too once it is
        deleted); when autoscaling was turned off, say so in its status."""
        self.scalers.drop(meta.uid)
        metrics = self.seam.metrics
        pool = (meta.namespace, meta.name)
        series: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
            (metrics.desired_replicas, pool),
            (metrics.observed_miss_ratio, pool),
        ]
        if deleted:
            series += [(metrics.scrape_failures, pool)]
            series += [(metrics.scale_events, (*pool, way)) for way in ("up", "down")]
        for metric, labels in series:
            _remove(metric, labels)
        if turned_off:
            await self.seam.release_scaling(meta.namespace, meta.name)


def _remove(metric: Gauge | Counter, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set for this pool
        metric.remove(*labels)

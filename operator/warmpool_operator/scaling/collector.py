"""Per-pod counters and gauges from one tick of scrapes → one fleet-wide TickSample (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from warmpool_operator.scaling.exposition import ExpositionError, PodMetrics, pool_metrics
from warmpool_operator.scaling.tuple_stats import PodStats, pool_metrics_from_stats


@dataclass(frozen=True, slots=True)
class Scrape:
    """The result of scraping one Ready pod at one tick."""

    pod: str
    """Stable identity of the pod (its name or IP)."""
    metrics: PodMetrics | None
    """None when the scrape failed or carried no usable pool metrics."""
    error: str | None = None
    """Why `metrics` is None, for the decision's reason."""


def scrape_from_text(pod: str, text: str, *, tenant: str | None = None, module: str | None = None) -> Scrape:
    """One pod's scrape from the exposition it served; unusable text becomes a Scrape without metrics."""
    try:
        metrics = pool_metrics(text, tenant=tenant, module=module)
    except ExpositionError as exc:
        return Scrape(pod, None, str(exc))
    if metrics is None:
        return Scrape(pod, None, "no pool metrics for the tuple")
    return Scrape(pod, metrics)


def scrape_from_stats(pod: str, stats: PodStats, *, tenant: str | None = None, module: str | None = None) -> Scrape:
    """One pod's scrape from the stats document it served (already checked)."""
    metrics = pool_metrics_from_stats(stats, tenant=tenant, module=module)
    if metrics is None:
        return Scrape(pod, None, "no pool metrics for the tuple")
    return Scrape(pod, metrics)


@dataclass(frozen=True, slots=True)
class TickSample:
    """What the fleet looked like over one tick, extrapolated over pods that did not answer.

    Rates are None when no pod could give one (first sight of every pod, or every scrape
    failed); gauges are None when no pod answered. None means "no data", never zero.
    """

    t: float
    """When the scrapes were taken."""
    interval: float
    """Seconds since the previous tick: the span the rates cover."""
    pods: int
    """Ready pods listed for scraping."""
    reporting: int
    """Pods whose scrape gave usable metrics."""
    arrival_rate: float | None
    """Invocations per second across the fleet (hits + misses)."""
    miss_rate: float | None
    """Misses per second across the fleet."""
    in_flight: float | None
    """Invocations running now across the fleet."""
    idle_warm: float | None
    """Idle warm instances now across the fleet."""
    capacity_per_pod: float | None
    """Median configured warm instances per reporting pod."""


@dataclass(frozen=True, slots=True)
class _PodCounter:
    t: float
    hits: float
    misses: float


@dataclass(frozen=True, slots=True)
class CollectorState:
    """Last counter values per pod, and the time of the last tick."""

    last_tick: float | None = None
    counters: Mapping[str, _PodCounter] = field(default_factory=dict)
    """The last counters each pod answered with."""
    listed: Mapping[str, float] = field(default_factory=dict)
    """When each pod was last listed Ready (answering or not)."""


FORGET_AFTER_SECONDS = 600.0
"""A pod not listed for this long is forgotten; if it comes back, it is treated as new."""


def _delta(now: float, before: float) -> float:
    # A counter that went down was reset by a process restart: it counted from zero since.
    return now - before if now >= before else now


def collect(state: CollectorState, scrapes: Sequence[Scrape], now: float) -> tuple[CollectorState, TickSample]:
    """Turn one tick of scrapes into a fleet sample and the next collector state.

    A pod seen for the first time after the first tick is a new pod: the Service routes nothing to
    a pod before it is Ready, so its counters are counts since the previous tick. At the very first
    tick (an operator restart) counters only become baselines. Pods that fail are extrapolated
    from those that answered, as random routing gives every Ready pod the same share.
    """
    interval = now - state.last_tick if state.last_tick is not None else 0.0
    horizon = now - FORGET_AFTER_SECONDS
    # Pods that drop out of the Ready list for a while keep their counters: when they come back,
    # their counters continue rather than count from zero.
    listed = {pod: t for pod, t in state.listed.items() if t > horizon}
    counters = {pod: c for pod, c in state.counters.items() if pod in listed}
    arrivals = misses = 0.0
    rated = 0
    gauges: list[PodMetrics] = []
    for scrape in scrapes:
        new = scrape.pod not in listed
        listed[scrape.pod] = now
        metrics = scrape.metrics
        if metrics is None:
            continue
        gauges.append(metrics)
        before = counters.get(scrape.pod)
        counters[scrape.pod] = _PodCounter(now, metrics.hits, metrics.misses)
        if before is None and new and state.last_tick is not None:
            before = _PodCounter(state.last_tick, 0.0, 0.0)
        if before is None or now <= before.t:
            continue
        span = now - before.t
        pod_misses = _delta(metrics.misses, before.misses)
        # Spread a delta that covers several ticks (after a failed scrape) over its whole span.
        share = interval / span
        arrivals += (_delta(metrics.hits, before.hits) + pod_misses) * share
        misses += pod_misses * share
        rated += 1
    pods = len(scrapes)
    arrival_rate = miss_rate = None
    if rated and interval > 0:
        # Pods that gave no rate this tick are assumed to have had the average share.
        scale = pods / rated
        arrival_rate = arrivals / interval * scale
        miss_rate = misses / interval * scale
    in_flight = idle = capacity = None
    if gauges:
        scale = pods / len(gauges)
        in_flight = sum(m.in_flight for m in gauges) * scale
        idle = sum(m.warm for m in gauges) * scale
        capacity = statistics.median(m.capacity for m in gauges)
    sample = TickSample(
        t=now,
        interval=interval,
        pods=pods,
        reporting=len(gauges),
        arrival_rate=arrival_rate,
        miss_rate=miss_rate,
        in_flight=in_flight,
        idle_warm=idle,
        capacity_per_pod=capacity,
    )
    next_state = CollectorState(last_tick=now, counters=counters, listed=listed)
    return next_state, sample

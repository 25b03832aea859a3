"""Per-pod counters and gauges from one tick of scrapes → one fleet-wide TickSample (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from warmpool_operator.scaling.exposition import PodMetrics


@dataclass(frozen=True, slots=True)
class Scrape:
    """The result of scraping one Ready pod at one tick."""

    pod: str
    """Stable identity of the pod (its name or IP)."""
    metrics: PodMetrics | None
    """None when the scrape failed or carried no usable pool metrics."""
    error: str | None = None
    """Why `metrics` is None, for the decision's reason."""


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
    seen: frozenset[str] = frozenset()
    """Pods listed at the previous tick (answering or not)."""


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
    counters: dict[str, _PodCounter] = {}
    arrivals = misses = 0.0
    rated = 0
    gauges: list[PodMetrics] = []
    for scrape in scrapes:
        metrics = scrape.metrics
        if metrics is None:
            if scrape.pod in state.counters:
                counters[scrape.pod] = state.counters[scrape.pod]
            continue
        gauges.append(metrics)
        counters[scrape.pod] = _PodCounter(now, metrics.hits, metrics.misses)
        before = state.counters.get(scrape.pod)
        if before is None and state.last_tick is not None and scrape.pod not in state.seen:
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
    next_state = CollectorState(
        last_tick=now, counters=counters, seen=frozenset(s.pod for s in scrapes)
    )
    return next_state, sample

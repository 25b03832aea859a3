"""Baseline policies the benchmark compares against: Knative's KPA, Kubernetes' HPA, fixed fleets.

They read the same scrapes through the same collector and windows as the warmpool policy.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.decider import Decision
from warmpool_operator.scaling.history import SampleHistory
from warmpool_operator.scaling.window import aggregate


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


@dataclass(frozen=True, slots=True)
class KpaSettings:
    """Knative Pod Autoscaler defaults, with concurrency = in-flight invocations per pod."""

    target_utilisation: float = 0.7
    """Target concurrency per pod as a share of its warm instances."""
    stable_window_seconds: float = 60.0
    panic_window_seconds: float = 6.0
    panic_threshold: float = 2.0
    """Panic when the panic window wants this many times the Ready pods."""
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 1000


class KpaPolicy:
    """Knative's stable/panic decider (panic mode never scales down; it ends a stable window
    after the last panicking decision). The runtime exports instantaneous in-flight gauges, so
    the windows average tick samples rather than Knative's per-second averages."""

    name = "kpa"
    wants_scrapes = True

    def __init__(self, settings: KpaSettings | None = None) -> None:
        self.settings = settings or KpaSettings()
        self._history = SampleHistory(self.settings.stable_window_seconds + 1.0)
        self._panic_since: float | None = None
        self._max_panic_pods = 0

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        self._history.observe(scrapes, now)

    def decide(self, current_replicas: int, now: float) -> Decision:
        s = self.settings
        samples = self._history.samples
        stable = aggregate(samples, now, s.stable_window_seconds)
        panic = aggregate(samples, now, s.panic_window_seconds)
        latest = self._history.latest
        if stable.in_flight is None or panic.in_flight is None or latest is None or latest.capacity_per_pod is None:
            desired = _clamp(current_replicas, s.min_replicas, s.max_replicas)
            return Decision(desired, "no data", None, desired != current_replicas)
        target = s.target_utilisation * latest.capacity_per_pod
        ready = max(1.0, float(latest.pods))
        max_up = math.ceil(s.max_scale_up_rate * ready)
        max_down = math.floor(ready / s.max_scale_down_rate)
        dspc = math.ceil(stable.in_flight / target)
        dppc = math.ceil(panic.in_flight / target)
        stable_pods = _clamp(dspc, max_down, max_up)
        panic_pods = _clamp(dppc, max_down, max_up)
        over = dppc / ready >= s.panic_threshold
        if over:
            self._panic_since = now
        elif self._panic_since is not None and now > self._panic_since + s.stable_window_seconds:
            self._panic_since = None
            self._max_panic_pods = 0
        desired = stable_pods
        mode = "stable"
        if self._panic_since is not None:
            mode = "panic"
            self._max_panic_pods = max(self._max_panic_pods, stable_pods, panic_pods)
            desired = self._max_panic_pods
        desired = _clamp(desired, s.min_replicas, s.max_replicas)
        reason = (
            f"{mode}: concurrency stable {stable.in_flight:.1f}, panic {panic.in_flight:.1f}, "
            f"target {target:.1f}/pod"
        )
        return Decision(desired, reason, stable.miss_ratio, desired != current_replicas, stable.in_flight)


@dataclass(frozen=True, slots=True)
class HpaSettings:
    """HorizontalPodAutoscaler v2 on utilisation (in-flight / warm instances) with default behaviour."""

    target_utilisation: float = 0.7
    sync_seconds: float = 15.0
    tolerance: float = 0.1
    scale_down_stabilisation_seconds: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    min_replicas: int = 1
    max_replicas: int = 1000


class HpaPolicy:
    """The HPA replica calculation: ceil(ready × utilisation / target) outside the tolerance,
    pods not yet Ready counted at zero use when scaling up, the highest recommendation of the
    stabilisation window when scaling down, and scale-up limited to max(+100 %, +4 pods) per sync.
    Utilisation is the mean of the in-flight samples since the previous sync."""

    name = "hpa"
    wants_scrapes = True

    def __init__(self, settings: HpaSettings | None = None) -> None:
        self.settings = settings or HpaSettings()
        self._history = SampleHistory(self.settings.sync_seconds + 1.0)
        self._last_sync: float | None = None
        self._recommendations: deque[tuple[float, int]] = deque()

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        self._history.observe(scrapes, now)

    def decide(self, current_replicas: int, now: float) -> Decision:
        s = self.settings
        if self._last_sync is not None and now < self._last_sync + s.sync_seconds:
            return Decision(current_replicas, "between syncs", None, False)
        self._last_sync = now
        window = aggregate(self._history.samples, now, s.sync_seconds)
        latest = self._history.latest
        if window.in_flight is None or latest is None or not latest.capacity_per_pod or latest.pods == 0:
            desired = _clamp(current_replicas, s.min_replicas, s.max_replicas)
            return Decision(desired, "no data", None, desired != current_replicas)
        ready = latest.pods
        capacity = latest.capacity_per_pod
        utilisation = window.in_flight / (ready * capacity)
        ratio = utilisation / s.target_utilisation
        unready = max(0, current_replicas - ready)
        if ratio > 1.0 and unready:
            ratio = window.in_flight / ((ready + unready) * capacity) / s.target_utilisation
        recommendation = current_replicas if abs(ratio - 1.0) <= s.tolerance else math.ceil(ratio * ready)
        self._recommendations.append((now, recommendation))
        while self._recommendations[0][0] <= now - s.scale_down_stabilisation_seconds:
            self._recommendations.popleft()
        desired = recommendation
        if recommendation < current_replicas:
            desired = min(current_replicas, max(r for _, r in self._recommendations))
        up_limit = max(
            math.ceil(current_replicas * (1 + s.scale_up_percent / 100.0)), current_replicas + s.scale_up_pods
        )
        desired = _clamp(min(desired, up_limit), s.min_replicas, s.max_replicas)
        reason = f"utilisation {utilisation:.2f} vs target {s.target_utilisation:.2f}, recommendation {recommendation}"
        return Decision(desired, reason, window.miss_ratio, desired != current_replicas, window.in_flight)


class StaticPolicy:
    """A fixed fleet."""

    name = "static"
    wants_scrapes = False

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        _ = scrapes, now

    def decide(self, current_replicas: int, now: float) -> Decision:
        return Decision(self.replicas, f"fixed at {self.replicas}", None, self.replicas != current_replicas)


class SchedulePolicy:
    """A fleet that follows a known replica timeline (used for the clairvoyant reference)."""

    name = "clairvoyant"
    wants_scrapes = False

    def __init__(self, timeline: Sequence[tuple[float, int]]) -> None:
        self.timeline = sorted(timeline)

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        _ = scrapes, now

    def decide(self, current_replicas: int, now: float) -> Decision:
        desired = current_replicas
        for t, replicas in self.timeline:
            if t > now:
                break
            desired = replicas
        return Decision(desired, "scheduled", None, desired != current_replicas)

"""Event-driven replay of a trace against a fleet of runtime pods driven by a Policy.

The fleet model: a Ready pod holds `w` warm instances; a pod asked for at t > 0 is Ready at
t + startup (the fleet asked for at t = 0 is Ready at once); a pod taken away leaves at once,
pods not yet Ready first, then the newest. Each invocation goes to a uniformly random Ready pod
and is a hit when that pod has an idle warm instance (held for the invocation's duration), else a
miss served cold; with no Ready pod it is a miss. Every tick the policy sees each Ready pod's
/metrics exposition, rendered from the pod's counters and parsed back by the operator's parser.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from warmpool_lab.pod_exposition import render_pool_metrics
from warmpool_lab.policy import Policy
from warmpool_lab.trace import Trace
from warmpool_operator.scaling.collector import Scrape, scrape_from_text
from warmpool_operator.scaling.exposition import PodMetrics

TENANT = "sim"
MODULE = "5e1f00000000"


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The simulated fleet."""

    warm_per_pod: int = 16
    """Warm instances of the tuple on each Ready pod."""
    startup_seconds: float = 5.0
    """From asking for a pod to it being Ready."""
    tick_seconds: float = 2.0
    """Scrape and decision period."""
    initial_replicas: int = 1
    """Pods Ready at t = 0 before the policy's first decision."""
    seed: int = 0
    """Seed of the random routing."""


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a replay measured."""

    policy: str
    trace: str
    invocations: int
    misses: int
    warm_instance_seconds: float
    """Ready pods × warm instances, integrated over the trace: the cost."""
    idle_instance_seconds: float
    """Warm instance-seconds not holding an invocation."""
    scale_events: int
    """Decisions that changed the replica count asked for."""
    timeline: tuple[tuple[float, int], ...]
    """(t, replicas asked from t on), one row per change."""
    ready_timeline: tuple[tuple[float, int], ...] = ()
    """(t, Ready pods from t on), one row per change."""
    miss_times: tuple[float, ...] = field(default=(), repr=False)
    """Arrival times of the misses (only when recorded)."""

    @property
    def miss_ratio(self) -> float:
        return self.misses / self.invocations if self.invocations else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "trace": self.trace,
            "invocations": self.invocations,
            "misses": self.misses,
            "miss_ratio": self.miss_ratio,
            "warm_instance_seconds": self.warm_instance_seconds,
            "idle_instance_seconds": self.idle_instance_seconds,
            "scale_events": self.scale_events,
        }


class _Pod:
    __slots__ = ("alive", "free", "held", "hits", "hold_end_sum", "in_flight", "misses", "name", "ready_at")

    def __init__(self, name: str, warm: int, ready_at: float) -> None:
        self.name = name
        self.free = warm
        self.held = 0
        self.hold_end_sum = 0.0
        self.in_flight = 0
        self.hits = 0
        self.misses = 0
        self.ready_at = ready_at
        self.alive = True


class _Fleet:
    """Pods, pending pods and the cost integrals; arrival handling stays in `simulate` for speed."""

    def __init__(self, config: FleetConfig, end: float) -> None:
        self.config = config
        self.end = end
        self.ready: list[_Pod] = []
        self.pending: deque[float] = deque()
        self.created = 0
        self.warm_seconds = 0.0
        self.busy_seconds = 0.0
        self.ready_timeline: list[tuple[float, int]] = []

    def _note_ready(self, t: float) -> None:
        if self.ready_timeline and self.ready_timeline[-1][0] == t:
            self.ready_timeline[-1] = (t, len(self.ready))
        else:
            self.ready_timeline.append((t, len(self.ready)))

    def make_ready(self, t: float) -> None:
        self.created += 1
        self.ready.append(_Pod(f"pod-{self.created}", self.config.warm_per_pod, t))
        self._note_ready(t)

    def resize(self, replicas: int, now: float) -> None:
        have = len(self.ready) + len(self.pending)
        if replicas > have:
            immediate = now <= 0.0 or self.config.startup_seconds <= 0.0
            for _ in range(replicas - have):
                if immediate:
                    self.make_ready(now)
                else:
                    self.pending.append(now + self.config.startup_seconds)
            return
        for _ in range(have - replicas):
            if self.pending:
                self.pending.pop()
                continue
            pod = self.ready.pop()
            pod.alive = False
            self.warm_seconds += self.config.warm_per_pod * (now - pod.ready_at)
            # Invocations on a pod that leaves stop holding warm instances now.
            self.busy_seconds -= pod.hold_end_sum - pod.held * now
            self._note_ready(now)

    def scrapes(self) -> list[Scrape]:
        out = []
        capacity = float(self.config.warm_per_pod)
        for pod in self.ready:
            text = render_pool_metrics(
                PodMetrics(float(pod.hits), float(pod.misses), float(pod.free), capacity, float(pod.in_flight)),
                tenant=TENANT,
                module=MODULE,
            )
            out.append(scrape_from_text(pod.name, text, tenant=TENANT, module=MODULE))
        return out

    def finish(self) -> None:
        for pod in self.ready:
            self.warm_seconds += self.config.warm_per_pod * (self.end - pod.ready_at)
            self.busy_seconds -= pod.hold_end_sum - pod.held * self.end


def simulate(trace: Trace, policy: Policy, config: FleetConfig | None = None, *, record: bool = False) -> SimResult:
    """Replay `trace` against a fleet driven by `policy`."""
    config = config or FleetConfig()
    end = trace.end
    fleet = _Fleet(config, end)
    arrivals: list[float] = trace.arrivals.tolist()
    durations: list[float] = trace.durations.tolist()
    routing: list[float] = np.random.default_rng(config.seed).random(len(arrivals)).tolist()
    releases: list[tuple[float, int, _Pod, bool]] = []
    heappush, heappop = heapq.heappush, heapq.heappop
    seq = 0
    misses = 0
    miss_times: list[float] = []
    asked = config.initial_replicas
    fleet.resize(asked, 0.0)
    timeline: list[tuple[float, int]] = [(0.0, asked)]
    scale_events = 0
    tick = config.tick_seconds
    ticks = math.ceil(end / tick)
    next_tick_index = 0
    next_tick = 0.0

    def release_until(t: float) -> None:
        while releases and releases[0][0] <= t:
            release_end, _, pod, hit = heappop(releases)
            pod.in_flight -= 1
            if hit:
                pod.held -= 1
                pod.free += 1
                pod.hold_end_sum -= min(release_end, end)

    def advance(t: float) -> None:
        # Handle ticks and pods becoming Ready up to and including t, in time order (a pod Ready
        # at a tick's time is Ready for that scrape).
        nonlocal next_tick_index, next_tick, asked, scale_events
        pending = fleet.pending
        while True:
            ready_at = pending[0] if pending else math.inf
            if next_tick_index < ticks and next_tick <= t and next_tick < ready_at:
                now = next_tick
                release_until(now)
                if policy.wants_scrapes:
                    policy.observe(fleet.scrapes(), now)
                desired = policy.decide(asked, now).desired_replicas
                if desired != asked:
                    # Sizing the fleet at t = 0 sets up the pool rather than scaling it.
                    if now > 0.0:
                        scale_events += 1
                        timeline.append((now, desired))
                    else:
                        timeline[-1] = (now, desired)
                    asked = desired
                    fleet.resize(desired, now)
                next_tick_index += 1
                next_tick = next_tick_index * tick
            elif ready_at <= t:
                pending.popleft()
                fleet.make_ready(ready_at)
            else:
                return

    ready = fleet.ready
    for i, t in enumerate(arrivals):
        if t >= next_tick or (fleet.pending and fleet.pending[0] <= t):
            advance(t)
        if releases and releases[0][0] <= t:
            release_until(t)
        count = len(ready)
        if count == 0:
            misses += 1
            if record:
                miss_times.append(t)
            continue
        pod = ready[int(routing[i] * count)]
        finish = t + durations[i]
        seq += 1
        pod.in_flight += 1
        if pod.free:
            pod.free -= 1
            pod.held += 1
            pod.hits += 1
            clipped = finish if finish < end else end
            pod.hold_end_sum += clipped
            fleet.busy_seconds += clipped - t
            heappush(releases, (finish, seq, pod, True))
        else:
            pod.misses += 1
            misses += 1
            if record:
                miss_times.append(t)
            heappush(releases, (finish, seq, pod, False))
    advance(math.nextafter(end, 0.0))
    release_until(end)
    fleet.finish()
    return SimResult(
        policy=policy.name,
        trace=trace.name,
        invocations=len(arrivals),
        misses=misses,
        warm_instance_seconds=fleet.warm_seconds,
        idle_instance_seconds=fleet.warm_seconds - fleet.busy_seconds,
        scale_events=scale_events,
        timeline=tuple(timeline),
        ready_timeline=tuple(fleet.ready_timeline),
        miss_times=tuple(miss_times),
    )

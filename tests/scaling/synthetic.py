"""A deterministic stand-in for a fleet's scrapes: per-pod counters that advance at a given rate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from warmpool_operator.scaling.autoscaler import Autoscaler
from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.decider import Decision
from warmpool_operator.scaling.exposition import PodMetrics
from warmpool_operator.scaling.spec import AutoscalingSpec

HOLDING = 0.6875
"""Mean seconds per invocation in these scenarios: 40/s → 27.5 Erlangs → 4 pods of 16 at 1 %."""


@dataclass(frozen=True)
class Load:
    """The traffic over the tick ending at t: arrivals per second and invocations in flight at t."""

    rate: float
    in_flight: float
    miss_share: float = 0.0
    failing_pods: int = 0
    """How many pods' scrapes fail this tick (the first ones by name)."""

    @classmethod
    def steady(cls, rate: float, *, failing_pods: int = 0) -> Load:
        """`rate` invocations per second holding 0.6875 s each, in steady state."""
        return cls(rate=rate, in_flight=rate * HOLDING, failing_pods=failing_pods)


@dataclass
class SyntheticFleet:
    """Ready pods whose counters split the fleet's arrivals evenly, as random routing does on average.

    Pods get fresh names when the fleet grows and the newest leave first, as a Deployment's do.
    """

    capacity: int = 16
    pods: list[str] = field(default_factory=list)
    created: int = 0
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)

    def resize(self, replicas: int) -> None:
        while len(self.pods) < replicas:
            self.created += 1
            self.pods.append(f"pod-{self.created}")
        del self.pods[replicas:]

    def scrapes(self, pods: int, load: Load | None, dt: float) -> list[Scrape]:
        self.resize(pods)
        out = []
        for index, name in enumerate(self.pods):
            hits, misses = self.counters.get(name, (0.0, 0.0))
            if load is not None:
                per_pod = load.rate * dt / pods
                hits += per_pod * (1 - load.miss_share)
                misses += per_pod * load.miss_share
                self.counters[name] = (hits, misses)
            if load is None or index < load.failing_pods:
                out.append(Scrape(name, None, "connection refused"))
                continue
            busy = load.in_flight / pods
            metrics = PodMetrics(hits, misses, max(0.0, self.capacity - busy), float(self.capacity), busy)
            out.append(Scrape(name, metrics))
        return out


def drive(
    spec: AutoscalingSpec,
    load: Callable[[float], Load | None],
    *,
    until: float,
    replicas: int,
    scrapes: Callable[[SyntheticFleet, int, Load | None, float, float], list[Scrape]] | None = None,
) -> dict[float, Decision]:
    """Tick from t = 0 to `until`: scrape the Ready pods (Ready as soon as asked for), decide, apply."""
    scaler = Autoscaler(spec)
    fleet = SyntheticFleet()
    decisions: dict[float, Decision] = {}
    tick = spec.tick_seconds
    steps = round(until / tick)
    for step in range(steps + 1):
        now = step * tick
        current = load(now) if step else Load(0.0, 0.0)
        if scrapes is not None:
            batch = scrapes(fleet, replicas, current, tick, now)
        else:
            batch = fleet.scrapes(replicas, current, tick if step else 0.0)
        scaler.observe(batch, now)
        decision = scaler.decide(replicas, now)
        decisions[now] = decision
        replicas = decision.desired_replicas
    return decisions


@dataclass(frozen=True)
class LaggedStep:
    """One tick of `drive_lagged`: the decision, the pods asked for after it and those Ready before it."""

    decision: Decision
    asked: int
    ready: int


def drive_lagged(
    spec: AutoscalingSpec,
    load: Callable[[float, int], Load | None],
    *,
    until: float,
    replicas: int,
    startup: float,
) -> dict[float, LaggedStep]:
    """Tick from t = 0 to `until` with pods Ready `startup` seconds after they are asked for (pods not
    Ready yet are cancelled first); `load(t, ready)` is the traffic of the tick ending at t on the
    pods Ready during it."""
    scaler = Autoscaler(spec)
    fleet = SyntheticFleet()
    pending: list[float] = []
    ready = asked = replicas
    steps: dict[float, LaggedStep] = {}
    tick = spec.tick_seconds
    for step in range(round(until / tick) + 1):
        now = step * tick
        served_by = ready
        while pending and pending[0] <= now:
            pending.pop(0)
            ready += 1
        current = load(now, served_by) if step else Load(0.0, 0.0)
        scaler.observe(fleet.scrapes(ready, current, tick if step else 0.0), now)
        decision = scaler.decide(asked, now)
        wanted = decision.desired_replicas
        if wanted > asked:
            pending.extend([now + startup] * (wanted - asked))
        for _ in range(asked - wanted):
            if pending:
                pending.pop()
            else:
                ready -= 1
        asked = wanted
        steps[now] = LaggedStep(decision, asked, ready)
    return steps

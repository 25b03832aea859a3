"""Running the policies by name on a trace: the shared path of `warmpool simulate` and the bench."""

from __future__ import annotations

from dataclasses import dataclass, field

from warmpool_operator.scaling.autoscaler import Autoscaler, Policy
from warmpool_operator.scaling.baselines import (
    HpaPolicy,
    HpaSettings,
    KpaPolicy,
    KpaSettings,
    SchedulePolicy,
    StaticPolicy,
)
from warmpool_operator.scaling.clairvoyant import WINDOW_SECONDS, clairvoyant_timeline
from warmpool_operator.scaling.simulator import FleetConfig, SimResult, simulate
from warmpool_operator.scaling.spec import AutoscalingSpec
from warmpool_operator.scaling.trace import Trace

POLICIES = ("warmpool", "kpa", "hpa", "static")
MAX_REPLICAS = 1000
"""The replica ceiling of every policy in simulation: high enough never to bind."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """One replay's knobs, shared by every policy so their results compare."""

    fleet: FleetConfig = field(default_factory=FleetConfig)
    target_miss_ratio: float = 0.01

    def autoscaling_spec(self) -> AutoscalingSpec:
        """The warmpool policy's spec: defaults, with the run's target and tick."""
        return AutoscalingSpec(
            enabled=True,
            min_replicas=1,
            max_replicas=MAX_REPLICAS,
            target_miss_ratio=self.target_miss_ratio,
            tick_seconds=self.fleet.tick_seconds,
            panic_window_seconds=max(6.0, self.fleet.tick_seconds),
            stable_window_seconds=max(60.0, self.fleet.tick_seconds),
        )


def make_policy(name: str, settings: RunSettings) -> Policy:
    """A fresh policy by name (static is not one: it is found by `cheapest_static`)."""
    if name == "warmpool":
        return Autoscaler(settings.autoscaling_spec())
    if name == "kpa":
        return KpaPolicy(KpaSettings(max_replicas=MAX_REPLICAS))
    if name == "hpa":
        return HpaPolicy(HpaSettings(max_replicas=MAX_REPLICAS))
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")


def cheapest_static(trace: Trace, settings: RunSettings, *, record: bool = False) -> SimResult:
    """The smallest constant fleet whose replay meets the miss target (doubling, then bisection).

    The same routing seed is used for every size, so the miss ratio falls with the fleet size.
    """
    results: dict[int, SimResult] = {}

    def run(replicas: int) -> SimResult:
        if replicas not in results:
            results[replicas] = simulate(trace, StaticPolicy(replicas), settings.fleet, record=record)
        return results[replicas]

    def meets(replicas: int) -> bool:
        return run(replicas).miss_ratio <= settings.target_miss_ratio

    low, high = 0, 1
    while not meets(high):
        if high >= MAX_REPLICAS:
            return run(high)
        low, high = high, min(high * 2, MAX_REPLICAS)
    # Invariant: `high` meets the target, `low` does not (or is 0).
    while high - low > 1:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle
    return run(high)


def run_clairvoyant(trace: Trace, settings: RunSettings, *, record: bool = False) -> SimResult:
    """Replay the clairvoyant fleet: its windows as a schedule, pods Ready with no start-up lag."""
    timeline = clairvoyant_timeline(
        trace, warm_per_pod=settings.fleet.warm_per_pod, target=settings.target_miss_ratio
    )
    fleet = FleetConfig(
        warm_per_pod=settings.fleet.warm_per_pod,
        startup_seconds=0.0,
        tick_seconds=WINDOW_SECONDS,
        initial_replicas=timeline[0][1] if timeline else 0,
        seed=settings.fleet.seed,
    )
    return simulate(trace, SchedulePolicy(timeline), fleet, record=record)


def run_policy(trace: Trace, name: str, settings: RunSettings, *, record: bool = False) -> SimResult:
    """Replay one policy by name ("static" searches for the cheapest fixed fleet)."""
    if name == "static":
        return cheapest_static(trace, settings, record=record)
    if name == "clairvoyant":
        return run_clairvoyant(trace, settings, record=record)
    return simulate(trace, make_policy(name, settings), settings.fleet, record=record)

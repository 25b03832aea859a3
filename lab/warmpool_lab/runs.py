"""Running the policies by name on a trace: the shared path of `warmpool simulate` and the bench."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from warmpool_lab.baselines import (
    HpaPolicy,
    HpaSettings,
    KpaPolicy,
    KpaSettings,
    SchedulePolicy,
    StaticPolicy,
)
from warmpool_lab.clairvoyant import WINDOW_SECONDS, clairvoyant_timeline
from warmpool_lab.policy import OursPolicy, Policy
from warmpool_lab.simulator import FleetConfig, SimResult, simulate
from warmpool_lab.trace import Trace
from warmpool_operator.scaling.autoscaler import Autoscaler
from warmpool_operator.scaling.spec import AutoscalingSpec

POLICIES = ("warmpool", "kpa", "hpa", "kpa-tuned", "hpa-tuned", "static")
TUNED_BASELINES = {"kpa-tuned": "kpa", "hpa-tuned": "hpa"}
"""Baselines replayed at the target utilisation found by `tune_utilisation`, by the baseline's name."""
MAX_REPLICAS = 1000
"""The replica ceiling of every policy in simulation: high enough never to bind."""
UTILISATION_STEPS = 100
"""The tuned baselines' target utilisation is searched among 1/100, 2/100, ..., 100/100."""


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
    """A fresh policy by name (static and the tuned baselines are not: they are found by search)."""
    if name == "warmpool":
        return OursPolicy(Autoscaler(settings.autoscaling_spec()))
    if name == "kpa":
        return KpaPolicy(KpaSettings(max_replicas=MAX_REPLICAS))
    if name == "hpa":
        return HpaPolicy(HpaSettings(max_replicas=MAX_REPLICAS))
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")


def baseline_at(name: str, target_utilisation: float) -> Policy:
    """The `kpa` or `hpa` baseline with its defaults except the target utilisation."""
    if name == "kpa":
        return KpaPolicy(KpaSettings(target_utilisation=target_utilisation, max_replicas=MAX_REPLICAS))
    if name == "hpa":
        return HpaPolicy(HpaSettings(target_utilisation=target_utilisation, max_replicas=MAX_REPLICAS))
    raise ValueError(f"no utilisation to tune in {name!r}; expected kpa or hpa")


def _last_meeting(meets: Callable[[int], bool], good: int, bad: int) -> int:
    """Bisect between `good` (meets) and `bad` (does not), either side of the other, to adjacent values;
    returns the one on the good side."""
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if meets(middle):
            good = middle
        else:
            bad = middle
    return good


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
    # `high` meets the target, `low` does not (or is 0).
    return run(_last_meeting(meets, high, low))


@dataclass(frozen=True, slots=True)
class TunedRun:
    """A baseline replayed at the highest target utilisation that met the miss target on the trace."""

    result: SimResult
    """The replay at `target_utilisation`, named after the tuned policy."""
    target_utilisation: float
    meets_target: bool
    """False when not even the lowest utilisation searched met the target: `result` is that replay."""
    replays: int
    """Replays the search took."""


def tune_utilisation(
    trace: Trace,
    make: Callable[[float], Policy],
    settings: RunSettings,
    *,
    name: str,
    record: bool = False,
) -> TunedRun:
    """The highest target utilisation k/100 at which `make(k/100)` meets the miss target on `trace`.

    Knowing the trace beforehand, this is tuning in hindsight. From 100 % the utilisation is halved
    until a replay meets the target (down to 1 %), then bisected between the highest that met it
    and the lowest that did not. Like the static search, this takes the miss ratio to rise with the
    utilisation; the same routing seed is used for every replay.
    """
    results: dict[int, SimResult] = {}

    def run(step: int) -> SimResult:
        if step not in results:
            results[step] = simulate(trace, make(step / UTILISATION_STEPS), settings.fleet, record=record)
        return results[step]

    def meets(step: int) -> bool:
        return run(step).miss_ratio <= settings.target_miss_ratio

    def found(step: int, met: bool) -> TunedRun:
        result = replace(run(step), policy=name)
        return TunedRun(result, step / UTILISATION_STEPS, met, len(results))

    bad, good = UTILISATION_STEPS, UTILISATION_STEPS
    while not meets(good):
        if good == 1:
            return found(1, False)
        bad, good = good, max(good // 2, 1)
    return found(_last_meeting(meets, good, bad), True)


def run_tuned(trace: Trace, name: str, settings: RunSettings, *, record: bool = False) -> TunedRun:
    """`kpa-tuned` or `hpa-tuned`: the baseline at its tuned target utilisation on this trace."""
    if name not in TUNED_BASELINES:
        raise ValueError(f"unknown tuned policy {name!r}; expected one of {', '.join(TUNED_BASELINES)}")
    base = TUNED_BASELINES[name]
    return tune_utilisation(trace, lambda u: baseline_at(base, u), settings, name=name, record=record)


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
    """Replay one policy by name ("static" and the tuned baselines are found by search)."""
    if name == "static":
        return cheapest_static(trace, settings, record=record)
    if name in TUNED_BASELINES:
        return run_tuned(trace, name, settings, record=record).result
    if name == "clairvoyant":
        return run_clairvoyant(trace, settings, record=record)
    return simulate(trace, make_policy(name, settings), settings.fleet, record=record)

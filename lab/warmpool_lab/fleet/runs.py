"""Running the fleet policies by name on a multi-tenant trace: the shared path of simulate and bench."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from warmpool_lab.fleet import clairvoyant
from warmpool_lab.fleet.dedicated import simulate_dedicated
from warmpool_lab.fleet.model import FleetModel, FleetResult
from warmpool_lab.fleet.policies import DecidePolicy, SchedulePolicy, spec_for
from warmpool_lab.fleet.simulator import simulate_fleet
from warmpool_lab.fleet.static import run_static
from warmpool_lab.fleet.trace import TenantTrace

POLICIES = ("fleet", "static", "dedicated", "shared-clairvoyant", "dedicated-clairvoyant")
RANDOM_POLICIES = frozenset({"fleet", "static", "dedicated"})
"""Policies whose figures depend on the routing seed (the references are replayed once)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """One run's model and target."""

    model: FleetModel = field(default_factory=FleetModel)
    target: float = 0.01


def run(trace: TenantTrace, policy: str, settings: Settings) -> FleetResult:
    """Replay one policy by name."""
    model, target = settings.model, settings.target
    if policy == "fleet":
        return simulate_fleet(trace, DecidePolicy(spec_for(model, target=target)), model)
    if policy == "static":
        return replace(run_static(trace, model, target=target), policy="static")
    if policy == "dedicated":
        return simulate_dedicated(trace, model, target=target)
    if policy == "shared-clairvoyant":
        schedule = clairvoyant.shared_schedule(trace, target=target, cap=model.cap, min_pods=model.min_pods)
        rows = [(w.start, w.pods, w.warm) for w in schedule]
        instant = replace(
            model, startup_seconds=0.0, resize_seconds=0.0, tick_seconds=clairvoyant.WINDOW_SECONDS
        )
        return simulate_fleet(trace, SchedulePolicy("shared-clairvoyant", rows), instant)
    if policy == "dedicated-clairvoyant":
        pods = clairvoyant.dedicated_pods(trace, target=target)
        return simulate_dedicated(trace, model, target=target, schedule=pods, window_seconds=clairvoyant.WINDOW_SECONDS)
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")

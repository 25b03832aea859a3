"""The baseline policies the benchmark compares against, fed the same scrapes as ours."""

from __future__ import annotations

import pytest

from tests.scaling.synthetic import SyntheticFleet
from warmpool_lab.baselines import HpaPolicy, KpaPolicy
from warmpool_operator.scaling.collector import Scrape

pytestmark = pytest.mark.unit


def fixed_in_flight(fleet: SyntheticFleet, pods: int, in_flight: float) -> list[Scrape]:
    from tests.scaling.synthetic import Load

    return fleet.scrapes(pods, Load(rate=in_flight, in_flight=in_flight), 2.0)


def run(policy: KpaPolicy | HpaPolicy, levels: dict[float, float], until: float, replicas: int) -> dict[float, int]:
    """Drive a baseline with the in-flight level given per tick; pods are Ready when asked."""
    fleet = SyntheticFleet()
    out = {}
    for step in range(int(until / 2) + 1):
        now = 2.0 * step
        level = levels[max(t for t in levels if t <= now)]
        policy.observe(fixed_in_flight(fleet, replicas, level), now)
        replicas = policy.decide(replicas, now).desired_replicas
        out[now] = replicas
    return out


def run_kpa(concurrency: dict[float, float], until: float, replicas: int) -> dict[float, int]:
    return run(KpaPolicy(), concurrency, until, replicas)


def test_kpa_targets_seventy_percent_of_the_warm_instances() -> None:
    # 33 in flight over pods of 16 at 70 % (11.2 each): ceil(2.95) = 3 pods.
    sizes = run_kpa({0.0: 33.0}, until=120.0, replicas=3)
    assert set(sizes.values()) == {3}


def test_kpa_panics_on_a_doubling_and_does_not_scale_down_while_panicking() -> None:
    # From 11 (1 pod) to 110 in flight: the 6 s window asks for ceil(110 / 11.2) = 10 pods, more
    # than 2x the Ready pod.
    sizes = run_kpa({0.0: 11.0, 100.0: 110.0, 130.0: 11.0}, until=260.0, replicas=1)
    assert sizes[98.0] == 1
    assert sizes[100.0] >= 4
    assert max(sizes.values()) == 10
    # Panic began at 100 s (the 6 s window averages 44 in flight: 4 pods wanted of 1 Ready) and was
    # not extended (at 102 s, 7 wanted of 4 Ready is under 2x). Panic mode never scales down, so
    # 10 pods stay although the load fell at 130 s, until a stable window after 100 s; then the
    # scale-down rate (2) halves the fleet per decision.
    assert all(sizes[t] == 10 for t in sizes if 104.0 <= t <= 160.0)
    assert sizes[162.0] == 5
    assert sizes[260.0] == 1


def run_hpa(levels: dict[float, float], until: float, replicas: int) -> dict[float, int]:
    return run(HpaPolicy(), levels, until, replicas)


def test_hpa_syncs_every_fifteen_seconds_and_tolerates_ten_percent() -> None:
    # 4 pods of 16 at 70 % want 44.8 in flight; 48 is 7 % over: within tolerance.
    sizes = run_hpa({0.0: 48.0}, until=120.0, replicas=4)
    assert set(sizes.values()) == {4}


def test_hpa_scale_up_is_limited_to_double_or_four_pods_per_sync() -> None:
    sizes = run_hpa({0.0: 11.2, 30.0: 400.0}, until=120.0, replicas=1)
    changes = sorted({(t, r) for t, r in sizes.items() if t >= 30.0 and r != sizes[t - 2.0]})
    previous = 1
    for _, replicas in changes:
        assert replicas <= max(previous * 2, previous + 4)
        previous = replicas
    assert len(changes) >= 2


def test_hpa_holds_scale_down_for_five_minutes() -> None:
    sizes = run_hpa({0.0: 112.0, 60.0: 11.2}, until=420.0, replicas=10)
    assert all(r == 10 for t, r in sizes.items() if t < 60.0 + 290.0)
    assert sizes[420.0] < 10

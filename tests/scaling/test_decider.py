"""The scaling decision, stepped through time: each case is a load over time and what must follow.

Loads are deterministic (per-pod counters advance at exactly the given rate), so every pod count
is worked out by hand from Erlang's formula with 16 warm instances per pod and a 1 % target:
one pod carries at most 8.875 Erlangs, and with 0.6875 s per invocation 40/s is 27.5 Erlangs → 4
pods, 10/s is 6.875 Erlangs → 1 pod, 200/s is 137.5 Erlangs → 16 pods.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import pytest

from tests.scaling.synthetic import HOLDING, Load, SyntheticFleet, drive
from warmpool_operator.scaling.autoscaler import Autoscaler
from warmpool_operator.scaling.collector import Scrape, scrape_from_text
from warmpool_operator.scaling.decider import DeciderState, Decision, Observations, decide
from warmpool_operator.scaling.spec import AutoscalingSpec

pytestmark = pytest.mark.unit

SPEC = AutoscalingSpec(enabled=True, min_replicas=1, max_replicas=100)


def step(before: Load | None, after: Load | None, at: float) -> Callable[[float], Load | None]:
    return lambda t: before if t < at else after


def desired(decisions: dict[float, Decision], t: float) -> int:
    return decisions[t].desired_replicas


def test_steady_load_holds_its_size_without_scale_events() -> None:
    decisions = drive(SPEC, lambda t: Load.steady(40.0), until=200.0, replicas=4)
    assert {d.desired_replicas for d in decisions.values()} == {4}
    assert not any(d.scale_event for d in decisions.values())
    assert decisions[100.0].load == pytest.approx(27.5)
    assert decisions[100.0].reason.startswith("keep 4")


def test_first_decision_without_data_holds_then_sizes_from_load() -> None:
    decisions = drive(SPEC, lambda t: Load.steady(40.0), until=10.0, replicas=1)
    assert desired(decisions, 0.0) == 1
    assert decisions[0.0].reason.startswith("hold 1")
    assert desired(decisions, 2.0) == 4
    assert decisions[2.0].scale_event


def test_burst_is_met_within_a_tick_and_rate_limited() -> None:
    decisions = drive(SPEC, step(Load.steady(10.0), Load.steady(200.0), 100.0), until=160.0, replicas=1)
    assert desired(decisions, 98.0) == 1
    # The tick ending at 100 s is the burst: it alone asks for 16, the climb from 10/s to 200/s
    # for more, and the scale-up rate (10x) caps the step at 10 pods.
    assert desired(decisions, 100.0) == 10
    assert "rate limit" in decisions[100.0].reason
    assert all(desired(decisions, t) == 16 for t in range(102, 161, 2))


def test_drop_waits_for_the_scale_down_delay_then_steps_down_at_the_rate_limit() -> None:
    decisions = drive(SPEC, step(Load.steady(200.0), Load.steady(10.0), 100.0), until=200.0, replicas=16)
    assert all(desired(decisions, t) == 16 for t in range(0, 127, 2))
    # The last decision that wanted 16 was at 98 s; 30 s later every decision in the window wants fewer.
    assert desired(decisions, 128.0) < 16
    sizes = [desired(decisions, t) for t in range(126, 201, 2)]
    for before, after in itertools.pairwise(sizes):
        assert after >= math.floor(before / SPEC.max_scale_down_rate)
    assert desired(decisions, 160.0) == 1


def test_without_a_delay_the_drop_is_followed_at_once() -> None:
    spec = dataclasses.replace(SPEC, scale_down_delay_seconds=0.0)
    decisions = drive(spec, step(Load.steady(200.0), Load.steady(10.0), 100.0), until=120.0, replicas=16)
    assert desired(decisions, 100.0) < 16
    assert desired(decisions, 110.0) == 1


def test_metric_loss_holds_the_fleet() -> None:
    load = step(Load.steady(40.0), None, 50.0)
    decisions = drive(SPEC, load, until=200.0, replicas=4)
    assert all(desired(decisions, t) == 4 for t in range(50, 201, 2))
    for t in range(56, 201, 2):
        assert decisions[float(t)].reason.startswith("hold 4: no usable metrics")
        assert decisions[float(t)].observed_miss_ratio is None
        assert not decisions[float(t)].scale_event


def test_partial_scrapes_are_extrapolated_not_read_as_less_load() -> None:
    load = step(Load.steady(40.0), Load.steady(40.0, failing_pods=2), 50.0)
    decisions = drive(SPEC, load, until=150.0, replicas=4)
    assert all(desired(decisions, t) == 4 for t in range(2, 151, 2))
    assert not any(d.reason.startswith("hold") for t, d in decisions.items() if t > 0)


def test_nan_in_the_exposition_holds_rather_than_scaling_to_the_minimum() -> None:
    nan_text = (
        'tensor_wasm_pool_draws_total{tenant="t",module="m",result="hit"} NaN\n'
        'tensor_wasm_pool_draws_total{tenant="t",module="m",result="miss"} NaN\n'
        'tensor_wasm_pool_in_flight{tenant="t",module="m"} NaN\n'
    )

    def scrapes(fleet: SyntheticFleet, pods: int, load: Load | None, dt: float, now: float) -> list[Scrape]:
        if now >= 50.0:
            fleet.resize(pods)
            return [scrape_from_text(name, nan_text, tenant="t") for name in fleet.pods]
        return fleet.scrapes(pods, load, dt if now else 0.0)

    decisions = drive(SPEC, lambda t: Load.steady(40.0), until=150.0, replicas=4, scrapes=scrapes)
    assert all(desired(decisions, t) == 4 for t in range(50, 151, 2))
    assert decisions[100.0].reason.startswith("hold 4")


def test_measured_zero_traffic_is_load_and_scales_to_the_minimum_after_the_delay() -> None:
    decisions = drive(SPEC, step(Load.steady(40.0), Load(0.0, 0.0), 100.0), until=200.0, replicas=4)
    assert desired(decisions, 126.0) == 4
    assert desired(decisions, 140.0) == 1
    # Nothing arrived in the last stable window: the miss ratio is unknown, not zero.
    assert decisions[200.0].observed_miss_ratio is None
    assert decisions[120.0].observed_miss_ratio == 0.0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(10.0, 3), (200.0, 5)],  # 1 and 16 pods wanted, bounded to [3, 5]
)
def test_bounds(rate: float, expected: int) -> None:
    spec = dataclasses.replace(SPEC, min_replicas=3, max_replicas=5)
    decisions = drive(spec, lambda t: Load.steady(rate), until=100.0, replicas=4)
    assert desired(decisions, 100.0) == expected
    assert "bounds [3, 5]" in decisions[100.0].reason


def test_hold_on_no_data_still_respects_the_minimum() -> None:
    spec = dataclasses.replace(SPEC, min_replicas=2)
    decisions = drive(spec, lambda t: None, until=10.0, replicas=1)
    assert desired(decisions, 0.0) == 2
    assert decisions[0.0].reason.startswith("hold 1")


def test_scale_up_and_down_rate_limits() -> None:
    spec = dataclasses.replace(SPEC, max_scale_up_rate=2.0, max_scale_down_rate=4.0, scale_down_delay_seconds=0.0)
    up = drive(spec, lambda t: Load.steady(200.0), until=20.0, replicas=2)
    assert [desired(up, t) for t in (2.0, 4.0, 6.0, 8.0)] == [4, 8, 16, 16]
    down = drive(spec, step(Load.steady(200.0), Load.steady(10.0), 100.0), until=130.0, replicas=16)
    sizes = [desired(down, t) for t in range(98, 131, 2)]
    assert sizes[0] == 16
    assert sizes[-1] == 1
    for before, after in itertools.pairwise(sizes):
        assert after >= math.floor(before / 4.0)


def bursts(t: float) -> Load:
    """0.5/s, with 40/s for the 4 s after 20 s, 80 s, 140 s, ...: a timer firing every minute."""
    in_burst = t > 20.0 and (t - 20.0) % 60.0 <= 4.0 and (t - 20.0) % 60.0 != 0.0
    return Load.steady(40.0 if in_burst else 0.5)


def test_periodic_bursts_are_prewarmed_once_the_period_is_seen() -> None:
    decisions = drive(SPEC, bursts, until=260.0, replicas=1)
    # The first burst is met late and its pods are held for the 30 s scale-down delay; nothing
    # is known ahead of the second burst, so no pods are asked for before it.
    assert desired(decisions, 22.0) > 1
    assert all(desired(decisions, t) == 1 for t in range(56, 81, 2))
    # Onsets at 20 s and 80 s predict 140 s. Pods are asked a start-up (learned: Ready at the
    # next tick, 2 s) plus a tick of margin (the period is still tentative) ahead, sized for the
    # bursts' peak: 40/s × 0.6875 s = 27.5 Erlangs → 4 pods.
    assert desired(decisions, 134.0) == 1
    assert desired(decisions, 136.0) == 4
    assert "prewarming for the surge expected at t=140" in decisions[136.0].reason
    assert all(desired(decisions, t) == 4 for t in range(136, 145, 2))
    # The burst at 140 s confirms the period: its pods leave as the panic window empties (146 s:
    # two burst ticks left in it → 2 pods, 148 s → 1) instead of waiting out the 30 s delay.
    assert [desired(decisions, t) for t in (146.0, 148.0)] == [2, 1]
    # With three onsets exactly 60 s apart the margin shrinks to the start-up alone.
    assert desired(decisions, 196.0) == 1
    assert desired(decisions, 198.0) == 4
    assert desired(decisions, 258.0) == 4


def test_decide_is_pure_given_its_inputs() -> None:
    fleet = SyntheticFleet()
    from warmpool_operator.scaling.history import SampleHistory

    history = SampleHistory(400.0)
    for k in range(40):
        history.observe(fleet.scrapes(4, Load.steady(40.0), 2.0 if k else 0.0), 2.0 * k)
    observations = Observations(samples=tuple(history.samples))
    first = decide(SPEC, observations, DeciderState(), current_replicas=4, now=78.0)
    second = decide(SPEC, observations, DeciderState(), current_replicas=4, now=78.0)
    assert first == second
    assert first[0].desired_replicas == 4
    assert first[0].load == pytest.approx(40.0 * HOLDING)


def test_a_changed_spec_applies_at_the_next_decision_and_keeps_the_history() -> None:
    scaler = Autoscaler(SPEC)
    fleet = SyntheticFleet()
    replicas = 16
    for k in range(30):
        scaler.observe(fleet.scrapes(replicas, Load.steady(200.0), 2.0 if k else 0.0), 2.0 * k)
        replicas = scaler.decide(replicas, 2.0 * k).desired_replicas
    assert replicas == 16
    scaler.retune(dataclasses.replace(SPEC, max_replicas=8))
    scaler.observe(fleet.scrapes(replicas, Load.steady(200.0), 2.0), 60.0)
    decision = scaler.decide(replicas, 60.0)
    assert decision.desired_replicas == 8
    assert "bounds [1, 8]" in decision.reason
    assert len(scaler.samples) == 31

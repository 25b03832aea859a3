"""The fleet decision: warm counts per tuple from measured load, pods from their sum, surges learned."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from warmpool_operator.fleet.decide import FleetDecision, FleetReason, FleetState, WarmReason, decide
from warmpool_operator.fleet.observations import FleetObservations, PodScrape, TupleCounters, TupleKey
from warmpool_operator.fleet.sizing import warm_for_load
from warmpool_operator.fleet.spec import FleetSpec, FleetTuning

pytestmark = pytest.mark.unit

BUSY, QUIET = TupleKey("busy", "m"), TupleKey("quiet", "m")
HOLDING = 0.1


class Fleet:
    """Per-pod cumulative counters of tuples; each tick's arrivals are split evenly over the pods."""

    def __init__(self, spec: FleetSpec, tuples: list[TupleKey]) -> None:
        self.spec = spec
        self.tuples = tuples
        self.state = FleetState()
        self.counts: dict[tuple[str, TupleKey], float] = {}
        self.pods = spec.min_pods
        self.now = 0.0

    def tick(self, rates: Mapping[TupleKey, float], *, misses: float = 0.0, ready: int | None = None) -> FleetDecision:
        ready = self.pods if ready is None else ready
        dt = self.spec.tick_seconds
        scrapes = []
        for p in range(ready):
            series = {}
            for key in self.tuples:
                drawn = rates.get(key, 0.0) * dt / ready if self.now > 0 else 0.0
                total = self.counts[(f"pod-{p}", key)] = self.counts.get((f"pod-{p}", key), 0.0) + drawn
                in_flight = rates.get(key, 0.0) * HOLDING / ready
                series[key] = TupleCounters(total * (1 - misses), total * misses, in_flight, 0.0)
            scrapes.append(PodScrape(f"pod-{p}", series))
        observations = FleetObservations(self.tuples, scrapes, self.pods)
        decision, self.state = decide(self.spec, self.state, observations, self.now)
        self.pods = decision.pods
        self.now += dt
        return decision


def test_no_pods_holds_at_least_the_minimum() -> None:
    spec = FleetSpec(min_pods=2)
    decision, state = decide(spec, FleetState(), FleetObservations([BUSY], [], 1), 0.0)
    assert decision.reason is FleetReason.NO_PODS
    assert decision.pods == 2
    assert decision.warm == {BUSY: 1}
    assert state == FleetState()


def test_first_scrape_is_a_baseline_at_the_floor() -> None:
    fleet = Fleet(FleetSpec(warm_floor=2), [BUSY, QUIET])
    decision = fleet.tick({BUSY: 100.0})
    assert decision.reason is FleetReason.BASELINE
    assert decision.warm == {BUSY: 2, QUIET: 2}


def test_steady_load_is_sized_by_erlang_per_pod() -> None:
    spec = FleetSpec()
    fleet = Fleet(spec, [BUSY, QUIET])
    for _ in range(200):
        decision = fleet.tick({BUSY: 200.0})
    load = decision.loads[BUSY]
    assert load == pytest.approx(200.0 * HOLDING, rel=0.05)
    share = FleetTuning().sizing_share
    assert decision.warm[BUSY] == warm_for_load(load / 2, spec.target_miss_ratio * share, 1, spec.warm_cap_per_tuple)
    assert decision.warm[QUIET] == 1
    assert decision.warm_reasons[QUIET] is WarmReason.FLOOR
    assert decision.pods == 2
    assert decision.reason is FleetReason.FITS


def test_pods_added_when_the_sum_passes_the_capacity_and_removed_after_the_delay() -> None:
    spec = FleetSpec(max_total_warm=40, scale_down_delay_seconds=20.0)
    tuples = [TupleKey(f"t{i}", "m") for i in range(4)]
    fleet = Fleet(spec, tuples)
    fleet.tick({})
    high = dict.fromkeys(tuples, 150.0)
    decision = fleet.tick(high)
    assert decision.reason is FleetReason.SCALE_UP
    assert decision.pods > 2
    # The Ready pods carry the load until the new ones are Ready: the counts still fit a pod.
    assert decision.warm_per_pod <= 40
    assert decision.evictions > 0
    for _ in range(5):
        decision = fleet.tick(high)
    assert decision.warm_per_pod <= 40
    low = dict.fromkeys(tuples, 1.0)
    reasons = []
    for _ in range(100):
        decision = fleet.tick(low)
        reasons.append(decision.reason)
        if decision.reason is FleetReason.SCALE_DOWN:
            break
    assert FleetReason.DOWN_DELAYED in reasons
    assert reasons[-1] is FleetReason.SCALE_DOWN
    assert decision.pods == 2


def test_counter_reset_counts_from_zero() -> None:
    spec = FleetSpec()
    state = FleetState()
    pod = "pod-0"
    for now, hits in ((0.0, 1000.0), (2.0, 1100.0), (4.0, 10.0)):
        scrape = PodScrape(pod, {BUSY: TupleCounters(hits, 0.0, 1.0, 0.0)})
        decision, state = decide(spec, state, FleetObservations([BUSY], [scrape], 1), now)
    assert decision.arrivals == pytest.approx(10.0)


def test_a_timer_is_learned_within_two_periods() -> None:
    spec = FleetSpec(min_pods=2)
    fleet = Fleet(spec, [BUSY, QUIET])
    period, burst = 120.0, 400.0
    by_time: dict[float, FleetDecision] = {}
    for _ in range(int(4 * period / 2) + 2):
        at = fleet.now
        firing = at > 0 and at % period == 2.0
        by_time[at] = fleet.tick({BUSY: burst if firing else 0.2, QUIET: 0.5})
    needed = warm_for_load(burst * HOLDING / 2, spec.target_miss_ratio, 1, spec.warm_cap_per_tuple)
    # Before the second burst the first one is still held (no period yet) ...
    second = by_time[period - 2.0]
    assert second.warm_reasons[BUSY] is WarmReason.SURGE
    assert second.warm[BUSY] >= needed
    # ... and before the third it is prewarmed from the period, with the hold let go in between.
    third = by_time[2 * period - 2.0]
    assert third.warm_reasons[BUSY] is WarmReason.PREWARM
    assert third.warm[BUSY] >= needed
    between = by_time[2 * period - 40.0]
    assert between.warm[BUSY] < needed


def test_overcommitted_floors_do_not_add_pods_that_would_not_help() -> None:
    # 30 busy tuples with a floor of 1 cannot all fit 20 instances at any pod count.
    spec = FleetSpec(max_total_warm=20, max_pods=64)
    tuples = [TupleKey(f"t{i}", "m") for i in range(30)]
    fleet = Fleet(spec, tuples)
    for _ in range(5):
        decision = fleet.tick(dict.fromkeys(tuples, 0.5))
        assert decision.warm_per_pod <= 20
    assert decision.pods <= 6
    assert decision.evictions > 0

"""The fleet simulator on tiny traces whose outcome is worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from warmpool_lab.baselines import SchedulePolicy, StaticPolicy
from warmpool_lab.runs import RunSettings, cheapest_static, make_policy
from warmpool_lab.simulator import FleetConfig, simulate
from warmpool_lab.trace import Trace
from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.decider import Decision
from warmpool_operator.scaling.erlang import erlang_b

pytestmark = pytest.mark.unit


def test_one_pod_two_warm_instances() -> None:
    # Two invocations hold both warm instances until 1.1 s and 1.2 s, so the one at 0.3 s misses;
    # at 1.5 s both are free again.
    trace = Trace.of("tiny", [(0.1, 1.0), (0.2, 1.0), (0.3, 1.0), (1.5, 1.0)], end=3.0)
    result = simulate(trace, StaticPolicy(1), FleetConfig(warm_per_pod=2, tick_seconds=1.0))
    assert (result.invocations, result.misses) == (4, 1)
    assert result.miss_ratio == 0.25
    assert result.warm_instance_seconds == pytest.approx(6.0)  # 1 pod × 2 instances × 3 s
    assert result.idle_instance_seconds == pytest.approx(3.0)  # 3 hits held 1 s each
    assert result.scale_events == 0
    assert result.timeline == ((0.0, 1),)


def test_holding_is_cut_at_the_end_of_the_trace() -> None:
    trace = Trace.of("tail", [(2.5, 10.0)], end=3.0)
    result = simulate(trace, StaticPolicy(1), FleetConfig(warm_per_pod=1, tick_seconds=1.0))
    assert result.misses == 0
    assert result.warm_instance_seconds == pytest.approx(3.0)
    assert result.idle_instance_seconds == pytest.approx(2.5)


def test_without_ready_pods_everything_misses_at_no_cost() -> None:
    trace = Trace.of("none", [(0.5, 1.0), (1.5, 1.0)], end=3.0)
    result = simulate(trace, StaticPolicy(0), FleetConfig(warm_per_pod=4, initial_replicas=0))
    assert result.misses == 2
    assert result.warm_instance_seconds == 0.0


@pytest.mark.parametrize(
    ("schedule", "pod_seconds", "ready"),
    [
        # Asked at 2 s, Ready 5 s later: 10 s + 3 s of pods.
        ([(0.0, 1), (2.0, 2)], 13.0, ((0.0, 1), (7.0, 2))),
        # Taken away at 4 s: the newest pod leaves at once.
        ([(0.0, 2), (4.0, 1)], 14.0, ((0.0, 2), (4.0, 1))),
        # Taken away before it was Ready: the pending pod goes first, at no cost.
        ([(0.0, 1), (2.0, 2), (4.0, 1)], 10.0, ((0.0, 1),)),
    ],
)
def test_start_up_and_removal(schedule: list[tuple[float, int]], pod_seconds: float, ready: tuple[object, ...]) -> None:
    trace = Trace.of("idle", [(9.5, 0.1)], end=10.0)
    config = FleetConfig(warm_per_pod=3, startup_seconds=5.0, tick_seconds=1.0, initial_replicas=schedule[0][1])
    result = simulate(trace, SchedulePolicy(schedule), config)
    assert result.warm_instance_seconds == pytest.approx(3 * pod_seconds)
    assert result.ready_timeline == ready
    assert result.timeline == tuple(schedule)
    assert result.scale_events == len(schedule) - 1


def test_invocations_on_a_pod_that_leaves_stop_counting_as_busy() -> None:
    trace = Trace.of("cut", [(1.0, 5.0)], end=10.0)
    config = FleetConfig(warm_per_pod=1, tick_seconds=1.0)
    result = simulate(trace, SchedulePolicy([(0.0, 1), (3.0, 0)]), config)
    assert result.warm_instance_seconds == pytest.approx(3.0)
    assert result.idle_instance_seconds == pytest.approx(1.0)  # busy from 1 s until the pod left at 3 s


class Recorder:
    """A policy that keeps what each scrape showed and never changes the fleet."""

    name = "recorder"
    wants_scrapes = True

    def __init__(self) -> None:
        self.seen: dict[float, Sequence[Scrape]] = {}

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        self.seen[now] = scrapes

    def decide(self, current_replicas: int, now: float) -> Decision:
        return Decision(current_replicas, "unchanged", None, False)


def test_the_policy_sees_each_pods_counters_and_gauges() -> None:
    # At 1 s: two hits still running (until 3.1 s and 3.2 s), the miss at 0.3 s ended at 0.8 s.
    trace = Trace.of("seen", [(0.1, 3.0), (0.2, 3.0), (0.3, 0.5)], end=4.0)
    recorder = Recorder()
    simulate(trace, recorder, FleetConfig(warm_per_pod=2, tick_seconds=1.0))
    (at_start,) = recorder.seen[0.0]
    assert at_start.metrics is not None
    assert (at_start.metrics.hits, at_start.metrics.misses, at_start.metrics.warm) == (0.0, 0.0, 2.0)
    (at_one,) = recorder.seen[1.0]
    assert at_one.metrics is not None
    metrics = at_one.metrics
    assert (metrics.hits, metrics.misses, metrics.in_flight, metrics.warm, metrics.capacity) == (2, 1, 2, 0, 2)
    (at_three,) = recorder.seen[3.0]
    assert at_three.metrics is not None
    assert (at_three.metrics.in_flight, at_three.metrics.warm) == (2.0, 0.0)
    assert sorted(recorder.seen) == [0.0, 1.0, 2.0, 3.0]


class ScheduledRecorder(Recorder):
    def __init__(self, schedule: list[tuple[float, int]]) -> None:
        super().__init__()
        self.schedule = SchedulePolicy(schedule)

    def decide(self, current_replicas: int, now: float) -> Decision:
        return self.schedule.decide(current_replicas, now)


def test_a_pod_ready_at_a_tick_is_in_that_ticks_scrape() -> None:
    # Asked at 2 s with a 4 s start-up: Ready at 6 s, exactly when the third scrape is taken.
    trace = Trace.of("idle", [(9.5, 0.1)], end=10.0)
    recorder = ScheduledRecorder([(0.0, 1), (2.0, 2)])
    simulate(trace, recorder, FleetConfig(warm_per_pod=2, startup_seconds=4.0, tick_seconds=2.0))
    assert [len(recorder.seen[t]) for t in (0.0, 2.0, 4.0, 6.0, 8.0)] == [1, 1, 1, 2, 2]


def test_random_routing_gives_erlangs_loss_ratio() -> None:
    # Poisson arrivals at 4/s, exponential holding of mean 1 s, two pods of 4 warm instances:
    # each pod sees 2 Erlangs, so the miss ratio is B(4, 2) = (2^4/4!) / Σ 2^k/k! ≈ 0.095.
    rng = np.random.default_rng(7)
    gaps = rng.exponential(0.25, 120_000)
    arrivals = np.cumsum(gaps)
    trace = Trace("poisson", arrivals, rng.exponential(1.0, arrivals.size), end=float(np.floor(arrivals[-1]) + 1))
    result = simulate(trace, StaticPolicy(2), FleetConfig(warm_per_pod=4, tick_seconds=60.0, initial_replicas=2))
    assert result.miss_ratio == pytest.approx(erlang_b(4, 2.0), abs=0.005)


def test_the_warmpool_policy_scales_up_one_tick_after_load_appears() -> None:
    # Quiet until 10 s, then 50 invocations/s of 0.5 s: 25 Erlangs, which three pods of 16 carry
    # at B(16, 8.33) ≈ 0.7 %. The tick at 12 s is the first to see it; pods are Ready at 17 s.
    rows = [(10.0 + k * 0.02, 0.5) for k in range(1500)]
    trace = Trace.of("step", rows, end=40.0)
    settings = RunSettings(fleet=FleetConfig(warm_per_pod=16, startup_seconds=5.0, tick_seconds=2.0))
    result = simulate(trace, make_policy("warmpool", settings), settings.fleet)
    first_change = result.timeline[1]
    assert first_change[0] == 12.0
    assert first_change[1] >= 3
    assert result.ready_timeline[1][0] == 17.0
    assert result.ready_timeline[1][1] >= 3


def test_static_search_finds_the_smallest_fleet_meeting_the_target() -> None:
    # Three invocations at once need three warm instances: one pod of 3 does it, none cannot.
    trace = Trace.of("three", [(0.5, 1.0), (0.6, 1.0), (0.7, 1.0)], end=2.0)
    settings = RunSettings(fleet=FleetConfig(warm_per_pod=3, tick_seconds=1.0), target_miss_ratio=0.01)
    result = cheapest_static(trace, settings)
    assert result.timeline == ((0.0, 1),)
    assert result.misses == 0

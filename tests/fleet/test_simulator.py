"""The shared-fleet simulator's model rules on tiny hand-made traces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from warmpool_lab.fleet.model import FleetModel, FleetResult, write_timeline
from warmpool_lab.fleet.policies import SchedulePolicy, StaticPolicy
from warmpool_lab.fleet.simulator import simulate_fleet
from warmpool_lab.fleet.trace import TenantTrace
from warmpool_operator.fleet.observations import PodScrape

pytestmark = pytest.mark.unit

NO_LEARNING = FleetModel(learning_seconds=0.0)


def trace(rows: list[tuple[float, float, str]], end: float = 20.0) -> TenantTrace:
    return TenantTrace.of("tiny", rows, end=end)


def misses_of(result: FleetResult) -> list[int]:
    return list(result.tenant_misses)


def test_hit_needs_an_idle_warm_instance_of_the_tenant() -> None:
    rows = [(0.5, 2.0, "a"), (1.0, 2.0, "a"), (1.5, 1.0, "b"), (3.0, 1.0, "a")]
    result = simulate_fleet(trace(rows), StaticPolicy(1, 1), NO_LEARNING)
    # a@1.0 finds a's only instance held by a@0.5; b has its own; a@3.0 finds it released.
    assert result.invocations == 4
    assert result.misses == 1
    assert misses_of(result) == [1, 0]


def test_no_ready_pod_is_a_miss_and_startup_lags() -> None:
    schedule = [(0.0, 0, [1]), (2.0, 1, [1])]
    rows = [(1.0, 0.1, "a"), (6.9, 0.1, "a"), (7.1, 0.1, "a")]
    result = simulate_fleet(trace(rows), SchedulePolicy("s", schedule), NO_LEARNING)
    # Asked for at t=2, Ready at t=7 (start-up 5 s).
    assert result.misses == 2


def test_raise_lags_by_resize_and_lowering_is_immediate() -> None:
    raise_rows = [(2.5, 0.1, "a"), (3.5, 0.1, "a")]
    raised = simulate_fleet(trace(raise_rows), SchedulePolicy("s", [(0.0, 1, [0]), (2.0, 1, [1])]), NO_LEARNING)
    assert raised.misses == 1
    lowered = simulate_fleet(trace([(2.1, 0.1, "a")]), SchedulePolicy("s", [(0.0, 1, [1]), (2.0, 1, [0])]), NO_LEARNING)
    assert lowered.misses == 1


def test_learning_period_is_not_counted() -> None:
    rows = [(1.0, 5.0, "a"), (2.0, 1.0, "a"), (12.0, 5.0, "a"), (13.0, 1.0, "a")]
    result = simulate_fleet(trace(rows), StaticPolicy(1, 1), FleetModel(learning_seconds=10.0))
    assert result.invocations == 2
    assert result.misses == 1


def test_memory_is_integrated_over_ready_pods_and_warm_instances() -> None:
    model = FleetModel(learning_seconds=5.0)
    result = simulate_fleet(trace([(1.0, 0.1, "a"), (2.0, 0.1, "b")], end=10.0), StaticPolicy(3, 2), model)
    per_second = 3 * (55.0 + 0.12 * 2 * 2)
    assert result.memory_mb_seconds == pytest.approx(10.0 * per_second)
    assert result.memory_counted_mb_seconds == pytest.approx(5.0 * per_second)
    assert result.max_warm_per_pod == 4


def test_scrapes_carry_per_tuple_counters_of_ready_pods() -> None:
    seen: list[Sequence[PodScrape]] = []

    class Recorder(StaticPolicy):
        wants_scrapes = True

        def tick(self, now: float, scrapes: Sequence[PodScrape], pods_asked: int) -> tuple[int, list[int]]:
            seen.append(scrapes)
            return super().tick(now, scrapes, pods_asked)

    rows = [(0.5, 3.0, "a"), (1.0, 3.0, "a"), (1.2, 0.1, "b")]
    simulate_fleet(trace(rows, end=5.0), Recorder(1, 1), NO_LEARNING)
    at_two = {key.tenant: c for key, c in seen[1][0].tuples.items()}
    assert (at_two["a"].hits, at_two["a"].misses, at_two["a"].in_flight, at_two["a"].warm) == (1.0, 1.0, 2.0, 0.0)
    assert (at_two["b"].hits, at_two["b"].in_flight, at_two["b"].warm) == (1.0, 0.0, 1.0)


def test_routing_is_seeded() -> None:
    rows = [(0.1 * i, 0.5, "a") for i in range(100)]
    first = simulate_fleet(trace(rows), StaticPolicy(3, 1), FleetModel(learning_seconds=0.0, seed=7))
    again = simulate_fleet(trace(rows), StaticPolicy(3, 1), FleetModel(learning_seconds=0.0, seed=7))
    assert first.misses == again.misses


def test_timeline_format(tmp_path: Path) -> None:
    schedule = [(0.0, 2, [1, 1]), (2.0, 3, [4, 1])]
    result = simulate_fleet(trace([(0.5, 0.1, "a"), (1.0, 0.1, "b")], end=5.0), SchedulePolicy("s", schedule))
    assert result.timeline == ((0.0, "pods", 2), (0.0, "a", 1), (0.0, "b", 1), (2.0, "pods", 3), (2.0, "a", 4))
    out = tmp_path / "timeline.csv"
    write_timeline(result.timeline, out)
    assert out.read_text().splitlines() == ["t,what,value", "0,pods,2", "0,a,1", "0,b,1", "2,pods,3", "2,a,4"]

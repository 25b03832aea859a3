"""Generated flash-crowd and timer families, counting after the learning period, and `bench dedicated`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from warmpool.cli import main
from warmpool_lab.dedicated_bench import (
    HELD_OUT_SEEDS,
    TUNING_FAMILIES,
    TUNING_SEEDS,
    SeedRow,
    cheapest_static,
    counted,
    plan,
    summarise,
)
from warmpool_lab.runs import RunSettings
from warmpool_lab.shapes import FAMILIES, FlashFamily, Generated, TimerFamily, generate
from warmpool_lab.simulator import FleetConfig, SimResult
from warmpool_lab.trace import Trace

pytestmark = pytest.mark.unit


def test_a_family_and_seed_always_give_the_same_trace() -> None:
    one, again, other = (generate(FAMILIES["timer-5m"], s) for s in (3, 3, 4))
    assert np.array_equal(one.trace.arrivals, again.trace.arrivals)
    assert np.array_equal(one.trace.durations, again.trace.durations)
    assert one.params == again.params
    assert one.params != other.params


def test_timer_bursts_come_every_period_and_the_first_two_are_learning() -> None:
    family = TimerFamily("t", base_rate=(0.5, 0.5), period_seconds=(300.0, 300.0), burst_invocations=(600.0, 600.0),
                         burst_spread=0.0, burst_seconds=(2.0, 2.0), jitter_seconds=(0.0, 0.0),
                         first_fire=(100.0, 100.0), seconds=1800.0)
    generated = generate(family, 0)
    counts = np.bincount(generated.trace.arrivals.astype(int), minlength=1800)
    bursts = [t for t in range(1800) if counts[t] > 100]
    # Each firing fills [100 + 300k, 102 + 300k): 300/s for 2 s on 0.5/s.
    assert bursts == [s + k * 300 for k in range(6) for s in (100, 101)]
    assert generated.count_from == 100.0 + 1.5 * 300.0  # between the second and the third burst
    per_burst = counts[100] + counts[101]
    assert 600 - 4 * 600**0.5 < per_burst < 600 + 4 * 600**0.5


def test_a_flash_crowd_ramps_from_its_base_to_its_plateau() -> None:
    family = FlashFamily("f", base_rate=(20.0, 20.0), amplitude=(10.0, 10.0), ramp_seconds=(3.0, 3.0),
                         plateau_seconds=(100.0, 100.0), fall_seconds=(10.0, 10.0), onset=(600.0, 600.0),
                         wobble=(0.0, 0.0))
    generated = generate(family, 0)
    counts = np.bincount(generated.trace.arrivals.astype(int), minlength=1800)
    assert generated.count_from == 0.0  # nothing to learn: a crowd is a surprise
    assert counts[100:600].mean() == pytest.approx(20.0, rel=0.1)
    assert counts[610:700].mean() == pytest.approx(200.0, rel=0.05)
    assert 20.0 < counts[601] < 200.0  # on the ramp
    assert counts[750:1800].mean() == pytest.approx(20.0, rel=0.1)


def generated_of(trace: Trace, count_from: float) -> Generated:
    return Generated("hand", 0, trace, count_from, {})


def test_misses_and_cost_count_from_the_end_of_the_learning_period() -> None:
    trace = Trace.of("hand", [(1.0, 0.1), (5.0, 0.1), (12.0, 0.1), (15.0, 0.1)], end=20.0)
    result = SimResult(
        policy="p", trace="hand", invocations=4, misses=2, warm_instance_seconds=0.0, idle_instance_seconds=0.0,
        scale_events=1, timeline=((0.0, 1), (8.0, 3)), ready_timeline=((0.0, 1), (13.0, 3)),
        miss_times=(1.0, 12.0),
    )
    got = counted(result, generated_of(trace, 10.0), warm_per_pod=4)
    assert (got.invocations, got.misses) == (2, 1)
    # From 10 s: one pod until 13 s, three until 20 s, 4 warm each: 4 × (3 + 21) = 96.
    assert got.warm_instance_seconds == pytest.approx(96.0)


def test_the_static_search_counts_after_the_learning_period() -> None:
    # 16 invocations of 10 s at once in the learning period, then 5 at once: one pod of 4 warm
    # misses 1 of the 5 counted (20 %), enough for a 50 % target but not for none; the 12 early
    # misses of one pod count for neither.
    early = [(1.0 + k * 0.001, 10.0) for k in range(16)]
    late = [(30.0 + k * 0.001, 10.0) for k in range(5)]
    trace = Trace.of("hand", early + late, end=60.0)
    settings = RunSettings(fleet=FleetConfig(warm_per_pod=4, startup_seconds=0.0), target_miss_ratio=0.01)
    found = cheapest_static(generated_of(trace, 20.0), settings, (0.5, 0.0))
    pods_loose, loose = found[0.5]
    pods_tight, tight = found[0.0]
    assert (loose.invocations, tight.invocations) == (5, 5)
    assert (pods_loose, loose.misses) == (1, 1)
    assert tight.misses == 0
    assert pods_tight > 1
    assert tight.warm_instance_seconds == pytest.approx(pods_tight * 4 * 40.0)


def test_families_are_split_into_tuning_and_held_out_runs() -> None:
    runs = plan(["timer-5m", "timer-long"])
    assert "timer-5m" in TUNING_FAMILIES
    assert "timer-long" not in TUNING_FAMILIES
    assert runs == [("timer-5m", s) for s in (*TUNING_SEEDS, *HELD_OUT_SEEDS)] + [
        ("timer-long", s) for s in HELD_OUT_SEEDS
    ]


def row(family: str, seed: int, split: str, miss: float, cost: float) -> SeedRow:
    return SeedRow(family, seed, split, 1000, round(miss * 1000), miss, 1.0, 2, cost, 3, cost, 0.0, {})


def test_a_family_meets_the_goal_when_its_worst_seed_and_mean_cost_do() -> None:
    rows = [row("a", 1, "held-out", 0.01, 0.5), row("a", 2, "held-out", 0.02, 0.6),
            row("b", 1, "held-out", 0.01, 0.2), row("b", 2, "held-out", 0.04, 0.2)]
    a, b = summarise(rows)
    assert (a.family, a.seeds, a.worst_seed, a.meets_goal) == ("a", 2, 2, True)
    assert a.mean_cost_vs_static_goal == pytest.approx(0.55)
    assert (b.worst_miss_ratio, b.meets_goal) == (0.04, False)


def test_bench_dedicated_reports_per_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "dedicated", "--families", "timer-2m", "--seeds", "300", "--no-public", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (family,) = payload["families"]
    assert (family["family"], family["split"], family["seeds"]) == ("timer-2m", "held-out", 1)
    (seed,) = payload["seeds"]
    assert seed["invocations"] > 0
    assert seed["static_goal_pods"] <= seed["static_target_pods"]
    assert payload["public"] == []


def test_bench_dedicated_rejects_unknown_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "dedicated", "--families", "nope", "--no-public"]) == 2
    assert "unknown family nope" in capsys.readouterr().err

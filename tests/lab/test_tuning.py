"""The tuned baselines: the target-utilisation search, and how the bench sets ours against them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.scaling.synthetic import Load, SyntheticFleet
from warmpool.cli import main
from warmpool_lab.bench import BenchRow, compare_tuned, format_table
from warmpool_lab.runs import RunSettings, baseline_at, run_policy, run_tuned, tune_utilisation
from warmpool_lab.simulator import FleetConfig
from warmpool_lab.trace import Trace
from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.decider import Decision

pytestmark = pytest.mark.unit


class PodFrom:
    """No pod until the first tick at or after 10 × utilisation seconds, then one."""

    name = "pod-from"
    wants_scrapes = False

    def __init__(self, utilisation: float) -> None:
        self.start = 10.0 * utilisation

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        _ = scrapes, now

    def decide(self, current_replicas: int, now: float) -> Decision:
        desired = 1 if now >= self.start else 0
        return Decision(desired, "", None, desired != current_replicas)


def one_a_second() -> Trace:
    """Ten invocations of 0.1 s at 0.5, 1.5, ..., 9.5 s."""
    return Trace.of("one-a-second", [(k + 0.5, 0.1) for k in range(10)], end=10.0)


def pod_from_settings(target: float) -> RunSettings:
    # One warm instance, no start-up, a tick every second, no pod at first: a pod asked for at the
    # tick T is Ready at T, so the T invocations before it miss; nothing overlaps, so none after.
    fleet = FleetConfig(warm_per_pod=1, startup_seconds=0.0, tick_seconds=1.0, initial_replicas=0)
    return RunSettings(fleet=fleet, target_miss_ratio=target)


def test_the_search_finds_the_highest_utilisation_meeting_the_target() -> None:
    # Utilisation u asks for the pod at T = ceil(10u) s, so T of the 10 invocations miss. A target of
    # 25 % allows 2 misses: T <= 2, so u <= 0.20. Halving from 100 %: 100 (T = 10), 50 (5) and
    # 25 (3) fail, 12 (2) meets; bisecting 12..25: 18 meets, 21 (T = 3) fails, 19 and 20 meet.
    tuned = tune_utilisation(one_a_second(), PodFrom, pod_from_settings(0.25), name="pod-from-tuned")
    assert tuned.target_utilisation == 0.20
    assert tuned.meets_target
    assert tuned.replays == 8
    result = tuned.result
    assert result.policy == "pod-from-tuned"
    assert (result.invocations, result.misses) == (10, 2)
    assert result.timeline == ((0.0, 0), (2.0, 1))
    assert result.warm_instance_seconds == pytest.approx(8.0)  # one instance from 2 s to 10 s


def test_when_no_utilisation_meets_the_target_the_lowest_is_reported() -> None:
    # 5 % of 10 invocations allows none to miss, but even at 1 % the pod comes at the tick at 1 s,
    # after the invocation at 0.5 s. Halving visits 100, 50, 25, 12, 6, 3 and 1.
    tuned = tune_utilisation(one_a_second(), PodFrom, pod_from_settings(0.05), name="pod-from-tuned")
    assert tuned.target_utilisation == 0.01
    assert not tuned.meets_target
    assert tuned.replays == 7
    assert tuned.result.misses == 1


def test_a_full_utilisation_that_meets_the_target_is_kept() -> None:
    # One invocation of 0.5 s a second never has more than one of 16 warm instances busy: both
    # baselines keep the one pod even at 100 %, and nothing misses. One replay settles it.
    trace = Trace.of("trickle", [(k + 0.25, 0.5) for k in range(60)], end=60.0)
    settings = RunSettings(fleet=FleetConfig(warm_per_pod=16), target_miss_ratio=0.01)
    for name in ("kpa-tuned", "hpa-tuned"):
        tuned = run_tuned(trace, name, settings)
        assert (tuned.target_utilisation, tuned.meets_target, tuned.replays) == (1.0, True, 1)
        assert tuned.result.policy == name
        assert tuned.result.misses == 0
        assert tuned.result.warm_instance_seconds == pytest.approx(16 * 60.0)
        assert run_policy(trace, name, settings).warm_instance_seconds == pytest.approx(16 * 60.0)


def test_a_burst_before_the_first_scrape_cannot_be_tuned_away() -> None:
    # 32 invocations of 10 s in the first half second on one pod of 16: 16 miss before any tick has
    # seen them, at every utilisation. Pods asked for at 2 s would be Ready at 7 s, after the end.
    trace = Trace.of("opening-burst", [(0.1 + k * 0.0125, 10.0) for k in range(32)], end=4.0)
    settings = RunSettings(fleet=FleetConfig(warm_per_pod=16), target_miss_ratio=0.01)
    for name in ("kpa-tuned", "hpa-tuned"):
        tuned = run_tuned(trace, name, settings)
        assert (tuned.target_utilisation, tuned.meets_target, tuned.replays) == (0.01, False, 7)
        assert (tuned.result.invocations, tuned.result.misses) == (32, 16)
        assert tuned.result.warm_instance_seconds == pytest.approx(16 * 4.0)


@pytest.mark.parametrize("name", ["kpa", "hpa"])
def test_the_baselines_size_for_the_utilisation_they_are_given(name: str) -> None:
    # 33 in flight on pods of 16 at 50 % (8 each): ceil(33 / 8) = 5 pods, from 3. HPA: 33 / 48 is
    # 0.6875 used, 1.375x the target, so ceil(1.375 × 3) = 5; then 0.825x, outside the 10 %
    # tolerance, and ceil(0.825 × 5) = 5 again.
    policy = baseline_at(name, 0.5)
    fleet = SyntheticFleet()
    replicas = 3
    for step in range(31):
        now = 2.0 * step
        policy.observe(fleet.scrapes(replicas, Load(rate=33.0, in_flight=33.0), 2.0), now)
        replicas = policy.decide(replicas, now).desired_replicas
    assert replicas == 5


def row(policy: str, miss: float, cost: float, utilisation: float | None = None) -> BenchRow:
    return BenchRow("t", policy, 1000, round(miss * 1000), miss, cost, 0.0, 0, 1.0, 1.0, None, utilisation)


def test_ours_against_the_tuned_baselines() -> None:
    rows = [
        row("warmpool", 0.004, 100.0),
        row("kpa-tuned", 0.009, 80.0, 0.57),
        row("hpa-tuned", 0.012, 400.0, 0.01),
    ]
    kpa, hpa = compare_tuned(rows, 0.01)
    assert (kpa.other, kpa.cost_ratio, kpa.cheaper) == ("kpa-tuned", 1.25, "kpa-tuned")
    assert kpa.ours_meets_target
    assert kpa.theirs_meets_target
    assert kpa.detail.startswith("kpa-tuned cheaper; cost 100 vs kpa-tuned(57%) 80")
    assert (hpa.cost_ratio, hpa.cheaper, hpa.theirs_meets_target) == (0.25, "warmpool", False)
    assert hpa.detail.startswith("not comparable at 1%: hpa-tuned misses 1.20% even at 1%")
    table = format_table(rows, [], RunSettings(), [kpa, hpa])
    assert "t          kpa-tuned(57%)   0.90%" in table
    assert "ours vs kpa-tuned (both meeting the target): cost ratio 1.25, kpa-tuned cheaper" in table
    assert "ours vs hpa-tuned (both meeting the target): cost ratio 0.25, not comparable" in table


def test_simulate_and_bench_report_the_tuned_utilisation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The trickle of the test above: one pod at 100 % is already enough.
    path = tmp_path / "trickle.csv"
    path.write_text("t,duration\n" + "".join(f"{k + 0.25},0.5\n" for k in range(60)))
    assert main(["simulate", "--trace", str(path), "--policy", "hpa-tuned", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["policy"] == "hpa-tuned"
    assert (summary["target_utilisation"], summary["tuned_meets_target"], summary["replays"]) == (1.0, True, 1)
    assert main(["bench", "scaling", "--traces", str(tmp_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    utilisations = {r["policy"]: r["target_utilisation"] for r in payload["rows"]}
    assert (utilisations["kpa-tuned"], utilisations["hpa-tuned"], utilisations["kpa"]) == (1.0, 1.0, None)
    assert [(c["trace"], c["other"]) for c in payload["tuned_comparisons"]] == [
        ("trickle", "kpa-tuned"),
        ("trickle", "hpa-tuned"),
    ]

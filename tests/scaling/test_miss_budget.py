"""The miss budget: steady sizing spends misses the last ten minutes left under the target, never more.

With 16 warm per pod, 27.5 Erlangs needs 4 pods for B <= 1 % (3 pods give 1.25 %, 4 give 0.12 %);
a fleet held at 4 wastes most of the target, so with budget left the steady sizing may ask for 3.
"""

from __future__ import annotations

import pytest

from warmpool_operator.scaling.collector import TickSample
from warmpool_operator.scaling.decider import DeciderState, Observations, Tuning, decide, steady_target
from warmpool_operator.scaling.spec import AutoscalingSpec

pytestmark = pytest.mark.unit

SPEC = AutoscalingSpec(enabled=True, min_replicas=1, max_replicas=100)
TUNING = Tuning()
HOLDING = 0.6875
TICK = 2.0


def history(seconds: float, rate: float, miss_ratio: float, *, last_rate: float | None = None,
            pods: int = 4) -> list[TickSample]:
    """Ticks every 2 s up to t = `seconds`, at `rate`/s with that share missed (the last tick at `last_rate`)."""
    ticks = round(seconds / TICK)
    out = []
    for i in range(1, ticks + 1):
        r = last_rate if last_rate is not None and i == ticks else rate
        out.append(TickSample(t=i * TICK, interval=TICK, pods=pods, reporting=pods, arrival_rate=r,
                              miss_rate=r * miss_ratio, in_flight=r * HOLDING, idle_warm=16.0 * pods - r * HOLDING,
                              capacity_per_pod=16.0))
    return out


@pytest.mark.parametrize(("seconds", "rate", "miss_ratio", "expected"), [
    (700.0, 40.0, 0.001, 0.02),  # far under: relaxed to the cap, twice the target
    # 120 misses of 24,000 in the window, held at 120 + 2 sqrt(121) = 142: 0.7 % / 0.59 % of the target
    (700.0, 40.0, 0.005, 0.01 * 0.007 / (142 / 24000)),
    (700.0, 40.0, 0.0095, 0.01),  # spent: the spec's target
    (700.0, 40.0, 0.03, 0.01),  # over: never tighter than the spec's target (bursts do that)
    (400.0, 40.0, 0.0, 0.01),  # the window is not covered yet
    (700.0, 0.2, 0.0, 0.01),  # 120 invocations: too few to tell 0 % from 1 %
])
def test_steady_target(seconds: float, rate: float, miss_ratio: float, expected: float) -> None:
    samples = history(seconds, rate, miss_ratio)
    assert steady_target(SPEC, samples, seconds, TUNING) == pytest.approx(expected, rel=1e-3)


def test_budget_left_lets_steady_load_run_one_pod_lower() -> None:
    samples = history(700.0, 40.0, 0.001)
    decision, _ = decide(SPEC, Observations(samples), DeciderState(), current_replicas=4, now=700.0)
    assert decision.desired_replicas == 3
    assert "misses under budget" in decision.reason

    spent = history(700.0, 40.0, 0.0095)
    decision, _ = decide(SPEC, Observations(spent), DeciderState(), current_replicas=4, now=700.0)
    assert decision.desired_replicas == 4
    assert "budget" not in decision.reason

    off = Tuning(max_budget_relaxation=1.0)
    decision, _ = decide(SPEC, Observations(samples), DeciderState(), current_replicas=4, now=700.0, tuning=off)
    assert decision.desired_replicas == 4


def test_bursts_are_sized_at_the_spec_target_whatever_the_budget() -> None:
    # The last tick jumps to 200/s (137.5 Erlangs): 16 pods at 1 %, 14 would do at 2 %.
    samples = history(700.0, 40.0, 0.001, last_rate=200.0, pods=16)
    decision, _ = decide(SPEC, Observations(samples), DeciderState(), current_replicas=16, now=700.0)
    assert "misses under budget" in decision.reason
    assert "burst 16" in decision.reason
    assert decision.desired_replicas >= 16

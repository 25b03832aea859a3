"""Timer bursts and flash crowds on a dedicated pool, stepped through simulated time with pods that
take 5 s to start: the k-th burst is prewarmed, a steep ramp is met at the first tick that sees it.

Every count is a tick of simulated time (2 s); misses on the Ready pods follow Erlang's formula.
"""

from __future__ import annotations

import pytest

from tests.scaling.synthetic import HOLDING, Load, drive_lagged
from warmpool_operator.scaling.erlang import erlang_b, pods_needed
from warmpool_operator.scaling.periodic import TIMING_SHARE
from warmpool_operator.scaling.spec import AutoscalingSpec

pytestmark = pytest.mark.unit

SPEC = AutoscalingSpec(enabled=True, min_replicas=1, max_replicas=200)
STARTUP = 5.0
PERIOD = 300.0
FIRST_BURST = 100.0
"""Bursts fill the ticks ending at 100, 400, 700, ... s (onsets 98, 398, 698, ...)."""


def miss_share(load: float, pods: int) -> float:
    return erlang_b(16, load / pods) if pods else 1.0


def timer(burst_load: float) -> object:
    """1/s between bursts; each burst is 600 invocations inside one tick (300/s as its count shows)
    and over by the tick's end, so the in-flight gauge sees none of it; it misses on the pods Ready
    during it as `burst_load` Erlangs would."""

    def load(t: float, ready: int) -> Load:
        if t >= FIRST_BURST and (t - FIRST_BURST) % PERIOD == 0:
            return Load(rate=300.0, in_flight=HOLDING, miss_share=miss_share(burst_load, ready))
        return Load.steady(1.0)

    return load


def onset(k: int) -> float:
    """Start of the tick of the k-th burst (k = 1, 2, ...)."""
    return FIRST_BURST + (k - 1) * PERIOD - SPEC.tick_seconds


def test_a_timer_is_prewarmed_from_its_third_burst_on() -> None:
    # 300/s × 0.6875 s = 206 Erlangs: 24 pods of 16 at 1 %. The first two bursts teach the period;
    # the pods for the third are asked at least a start-up before its onset, and leave after it.
    steps = drive_lagged(SPEC, timer(300.0 * HOLDING), until=1100.0, replicas=1, startup=STARTUP)  # type: ignore[arg-type]
    need = pods_needed(300.0 * HOLDING, 16, SPEC.target_miss_ratio)
    assert need == 24
    for k in (1, 2):
        assert steps[onset(k) - 2 * SPEC.tick_seconds].asked == 1  # unforeseen
    for k in (3, 4):
        asked_by = onset(k) - STARTUP - 1.0  # the last tick whose pods are Ready before the onset
        assert steps[asked_by].asked >= need, k
        assert steps[onset(k)].ready >= need, k
        assert "prewarming for the surge" in steps[asked_by].decision.reason
        assert steps[onset(k) - 60.0].asked == 1  # not held between bursts
    assert steps[onset(3) + 60.0].asked == 1


def test_a_burst_hidden_inside_a_tick_is_sized_from_its_misses() -> None:
    # The bursts bring 400 Erlangs, though their tick counts show 206. The third burst, on the 24
    # pods its count asks for, misses 20 % (B(16, 400 / 24)); Erlang's formula turned around says
    # 400 Erlangs, so the fourth is prewarmed with the 46 pods those need, and meets the target.
    steps = drive_lagged(SPEC, timer(400.0), until=1100.0, replicas=1, startup=STARTUP)  # type: ignore[arg-type]
    third = steps[onset(3)].ready
    assert third == 24
    assert miss_share(400.0, third) == pytest.approx(0.20, abs=0.01)
    fourth = steps[onset(4)].ready
    assert fourth == pods_needed(400.0, 16, SPEC.target_miss_ratio) == 46
    assert miss_share(400.0, fourth) <= SPEC.target_miss_ratio


def ramp_rate(t: float) -> float:
    """40/s, then from 100.5 s a 3 s linear ramp to a plateau of 200/s."""
    return 40.0 + 160.0 * min(max((t - 100.5) / 3.0, 0.0), 1.0)


def flash(t: float, ready: int) -> Load:
    # The tick's mean rate over (t - 2, t], from the rate's integral in steps of 10 ms.
    rate = sum(ramp_rate(t - 2.0 + (k + 0.5) * 0.01) for k in range(200)) / 200
    now = ramp_rate(t)
    return Load(rate=rate, in_flight=now * HOLDING, miss_share=miss_share(now * HOLDING, ready))


def test_a_steep_ramp_is_met_at_the_first_tick_that_sees_it() -> None:
    # The tick ending at 102 s holds 1.5 s of the ramp (70/s on average). It is far above the 40/s
    # before, so the climb is projected one start-up and a tick and a half ahead: the pods asked at
    # 102 s already cover the plateau (200/s: 16 pods), a tick before the plateau is even seen.
    steps = drive_lagged(SPEC, flash, until=140.0, replicas=4, startup=STARTUP)
    plateau = pods_needed(200.0 * HOLDING, 16, SPEC.target_miss_ratio)
    assert plateau == 16
    assert steps[100.0].asked == 4
    assert steps[102.0].asked >= plateau
    assert steps[102.0].decision.reason.count("climb") == 1
    # Ready a start-up later (107 s); once the plateau is seen, it alone is sized (one pod more is
    # kept while the stable window still rises).
    assert steps[108.0].ready >= plateau
    assert all(plateau <= steps[float(t)].asked <= plateau + 1 for t in range(108, 141, 2))


def step_up(t: float, ready: int) -> Load:
    """40/s, then 120/s from 100 s on: one tick climbs, the next is flat."""
    rate = 40.0 if t <= 100.0 else 120.0
    return Load(rate=rate, in_flight=rate * HOLDING, miss_share=miss_share(rate * HOLDING, ready))


def test_hedged_pods_not_ready_yet_are_cancelled_at_once() -> None:
    # At 102 s the climb from 40/s to 120/s is projected 6.5 ticks ahead (capped at 4 × 120/s): 38
    # pods. At 104 s the rate is flat: 120/s needs 11 pods (82.5 Erlangs). The hedge's pods are
    # not Ready yet (asked 2 s ago, Ready at 107 s), so they are cancelled at once instead of at
    # the scale-down rate limit's halving per tick (38 -> 19), which would have brought 8 pods up.
    steps = drive_lagged(SPEC, step_up, until=120.0, replicas=4, startup=STARTUP)
    assert steps[102.0].asked == pods_needed(4 * 120.0 * HOLDING, 16, SPEC.target_miss_ratio) == 38
    assert steps[104.0].ready == 4
    assert steps[104.0].asked == pods_needed(120.0 * HOLDING, 16, SPEC.target_miss_ratio) + 1 == 11


def sparse_timer(t: float, ready: int) -> Load:
    """1/s for the first 300 s, then 0.05/s with a burst of 300/s in the ticks ending at 600, 1100,
    1600 and 2100 s (every 500 s)."""
    if t >= 600.0 and (t - 600.0) % 500.0 == 0:
        return Load(rate=300.0, in_flight=HOLDING, miss_share=miss_share(300.0 * HOLDING, ready))
    return Load.steady(1.0 if t <= 300.0 else 0.05)


def test_a_near_idle_pool_keeps_its_hold_time_between_bursts() -> None:
    # Between bursts 500 s apart the 5-minute window sees 15 invocations, too few for Little's law:
    # the hold time measured while the pool was busier (0.6875 s) still sizes the third burst,
    # prewarmed a start-up and the timing margin (3 % of the 500 s period) ahead with the 24 pods
    # its 300/s need.
    steps = drive_lagged(SPEC, sparse_timer, until=1700.0, replicas=1, startup=STARTUP)
    margin = TIMING_SHARE * 500.0
    assert steps[1598.0 - 2 * margin].asked == 1
    assert steps[1598.0 - margin + 1.0].ready >= 24
    assert steps[1598.0].ready >= 24
    assert "prewarming for the surge expected at t=1598" in steps[1590.0].decision.reason
    assert "(0.69 s each)" in steps[1590.0].decision.reason


def silent_timer(t: float, ready: int) -> Load:
    """Nothing but a burst of 300/s in the ticks ending at 600, 1100, 1600 and 2100 s; the gauge
    sees the burst's tail at its tick's end (60 in flight) and a little of it a tick later."""
    if t >= 600.0 and (t - 600.0) % 500.0 == 0:
        return Load(rate=300.0, in_flight=60.0, miss_share=miss_share(300.0 * HOLDING, ready))
    if t >= 602.0 and (t - 602.0) % 500.0 == 0:
        return Load(rate=0.0, in_flight=5.0)
    return Load(rate=0.0, in_flight=0.0)


def test_a_timer_with_no_traffic_between_bursts_is_still_prewarmed() -> None:
    # No invocation outside the bursts, so no hold time outside them: the one the bursts' own
    # ticks give is kept through the silence, and the third burst is prewarmed a start-up and the
    # timing margin ahead.
    steps = drive_lagged(SPEC, silent_timer, until=1700.0, replicas=1, startup=STARTUP)
    margin = TIMING_SHARE * 500.0
    assert steps[1598.0 - 2 * margin].asked == 1
    assert steps[1598.0 - margin + 1.0].ready > 1
    assert steps[1598.0].ready > 1
    assert "prewarming for the surge expected at t=1598" in steps[1592.0].decision.reason


def timer_with_a_spike(t: float, ready: int) -> Load:
    """`sparse_timer`, every 500 s until 2600 s, and a spike of 40/s in the tick ending at 2250 s."""
    if t == 2250.0:
        return Load(rate=40.0, in_flight=40.0 * HOLDING, miss_share=miss_share(40.0 * HOLDING, ready))
    return sparse_timer(t, ready)


def test_a_chance_spike_between_a_timers_bursts_does_not_cost_the_next_prewarm() -> None:
    # The spike at 2250 s fits no period with the bursts; the chain of bursts before it still
    # predicts the one at 2600 s, which is prewarmed as if the spike had not been.
    steps = drive_lagged(SPEC, timer_with_a_spike, until=2610.0, replicas=1, startup=STARTUP)
    assert steps[2252.0].asked > 1
    assert "prewarming for the surge expected at t=2598" in steps[2590.0].decision.reason
    assert steps[2598.0].ready >= 24

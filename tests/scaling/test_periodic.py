"""Surges and their period: the model behind prewarming for timer-triggered traffic."""

import math

import pytest

from warmpool_operator.scaling.collector import TickSample
from warmpool_operator.scaling.erlang import erlang_b
from warmpool_operator.scaling.periodic import (
    TIMING_SHARE,
    Surge,
    SurgeModel,
    forecast,
    implied_load,
    observe_surges,
)

pytestmark = pytest.mark.unit


def tick(t: float, rate: float | None) -> TickSample:
    return TickSample(
        t=t, interval=2.0, pods=1, reporting=1, arrival_rate=rate, miss_rate=0.0, in_flight=0.0,
        idle_warm=16.0, capacity_per_pod=16.0,
    )


def replay(rates: dict[float, float | None], until: float, base: float = 1.0) -> SurgeModel:
    model = SurgeModel()
    t = 2.0
    while t <= until:
        model = observe_surges(
            model, tick(t, rates.get(t, base)), baseline_seconds=60.0, max_surge_seconds=60.0
        )
        t += 2.0
    return model


def always(_: Surge) -> bool:
    return True


def test_a_burst_is_a_surge_with_onset_peak_and_end() -> None:
    model = replay({40.0: 40.0, 42.0: 30.0}, until=60.0)
    assert model.current is None
    (surge,) = model.surges
    assert surge.onset == 38.0  # the burst began somewhere in the tick (38, 40]
    assert surge.last == 42.0
    assert surge.peak_rate == 40.0
    # The baseline starts at zero and follows 1/s with a 60 s time constant for 38 s.
    assert surge.baseline_rate == pytest.approx(1.0 - math.exp(-38.0 / 60.0))


def test_noise_around_the_baseline_is_no_surge() -> None:
    model = replay({t: 40.0 + (6.0 if int(t) % 4 else -6.0) for t in range(2, 200, 2)}, until=198.0, base=40.0)
    assert model.surges == ()
    assert model.current is None


def test_a_lasting_change_of_level_becomes_the_baseline() -> None:
    model = replay({t: 50.0 for t in range(100, 300, 2)}, until=298.0)
    assert model.surges == ()
    assert model.current is None
    assert model.baseline_rate == pytest.approx(50.0, rel=0.05)


def test_metric_loss_changes_nothing() -> None:
    model = replay({40.0: 40.0}, until=40.0)
    after = observe_surges(model, tick(42.0, None), baseline_seconds=60.0, max_surge_seconds=60.0)
    assert after == model


def bursts_every(period: float, count: int, first: float = 20.0) -> dict[float, float | None]:
    return {first + k * period: 40.0 for k in range(count)}


def test_two_onsets_give_a_tentative_period() -> None:
    model = replay(bursts_every(60.0, 2), until=100.0)
    fc = forecast(model, relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert (fc.period, fc.next_onset, fc.confirmations) == (60.0, 138.0, 1)
    assert fc.track_record is None


def test_evenly_spaced_onsets_confirm_the_period() -> None:
    model = replay(bursts_every(60.0, 4), until=220.0)
    fc = forecast(model, relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert fc.confirmations == 3
    assert fc.period == pytest.approx(60.0)
    assert fc.next_onset == pytest.approx(258.0)
    assert fc.jitter == pytest.approx(0.0, abs=1e-9)
    assert fc.track_record == 1.0


def test_jittered_onsets_are_fitted_not_chained() -> None:
    # Onsets near 60 s apart, off by a tick either way: the line through them predicts the grid.
    model = replay({20.0: 40.0, 82.0: 40.0, 140.0: 40.0, 202.0: 40.0}, until=230.0)
    fc = forecast(model, relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert fc.confirmations == 3
    assert fc.period == pytest.approx(60.4)
    assert fc.jitter > 0.0
    assert abs(fc.next_onset - 258.0) <= fc.jitter + 2.0


def test_irregular_onsets_lose_their_track_record() -> None:
    model = replay({20.0: 40.0, 90.0: 40.0, 120.0: 40.0, 230.0: 40.0, 260.0: 40.0}, until=300.0)
    fc = forecast(model, relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert fc.confirmations == 1
    assert fc.track_record is not None
    assert fc.track_record < 0.5


def test_a_chance_spike_between_bursts_does_not_break_the_period() -> None:
    # Bursts every 60 s from 20 s, and a spike at 262 s: the chain of five evenly spaced onsets is
    # followed back from the burst before the spike, which still predicts the burst at 320 s.
    rates: dict[float, float | None] = {**bursts_every(60.0, 5), 262.0: 40.0}
    fc = forecast(replay(rates, until=290.0), relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert fc.confirmations == 4
    assert fc.period == pytest.approx(60.0)
    assert fc.next_onset == pytest.approx(318.0)
    assert fc.latest_onset == 258.0


def test_the_burst_after_a_chance_spike_extends_the_chain() -> None:
    rates: dict[float, float | None] = {**bursts_every(60.0, 6), 262.0: 40.0}
    fc = forecast(replay(rates, until=340.0), relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert fc.confirmations == 5
    assert fc.next_onset == pytest.approx(378.0)


def test_three_onsets_that_fit_only_by_stepping_over_others_are_not_a_period() -> None:
    # 18 s, 118 s and 228 s are about 105 s apart, but only with the onsets at 88 s and 258 s left
    # out: three onsets at random times often fit that loosely, so the period stays tentative.
    model = replay({20.0: 40.0, 90.0: 40.0, 120.0: 40.0, 230.0: 40.0, 260.0: 40.0}, until=300.0)
    fc = forecast(model, relevant=always, tick_seconds=2.0)
    assert fc is not None
    assert (fc.confirmations, fc.latest_onset) == (1, 258.0)


def test_surges_too_close_for_their_length_give_no_period() -> None:
    # Onsets 8 s and 6 s apart, the latest surge 12 s long (and still under way): no spacing is a
    # period longer than the surges, so nothing is predicted.
    rates: dict[float, float | None] = {t: 40.0 for t in (20.0, 22.0, 24.0, 28.0, 30.0, *range(34, 45, 2))}
    model = replay(rates, until=44.0)
    assert model.current is not None
    assert forecast(model, relevant=always, tick_seconds=2.0) is None


def test_the_timing_margin_is_at_least_a_share_of_the_period() -> None:
    # Exactly periodic onsets fit with no residual; the margin is still 3 % of the period.
    exact = forecast(replay(bursts_every(300.0, 4), until=1000.0), relevant=always, tick_seconds=2.0)
    assert exact is not None
    assert exact.jitter == pytest.approx(0.0, abs=1e-9)
    assert exact.margin == pytest.approx(TIMING_SHARE * 300.0)
    # A fit whose residuals are larger than that keeps them as its margin.
    wobbly = forecast(
        replay({20.0: 40.0, 86.0: 40.0, 140.0: 40.0, 206.0: 40.0}, until=240.0), relevant=always, tick_seconds=2.0
    )
    assert wobbly is not None
    assert wobbly.jitter > TIMING_SHARE * wobbly.period
    assert wobbly.margin == wobbly.jitter


def test_surges_that_do_not_matter_are_ignored() -> None:
    model = replay(bursts_every(60.0, 3), until=160.0)
    assert forecast(model, relevant=lambda s: False, tick_seconds=2.0) is None


def tick_on(t: float, rate: float, miss_share: float, pods: int) -> TickSample:
    return TickSample(
        t=t, interval=2.0, pods=pods, reporting=pods, arrival_rate=rate, miss_rate=rate * miss_share,
        in_flight=0.0, idle_warm=0.0, capacity_per_pod=16.0,
    )


def test_a_surge_remembers_the_load_its_misses_imply() -> None:
    # 24 pods were Ready when a burst missed 19.6 % of its invocations: B(16, 16.67) = 0.196, so
    # 24 × 16.67 = 400 Erlangs, whatever the tick's count (300/s) made of it.
    model = SurgeModel()
    for t in range(2, 100, 2):
        model = observe_surges(model, tick_on(float(t), 1.0, 0.0, 24), baseline_seconds=60.0, max_surge_seconds=60.0)
    share = erlang_b(16, 400.0 / 24)
    model = observe_surges(model, tick_on(100.0, 300.0, share, 24), baseline_seconds=60.0, max_surge_seconds=60.0)
    assert model.current is not None
    assert model.current.miss_load == pytest.approx(400.0, rel=1e-4)


def test_misses_are_held_against_the_pods_ready_at_the_tick_start() -> None:
    # 20 more pods came up during the tick: the misses are those of the 4 that served it from the start.
    model = SurgeModel()
    for t in range(2, 100, 2):
        model = observe_surges(model, tick_on(float(t), 1.0, 0.0, 4), baseline_seconds=60.0, max_surge_seconds=60.0)
    share = erlang_b(16, 60.0 / 4)
    model = observe_surges(model, tick_on(100.0, 300.0, share, 24), baseline_seconds=60.0, max_surge_seconds=60.0)
    assert model.current is not None
    assert model.current.miss_load == pytest.approx(60.0, rel=1e-4)


@pytest.mark.parametrize("share", [0.0, 0.9])
def test_no_misses_or_saturated_pods_imply_no_load(share: float) -> None:
    # Without misses there is nothing to turn around; with 90 % missed the pods were swamped and
    # their misses say the load was high, not how high.
    assert implied_load(tick_on(100.0, 300.0, share, 4), 4) == 0.0


def test_the_implied_load_is_at_most_the_ticks_arrivals() -> None:
    assert implied_load(tick_on(100.0, 10.0, 0.45, 4), 4) == 20.0

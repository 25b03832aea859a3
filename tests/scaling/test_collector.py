"""Per-pod counters into fleet samples, and samples into windows."""

import pytest

from warmpool_operator.scaling.collector import CollectorState, Scrape, TickSample, collect
from warmpool_operator.scaling.exposition import PodMetrics
from warmpool_operator.scaling.window import aggregate, holding_time, rate_trend

pytestmark = pytest.mark.unit


def pod(name: str, hits: float, misses: float = 0.0, in_flight: float = 0.0, warm: float = 16.0) -> Scrape:
    return Scrape(name, PodMetrics(hits=hits, misses=misses, warm=warm, capacity=16.0, in_flight=in_flight))


def failed(name: str) -> Scrape:
    return Scrape(name, None, "timed out")


def run(ticks: list[tuple[float, list[Scrape]]]) -> list[TickSample]:
    state = CollectorState()
    samples = []
    for now, scrapes in ticks:
        state, sample = collect(state, scrapes, now)
        samples.append(sample)
    return samples


def test_first_tick_sets_baselines_only() -> None:
    (first,) = run([(0.0, [pod("a", 500, 5, in_flight=3), pod("b", 400, 4, in_flight=5)])])
    assert first.arrival_rate is None
    assert first.miss_rate is None
    assert first.in_flight == 8.0
    assert first.capacity_per_pod == 16.0
    assert (first.pods, first.reporting) == (2, 2)


def test_counter_deltas_become_fleet_rates() -> None:
    samples = run([
        (0.0, [pod("a", 100, 1), pod("b", 100, 1)]),
        (2.0, [pod("a", 130, 3), pod("b", 120, 1)]),
    ])
    # (30 + 2 + 20 + 0) arrivals in 2 s, 2 of them misses.
    assert samples[1].arrival_rate == pytest.approx(26.0)
    assert samples[1].miss_rate == pytest.approx(1.0)


def test_counter_reset_counts_from_zero() -> None:
    samples = run([
        (0.0, [pod("a", 1000, 10)]),
        (2.0, [pod("a", 8, 2)]),  # the runtime restarted: counters went down
    ])
    assert samples[1].arrival_rate == pytest.approx(5.0)
    assert samples[1].miss_rate == pytest.approx(1.0)


def test_a_pod_that_appears_later_counts_since_the_previous_tick() -> None:
    samples = run([
        (0.0, [pod("a", 0)]),
        (2.0, [pod("a", 10), pod("new", 6)]),
    ])
    assert samples[1].arrival_rate == pytest.approx(8.0)


def test_failed_scrapes_are_extrapolated_from_the_pods_that_answered() -> None:
    samples = run([
        (0.0, [pod("a", 0), pod("b", 0)]),
        (2.0, [pod("a", 20, in_flight=4, warm=12), failed("b")]),
    ])
    assert (samples[1].pods, samples[1].reporting) == (2, 1)
    assert samples[1].arrival_rate == pytest.approx(20.0)
    assert samples[1].in_flight == pytest.approx(8.0)
    assert samples[1].idle_warm == pytest.approx(24.0)


def test_a_delta_after_a_failed_scrape_is_spread_over_its_span() -> None:
    samples = run([
        (0.0, [pod("a", 0)]),
        (2.0, [failed("a")]),
        (4.0, [pod("a", 40)]),
    ])
    assert samples[1].arrival_rate is None
    assert samples[1].in_flight is None
    assert samples[2].arrival_rate == pytest.approx(10.0)


def test_no_answer_is_no_data_not_zero() -> None:
    samples = run([(0.0, [pod("a", 0)]), (2.0, [failed("a")]), (4.0, [])])
    for sample in samples[1:]:
        assert sample.arrival_rate is None
        assert sample.in_flight is None
        assert sample.capacity_per_pod is None


def sample(t: float, rate: float | None, in_flight: float | None, miss_rate: float = 0.0) -> TickSample:
    return TickSample(
        t=t, interval=2.0, pods=1, reporting=1, arrival_rate=rate, miss_rate=miss_rate if rate is not None else None,
        in_flight=in_flight, idle_warm=None, capacity_per_pod=16.0,
    )


def test_window_averages_and_miss_ratio() -> None:
    samples = [sample(2.0, 10.0, 5.0, 1.0), sample(4.0, 20.0, 7.0, 0.0), sample(6.0, 30.0, 9.0, 2.0)]
    stats = aggregate(samples, 6.0, 4.0)  # (2, 6]: the last two samples
    assert stats.arrival_rate == pytest.approx(25.0)
    assert stats.in_flight == pytest.approx(8.0)
    assert stats.arrivals == pytest.approx(100.0)
    assert stats.miss_ratio == pytest.approx(4.0 / 100.0)
    assert stats.covered == pytest.approx(4.0)


def test_window_with_nothing_arriving_has_no_miss_ratio() -> None:
    stats = aggregate([sample(2.0, 0.0, 0.0), sample(4.0, 0.0, 0.0)], 4.0, 6.0)
    assert stats.arrival_rate == 0.0
    assert stats.miss_ratio is None


def test_window_after_metric_loss_covers_less() -> None:
    stats = aggregate([sample(2.0, 10.0, 5.0), sample(4.0, None, None), sample(6.0, None, None)], 6.0, 6.0)
    assert stats.covered == pytest.approx(2.0)
    assert stats.arrival_rate == pytest.approx(10.0)
    assert aggregate([sample(2.0, None, None)], 2.0, 6.0).arrival_rate is None


def test_holding_time_by_littles_law() -> None:
    samples = [sample(2.0 * k, 40.0, 27.5) for k in range(1, 20)]
    assert holding_time(samples, 38.0, 300.0, min_arrivals=30.0) == pytest.approx(0.6875)
    assert holding_time(samples[:1], 2.0, 300.0, min_arrivals=100.0) is None


def test_rate_trend_finds_a_rise() -> None:
    samples = [sample(2.0 * k, 10.0 + 2.0 * k, None) for k in range(1, 31)]
    trend = rate_trend(samples, 60.0, 60.0)
    assert trend is not None
    assert trend.slope == pytest.approx(1.0)
    assert trend.rate_now == pytest.approx(70.0)
    assert trend.slope_error == pytest.approx(0.0, abs=1e-9)


def test_a_pod_back_in_the_ready_list_continues_its_counters() -> None:
    # Out of the list at 2 s (not Ready: no traffic routed to it), back at 4 s with its old total.
    samples = run([
        (0.0, [pod("a", 100), pod("b", 500)]),
        (2.0, [pod("a", 110)]),
        (4.0, [pod("a", 120), pod("b", 504)]),
    ])
    # b's 4 draws since 0 s are spread over the 4 s they cover: 1/s this tick, not 504 / 2 s.
    assert samples[2].arrival_rate == pytest.approx(5.0 + 1.0)


def test_holding_time_leaves_out_the_ticks_of_bursts() -> None:
    # A burst of 300/s fills the tick ending at 20 s and is over before the gauge is read (5 in
    # flight); the tick after it still holds its tail (60 in flight at 1/s). Outside them, 40/s
    # with 27.5 in flight: 0.6875 s each.
    samples = [sample(2.0 * k, 40.0, 27.5) for k in range(1, 20)]
    samples[9] = sample(20.0, 300.0, 5.0)
    samples[10] = sample(22.0, 1.0, 60.0)
    assert holding_time(samples, 38.0, 300.0, min_arrivals=30.0) != pytest.approx(0.6875)
    skipped = holding_time(samples, 38.0, 300.0, min_arrivals=30.0, skip=[(18.0, 22.0)])
    assert skipped == pytest.approx(0.6875)

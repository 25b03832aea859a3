"""The clairvoyant reference fleet on a trace small enough to size by hand."""

import numpy as np
import pytest

from warmpool_lab.clairvoyant import bucket_load, clairvoyant_cost, clairvoyant_timeline
from warmpool_lab.runs import RunSettings, run_clairvoyant
from warmpool_lab.simulator import FleetConfig
from warmpool_lab.trace import Trace

pytestmark = pytest.mark.unit

# Invocations over [0, 2), [0.5, 1.5) and [12, 12.5).
TRACE = Trace.of("hand", [(0.0, 2.0), (0.5, 1.0), (12.0, 0.5)], end=20.0)


def test_mean_in_flight_per_second() -> None:
    loads = bucket_load(TRACE)
    expected = np.zeros(20)
    expected[0] = 1.0 + 0.5  # the first all second, the second from 0.5 s
    expected[1] = 1.0 + 0.5  # the first all second, the second until 1.5 s
    expected[12] = 0.5
    np.testing.assert_allclose(loads, expected, atol=1e-9)


def test_fleet_per_window_from_the_peak() -> None:
    # One warm instance per pod at a 50 % target: B(1, a) = a / (1 + a) <= 0.5 means a <= 1 per
    # pod, so a window needs ceil(peak) pods: 1.5 → 2, then 0.5 → 1.
    timeline = clairvoyant_timeline(TRACE, warm_per_pod=1, target=0.5)
    assert timeline == [(0.0, 2), (10.0, 1)]
    assert clairvoyant_cost(TRACE, timeline, warm_per_pod=1) == pytest.approx(2 * 10 + 1 * 10)


def test_idle_windows_need_no_pods() -> None:
    trace = Trace.of("gap", [(0.0, 1.0), (25.0, 1.0)], end=30.0)
    assert clairvoyant_timeline(trace, warm_per_pod=16, target=0.01) == [(0.0, 1), (10.0, 0), (20.0, 1)]


def test_replay_of_the_clairvoyant_fleet_has_no_start_up_lag() -> None:
    # Two warm instances per pod at 50 %: B(2, a) <= 0.5 for a <= 1 + sqrt(3), so one pod covers
    # each window, Ready at its start, and both overlapping invocations find a warm instance.
    settings = RunSettings(fleet=FleetConfig(warm_per_pod=2, startup_seconds=5.0), target_miss_ratio=0.5)
    result = run_clairvoyant(TRACE, settings)
    assert result.ready_timeline == ((0.0, 1),)
    assert result.warm_instance_seconds == pytest.approx(2 * 20.0)
    assert result.misses == 0

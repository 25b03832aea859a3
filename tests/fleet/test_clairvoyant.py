"""The shared and dedicated clairvoyant references on a tiny trace."""

from __future__ import annotations

import pytest

from warmpool_lab.fleet import clairvoyant as cv
from warmpool_lab.fleet.dedicated import simulate_dedicated
from warmpool_lab.fleet.model import FleetModel
from warmpool_lab.fleet.trace import TenantTrace
from warmpool_operator.fleet.sizing import warm_for_load
from warmpool_operator.scaling.erlang import pods_needed

pytestmark = pytest.mark.unit


def tiny() -> TenantTrace:
    # Tenant a: 6 invocations of 10 s at t=0 (6 in flight all through the first window);
    # tenant b: one 0.5 s call at t=12 (0.5 in flight in its 1 s bucket).
    rows = [(0.01 * i, 10.0, "a") for i in range(6)] + [(12.0, 0.5, "b")]
    return TenantTrace.of("tiny", rows, end=20.0)


def test_peaks_per_window() -> None:
    peaks = cv.tenant_peaks(tiny())
    assert peaks.shape == (2, 2)
    assert peaks[0, 0] == pytest.approx(6.0, rel=0.02)
    assert peaks[0, 1] == pytest.approx(0.15, abs=0.01)
    assert peaks[1, 1] == pytest.approx(0.5)
    assert peaks[1, 0] == 0.0


def test_shared_schedule_and_memory() -> None:
    trace = tiny()
    peaks = cv.tenant_peaks(trace)
    schedule = cv.shared_schedule(trace, target=0.01, cap=1024, peaks=peaks)
    assert [w.pods for w in schedule] == [2, 2]
    assert schedule[0].warm == [warm_for_load(peaks[0, 0] / 2, 0.01, 1, 1024), 1]
    assert schedule[1].warm[1] == warm_for_load(0.25, 0.01, 1, 1024)
    expected = sum(10.0 * 2 * (55.0 + 0.12 * sum(w.warm)) for w in schedule)
    assert cv.shared_memory(schedule, 20.0, base_mb=55.0, instance_mb=0.12) == pytest.approx(expected)


def test_shared_schedule_adds_pods_over_the_cap() -> None:
    schedule = cv.shared_schedule(tiny(), target=0.01, cap=4)
    assert schedule[0].pods > 2
    assert all(sum(w.warm) <= 4 for w in schedule)


def test_dedicated_pods_and_memory() -> None:
    trace = tiny()
    pods = cv.dedicated_pods(trace, target=0.01)
    assert pods[0, 0] == pods_needed(float(cv.tenant_peaks(trace)[0, 0]), 4, 0.01)
    assert pods[1, 0] == 1
    memory = cv.dedicated_memory(pods, 20.0, base_mb=55.0, instance_mb=0.12)
    assert memory == pytest.approx(10.0 * (55.0 + 0.48) * float(pods.sum()))
    replay = simulate_dedicated(
        trace, FleetModel(learning_seconds=0.0), schedule=pods, window_seconds=cv.WINDOW_SECONDS
    )
    assert replay.memory_mb_seconds == pytest.approx(memory)
    assert replay.policy == "dedicated-clairvoyant"

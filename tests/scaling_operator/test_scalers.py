"""The pure rules around each autoscaling tick: per-pool Autoscalers, status publishing, Events, pacing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from warmpool_operator.scalers import (
    Published,
    Scalers,
    Series,
    direction,
    pause_seconds,
    scale_notice,
    scrape_timeout,
    should_publish,
)
from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.exposition import PodMetrics
from warmpool_operator.scaling.spec import AutoscalingSpec
from warmpool_operator.scaling_handlers import autoscaling_enabled
from warmpool_operator.status import SCALING_OFF_REASON, scaling_off_status, scaling_status

pytestmark = pytest.mark.unit

ECHO = Series("acme", "aaaaaaaaaaaa")
SPEC = AutoscalingSpec(enabled=True, min_replicas=1, max_replicas=8)


def idle_scrape(pod: str, hits: float) -> Scrape:
    return Scrape(pod, PodMetrics(hits=hits, misses=0.0, warm=4.0, capacity=4.0, in_flight=0.0))


def test_one_autoscaler_per_pool_kept_across_ticks() -> None:
    scalers = Scalers()
    first = scalers.get("uid-1", ECHO, SPEC)
    assert scalers.get("uid-1", ECHO, SPEC) is first
    other = scalers.get("uid-2", ECHO, SPEC)
    assert other is not first
    assert len(scalers) == 2


def test_a_changed_autoscaling_spec_retunes_and_keeps_the_observations() -> None:
    scalers = Scalers()
    scaler = scalers.get("uid-1", ECHO, SPEC)
    scaler.observe([idle_scrape("p0", 10.0)], 0.0)
    scaler.observe([idle_scrape("p0", 20.0)], 2.0)
    wider = AutoscalingSpec(enabled=True, min_replicas=2, max_replicas=8, stable_window_seconds=120.0)
    same = scalers.get("uid-1", ECHO, wider)
    assert same is scaler
    assert same.spec == wider
    assert [s.t for s in same.samples] == [0.0, 2.0]


def test_another_tenant_or_module_starts_afresh() -> None:
    scalers = Scalers()
    scaler = scalers.get("uid-1", ECHO, SPEC)
    scaler.observe([idle_scrape("p0", 10.0)], 0.0)
    renewed = scalers.get("uid-1", Series("acme", "bbbbbbbbbbbb"), SPEC)
    assert renewed is not scaler
    assert renewed.samples == ()


def test_a_dropped_pool_is_forgotten_with_what_its_status_said() -> None:
    scalers = Scalers()
    scalers.get("uid-1", ECHO, SPEC)
    scalers.mark_published("uid-1", Published(1.0, 3, measured=True))
    assert scalers.published("uid-1") == Published(1.0, 3, measured=True)
    scalers.drop("uid-1")
    scalers.drop("uid-1")  # idempotent
    assert "uid-1" not in scalers
    assert scalers.published("uid-1") is None
    scalers.mark_published("uid-1", Published(2.0, 3, measured=True))  # a late tick of a gone pool
    assert scalers.published("uid-1") is None


LAST = Published(t=100.0, desired=4, measured=True)


@pytest.mark.parametrize(
    ("last", "current", "scaled", "expected"),
    [
        (None, Published(100.0, 4, True), False, True),  # nothing said yet
        (LAST, Published(101.0, 4, True), False, False),  # same count, numbers only
        (LAST, Published(101.0, 5, True), True, True),  # the count changed
        (LAST, Published(101.0, 5, True), False, True),  # another count wanted (a concurrent write won)
        (LAST, Published(101.0, 4, False), False, True),  # metrics lost: the hold shows at once
        (Published(100.0, 4, False), Published(101.0, 4, True), False, True),  # metrics back
        (LAST, Published(129.9, 4, True), False, False),  # before the refresh
        (LAST, Published(130.0, 4, True), False, True),  # refresh
    ],
)
def test_status_is_written_on_changes_and_refreshed_now_and_then(
    last: Published | None, current: Published, scaled: bool, expected: bool
) -> None:
    assert should_publish(last, current, scaled=scaled, refresh_seconds=30.0) is expected


def test_each_replica_change_is_one_event_naming_both_counts_and_the_reason() -> None:
    up = scale_notice(2, 6, "scale 2 -> 6: load 2.0 Erlangs")
    assert up is not None
    assert (up.type, up.reason) == ("Normal", "ScaledUp")
    assert up.message == "runtime pods 2 → 6: scale 2 -> 6: load 2.0 Erlangs"
    down = scale_notice(6, 3, "scale 6 -> 3: load 0.0 Erlangs")
    assert down is not None
    assert (down.reason, down.message) == ("ScaledDown", "runtime pods 6 → 3: scale 6 -> 3: load 0.0 Erlangs")
    assert scale_notice(4, 4, "keep 4") is None
    assert [direction(2, 6), direction(6, 3), direction(4, 4)] == ["up", "down", None]


def test_scrapes_never_outlast_a_tick_and_ticks_keep_their_grid() -> None:
    assert scrape_timeout(2.0) == 1.0
    assert scrape_timeout(0.5) == 0.5
    assert pause_seconds(2.0, 0.3) == pytest.approx(1.7)
    assert pause_seconds(2.0, 2.5) == 0.0  # an overrun tick is followed at once


@pytest.mark.parametrize(
    ("spec", "enabled"),
    [
        ({"autoscaling": {"enabled": True}}, True),
        ({"autoscaling": {"enabled": False, "minReplicas": 2}}, False),
        ({"autoscaling": {}}, False),
        ({"replicas": 3}, False),
        ({"autoscaling": None}, False),
        ({"autoscaling": {"enabled": "true"}}, False),  # not a boolean: the spec parser refuses it
    ],
)
def test_the_loop_runs_only_for_pools_with_autoscaling_enabled(spec: dict[str, Any], enabled: bool) -> None:
    assert autoscaling_enabled(spec=spec) is enabled


def test_status_carries_the_reason_and_autoscaling_off_drops_the_miss_ratio() -> None:
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    written = scaling_status(desired_replicas=3, miss_ratio=0.25, last_scale_time=when, reason="scale 2 -> 3: ...")
    assert written == {
        "desiredReplicas": 3,
        "missRatio": 0.25,
        "lastScaleTime": "2025-06-01T12:00:00Z",
        "scalingReason": "scale 2 -> 3: ...",
    }
    # As a merge patch, None deletes: no miss ratio is shown that nobody measures any more.
    assert scaling_off_status() == {"scalingReason": SCALING_OFF_REASON, "missRatio": None}

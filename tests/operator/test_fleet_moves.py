"""A pool moving between hosts (spec.fleetRef changed) stays warm somewhere: the pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warmpool_operator.runtimefleet.moves import (
    LINGER_SECONDS,
    dedicated_took_over,
    host_after,
    host_of,
    is_leaving,
    moved_status,
    named_fleet,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def pool(fleet_ref: dict[str, str] | None, host: str | None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"tenant": "acme"}
    if fleet_ref is not None:
        spec["fleetRef"] = fleet_ref
    return {"metadata": {"namespace": "team", "name": "p", **meta}, "spec": spec,
            "status": {} if host is None else {"fleet": host}}


def test_the_named_fleet_defaults_to_the_pools_namespace() -> None:
    assert named_fleet(pool({"name": "a"}, None)) == "team/a"
    assert named_fleet(pool({"name": "a", "namespace": "platform"}, None)) == "platform/a"
    assert named_fleet(pool(None, None)) is None


def test_a_malformed_host_reads_as_none() -> None:
    assert host_of({"fleet": "platform/a"}) == "platform/a"
    for status in ({}, {"fleet": 3}, {"fleet": "a"}, {"fleet": "a/b/c"}, None):
        assert host_of(status) is None


def test_a_pool_warm_on_a_fleet_that_names_another_host_is_leaving_it() -> None:
    assert is_leaving(pool({"name": "b"}, "team/a"), "team/a", NOW)  # fleet A -> fleet B
    assert is_leaving(pool(None, "team/a"), "team/a", NOW)  # fleet A -> its own Deployment
    assert not is_leaving(pool({"name": "a"}, "team/a"), "team/a", NOW)  # still a member
    assert not is_leaving(pool({"name": "b"}, "team/b"), "team/a", NOW)  # already warm on B: A lets go
    assert not is_leaving(pool({"name": "b"}, None), "team/a", NOW)  # never warm on A
    assert not is_leaving(pool({"name": "b"}, "team/a", deletionTimestamp="2026-01-01T00:00:00Z"), "team/a", NOW)


def test_the_host_moves_only_once_the_tuple_is_warm_on_every_pod_of_the_new_fleet() -> None:
    assert host_after("team/a", "team/b", warm_everywhere=False) == "team/a"
    assert host_after("team/a", "team/b", warm_everywhere=True) == "team/b"
    assert host_after(None, "team/b", warm_everywhere=False) is None
    # Once moved, a pod of the new fleet restarting does not send it back.
    assert host_after("team/b", "team/b", warm_everywhere=False) == "team/b"


def test_a_fleet_lets_a_pool_go_back_to_its_deployment_once_that_is_ready() -> None:
    assert not dedicated_took_over("team/a", dedicated_ready=False)
    assert dedicated_took_over("team/a", dedicated_ready=True)
    assert not dedicated_took_over(None, dedicated_ready=True)


def test_the_fleet_left_keeps_the_tuple_a_little_longer_for_clients_following_the_pool() -> None:
    moved = pool({"name": "b"}, "team/b")
    moved["status"].update(moved_status("team/a", NOW))
    assert moved["status"] == {"fleet": "team/b", "leftFleet": "team/a", "movedAt": "2026-01-01T12:00:00Z"}
    assert is_leaving(moved, "team/a", NOW + timedelta(seconds=LINGER_SECONDS - 1))
    assert not is_leaving(moved, "team/a", NOW + timedelta(seconds=LINGER_SECONDS))
    assert not is_leaving(moved, "team/b", NOW)  # its host now: a member, not leaving
    back = pool({"name": "a"}, "team/a")
    back["status"].update({"leftFleet": "team/a", "movedAt": "2026-01-01T12:00:00Z"})
    assert not is_leaving(back, "team/a", NOW)  # moved back: a member again
    garbled = pool({"name": "b"}, "team/b")
    garbled["status"].update({"leftFleet": "team/a", "movedAt": "yesterday"})
    assert not is_leaving(garbled, "team/a", NOW)

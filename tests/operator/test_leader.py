"""Leader election: the pure Lease state machine, and the elector over an in-memory Lease store."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from warmpool_operator.election import LeaderElector, LeaseConfig
from warmpool_operator.kinds import Conflict, Kind, NotFound, Unreachable
from warmpool_operator.leader import Action, decide, parse_lease, still_leading

pytestmark = pytest.mark.unit

WALL = datetime(2026, 1, 1, tzinfo=UTC)


def lease(holder: str, *, renew: str = "t1", version: str = "1", transitions: int = 0) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": "t0",
                     "renewTime": renew, "leaseTransitions": transitions}}


def test_no_lease_is_created_held_by_me() -> None:
    decision = decide(None, None, me="a", monotonic=0, wall=WALL, duration_seconds=15)
    assert decision.action is Action.CREATE
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "a"


def test_a_live_lease_of_another_is_waited_for_until_it_stops_changing_for_its_duration() -> None:
    record = parse_lease(lease("b"))
    first = decide(record, None, me="a", monotonic=100, wall=WALL, duration_seconds=15)
    assert first.action is Action.WAIT
    later = decide(record, first.observation, me="a", monotonic=114, wall=WALL, duration_seconds=15)
    assert later.action is Action.WAIT
    expired = decide(record, later.observation, me="a", monotonic=116, wall=WALL, duration_seconds=15)
    assert expired.action is Action.UPDATE
    assert expired.spec is not None
    assert (expired.spec["holderIdentity"], expired.spec["leaseTransitions"]) == ("a", 1)


def test_a_renewal_by_the_holder_restarts_the_wait() -> None:
    seen = decide(parse_lease(lease("b", renew="t1")), None, me="a", monotonic=100, wall=WALL, duration_seconds=15)
    renewed = decide(parse_lease(lease("b", renew="t2")), seen.observation, me="a", monotonic=114, wall=WALL,
                     duration_seconds=15)
    late = decide(parse_lease(lease("b", renew="t2")), renewed.observation, me="a", monotonic=120, wall=WALL,
                  duration_seconds=15)
    assert (renewed.action, late.action) == (Action.WAIT, Action.WAIT)


def test_my_own_lease_is_renewed_and_a_released_one_is_taken_at_once() -> None:
    mine = decide(parse_lease(lease("a")), None, me="a", monotonic=0, wall=WALL, duration_seconds=15)
    assert mine.action is Action.UPDATE
    assert mine.spec is not None
    assert "leaseTransitions" not in mine.spec
    free = decide(parse_lease(lease("")), None, me="a", monotonic=0, wall=WALL, duration_seconds=15)
    assert free.action is Action.UPDATE


def test_a_leader_that_cannot_renew_within_the_deadline_stops_leading() -> None:
    assert still_leading(last_renewed=10, monotonic=19, renew_deadline_seconds=10)
    assert not still_leading(last_renewed=10, monotonic=21, renew_deadline_seconds=10)
    assert not still_leading(last_renewed=None, monotonic=0, renew_deadline_seconds=10)


class Leases:
    """One Lease with resourceVersion preconditions, as the API server enforces them."""

    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.versions = itertools.count(1)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unreachable("GET", "/leases", "ConnectionRefusedError")

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        return None if self.body is None else {**self.body}

    async def create(self, kind: Kind, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        if self.body is not None:
            raise Conflict(409, "AlreadyExists", "exists")
        self.body = {"metadata": {"resourceVersion": str(next(self.versions))}, "spec": dict(body["spec"])}
        return self.body

    async def merge_patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *,
                          subresource: str | None = None) -> dict[str, Any]:
        self._check()
        if self.body is None:
            raise NotFound(404, "NotFound", "gone")
        if patch["metadata"]["resourceVersion"] != self.body["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        spec = {**self.body["spec"], **patch["spec"]}
        self.body = {"metadata": {"resourceVersion": str(next(self.versions))}, "spec": spec}
        return self.body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def elector(store: Leases, clock: Clock, me: str) -> LeaderElector:
    config = LeaseConfig(namespace="ops", name="warmpool-operator", identity=me)
    return LeaderElector(store, config, monotonic=clock)


async def test_of_two_replicas_exactly_one_leads_and_the_other_takes_over_after_expiry() -> None:
    store, clock = Leases(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    for _ in range(3):
        await a.try_once()
        await b.try_once()
        clock.now += 2
    assert (a.is_leader, b.is_leader) == (True, False)
    # a dies: it renews no more; b waits out the lease duration from its own observation.
    for _ in range(7):
        await b.try_once()
        clock.now += 2
    assert not b.is_leader
    clock.now += 2
    await b.try_once()
    assert b.is_leader
    assert store.body is not None
    assert store.body["spec"]["leaseTransitions"] == 1


async def test_a_leader_cut_off_from_the_api_steps_down_before_its_lease_expires() -> None:
    store, clock = Leases(), Clock()
    a = elector(store, clock, "a")
    await a.try_once()
    assert a.is_leader
    store.down = True
    clock.now += 9
    await a.try_once()
    assert a.is_leader
    clock.now += 2  # 11 s since the last renewal: past the 10 s deadline, before the 15 s expiry
    await a.try_once()
    assert not a.is_leader
    assert a.lost.is_set()
    store.down = False
    await a.try_once()  # still its own lease: it leads again
    assert a.is_leader


async def test_a_released_lease_is_taken_by_the_standby_at_once() -> None:
    store, clock = Leases(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    await a.try_once()
    await b.try_once()
    await a.release()
    await b.try_once()
    assert (a.is_leader, b.is_leader) == (False, True)

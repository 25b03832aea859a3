"""Leader election on a coordination.k8s.io/v1 Lease as a pure state machine: record + local time in, decision out."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class Action(enum.Enum):
    CREATE = "create"
    """No Lease yet: create it holding it."""
    UPDATE = "update"
    """Renew our hold, or take over a free or expired Lease."""
    WAIT = "wait"
    """Someone else holds a live Lease."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease that election reads."""

    holder: str
    duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None


@dataclass(frozen=True, slots=True)
class Observation:
    """When (on our monotonic clock) the Lease was last seen to change: expiry is judged locally,
    from that moment, so that clock skew between nodes cannot shorten someone else's term."""

    record: LeaseRecord
    seen_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    spec: dict[str, Any] | None
    """The Lease's spec to write (CREATE/UPDATE), else None."""
    observation: Observation | None


def parse_lease(body: Mapping[str, Any] | None) -> LeaseRecord | None:
    if body is None:
        return None
    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=duration if isinstance(duration, int) and duration > 0 else 0,
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=transitions if isinstance(transitions, int) else 0,
        resource_version=meta.get("resourceVersion"),
    )


def micro_time(now: datetime) -> str:
    """The API's MicroTime format."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _same_term(a: LeaseRecord, b: LeaseRecord) -> bool:
    return (a.holder, a.renew_time, a.acquire_time, a.duration_seconds) == (
        b.holder, b.renew_time, b.acquire_time, b.duration_seconds
    )


def decide(
    record: LeaseRecord | None,
    previous: Observation | None,
    *,
    me: str,
    monotonic: float,
    wall: datetime,
    duration_seconds: int,
) -> Decision:
    """What to do with the Lease as just read (`record`), given what was seen before."""
    stamp = micro_time(wall)
    if record is None:
        spec = {"holderIdentity": me, "leaseDurationSeconds": duration_seconds, "acquireTime": stamp,
                "renewTime": stamp, "leaseTransitions": 0}
        return Decision(Action.CREATE, spec, None)
    observation = previous if previous is not None and _same_term(previous.record, record) else None
    observation = observation or Observation(record, monotonic)
    observation = Observation(record, observation.seen_at)
    if record.holder == me:
        spec = {"holderIdentity": me, "leaseDurationSeconds": duration_seconds, "renewTime": stamp}
        if not record.acquire_time:
            spec["acquireTime"] = stamp
        return Decision(Action.UPDATE, spec, observation)
    expired = monotonic - observation.seen_at > record.duration_seconds
    if record.holder and not expired:
        return Decision(Action.WAIT, None, observation)
    spec = {"holderIdentity": me, "leaseDurationSeconds": duration_seconds, "acquireTime": stamp,
            "renewTime": stamp, "leaseTransitions": record.transitions + 1}
    return Decision(Action.UPDATE, spec, observation)


def release_spec() -> dict[str, Any]:
    """What a leader stepping down writes: nobody holds the Lease, so another replica takes it at once."""
    return {"holderIdentity": None, "leaseDurationSeconds": 1}


def still_leading(*, last_renewed: float | None, monotonic: float, renew_deadline_seconds: float) -> bool:
    """A leader that could not renew within the deadline stops acting (the Lease expires later, after
    `leaseDurationSeconds`, so no other replica starts before this one has stopped)."""
    return last_renewed is not None and monotonic - last_renewed <= renew_deadline_seconds

"""Where a WarmPool's tuple is warm while its `spec.fleetRef` changes, and when an old host may let go (pure).

`status.fleet` ("namespace/name") names the RuntimeFleet whose pods hold the pool's tuple warm; it is
absent while the pool's own Deployment serves it. A move changes `spec.fleetRef` at once but
`status.fleet` only once the tuple is warm on every Ready pod of the new host: until then the old
fleet keeps the tuple (the pool is *leaving* it) and a dedicated Deployment keeps its pods. The old fleet
keeps it `LINGER_SECONDS` longer still (`status.leftFleet`, `status.movedAt`), so that clients following
the pool's host have moved before it refuses calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

HOST_FIELD = "fleet"
LEFT_FIELD = "leftFleet"
MOVED_AT_FIELD = "movedAt"
LINGER_SECONDS = 10.0


def fleet_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def host_of(status: Mapping[str, Any] | None) -> str | None:
    """The fleet the pool's tuple was last warm on, as its status records it; None: its own Deployment."""
    value = (status or {}).get(HOST_FIELD)
    return value if isinstance(value, str) and value.count("/") == 1 else None


def named_fleet(pool: Mapping[str, Any]) -> str | None:
    """The fleet `spec.fleetRef` names, "namespace/name" (the pool's namespace by default); None: dedicated."""
    ref = (pool.get("spec") or {}).get("fleetRef")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        return None
    namespace = ref.get("namespace") or (pool.get("metadata") or {}).get("namespace")
    return fleet_key(str(namespace), ref["name"])


def is_leaving(pool: Mapping[str, Any], fleet: str, now: datetime) -> bool:
    """A pool whose tuple `fleet` keeps although `spec.fleetRef` names another host: until it is warm there,
    then `LINGER_SECONDS` more."""
    if (pool.get("metadata") or {}).get("deletionTimestamp") or named_fleet(pool) == fleet:
        return False
    status = pool.get("status") or {}
    if host_of(status) == fleet:
        return True
    if status.get(LEFT_FIELD) != fleet:
        return False
    try:
        moved = datetime.fromisoformat(str(status.get(MOVED_AT_FIELD)).replace("Z", "+00:00"))
    except ValueError:
        return False
    return moved.tzinfo is not None and now - moved < timedelta(seconds=LINGER_SECONDS)


def moved_status(previous: str | None, now: datetime) -> dict[str, Any]:
    """What a pool's status records when its tuple is warm on a new host: the host it left, and when."""
    return {LEFT_FIELD: previous, MOVED_AT_FIELD: now.strftime("%Y-%m-%dT%H:%M:%SZ")}


def host_after(previous: str | None, fleet: str, warm_everywhere: bool) -> str | None:
    """`status.fleet` after the member's fleet looked at it: that fleet once the tuple is warm on all its Ready pods."""
    return fleet if warm_everywhere else previous


def dedicated_took_over(previous: str | None, dedicated_ready: bool) -> bool:
    """A pool back on its own Deployment: the fleet it left lets go once that Deployment is Ready."""
    return previous is not None and dedicated_ready

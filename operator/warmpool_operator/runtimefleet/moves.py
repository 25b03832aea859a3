"""Where a WarmPool's tuple is warm while its `spec.fleetRef` changes, and when an old host may let go (pure).

`status.fleet` ("namespace/name") names the RuntimeFleet whose pods hold the pool's tuple warm; it is
absent while the pool's own Deployment serves it. A move changes `spec.fleetRef` at once but
`status.fleet` only once the tuple is warm on every Ready pod of the new host: until then the old
fleet keeps the tuple (the pool is *leaving* it) and a dedicated Deployment keeps its pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HOST_FIELD = "fleet"


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


def is_leaving(pool: Mapping[str, Any], fleet: str) -> bool:
    """A pool that was warm on `fleet` and now names another host: `fleet` keeps its tuple until it is warm there."""
    if (pool.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return host_of(pool.get("status")) == fleet and named_fleet(pool) != fleet


def host_after(previous: str | None, fleet: str, warm_everywhere: bool) -> str | None:
    """`status.fleet` after the member's fleet looked at it: that fleet once the tuple is warm on all its Ready pods."""
    return fleet if warm_everywhere else previous


def may_retire_dedicated(previous: str | None, fleet: str, warm_everywhere: bool) -> bool:
    """A member's own Deployment is scaled to zero only once the fleet holds its tuple warm."""
    return host_after(previous, fleet, warm_everywhere) == fleet


def dedicated_took_over(previous: str | None, dedicated_ready: bool) -> bool:
    """A pool back on its own Deployment: the fleet it left lets go once that Deployment is Ready."""
    return previous is not None and dedicated_ready

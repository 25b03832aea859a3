"""Readings of a WarmPool's health: the Argo CD Lua check (run by a real Lua 5.1) and kstatus (as Flux reads it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lupa import lua51  # type: ignore[import-untyped]

HEALTH_LUA = (Path(__file__).resolve().parents[2] / "deploy" / "argocd" / "health.lua").read_text()


def argo_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run health.lua as Argo CD does: `obj` global, the returned table is the verdict (Lua 5.1, like gopher-lua)."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA)
    return {"status": str(result["status"]), "message": str(result["message"])}


def kstatus(obj: dict[str, Any]) -> tuple[str, str]:
    """The kstatus computation (what Flux's health checks use) for a custom resource, as (status, message).

    Deletion → Terminating; an unobserved generation → InProgress; Reconciling=True → InProgress;
    Stalled=True → Failed; otherwise Current (kstatus has no rule for custom kinds beyond these).
    """
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind")
        return "InProgress", f"{kind} generation is {generation}, but latest observed generation is {observed}"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return "InProgress", str(condition.get("message", ""))
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return "Failed", str(condition.get("message", ""))
    return "Current", "Resource is current"

"""What reconciliation asks of a prober, and where each runtime pod is probed (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from warmpool_contract import HTTP_PORT
from warmpool_operator.readyz import ReadyzReport
from warmpool_operator.render import CONTAINER_NAME


class Prober(Protocol):
    """What reconciliation needs: the /readyz reports of the pods that are not Ready."""

    async def read_pods(self, pods: Sequence[Mapping[str, Any]]) -> dict[str, ReadyzReport]: ...


def probe_target(pod: Mapping[str, Any]) -> tuple[str, int] | None:
    """The pod's IP and its runtime container's `http` port, or None before it has an IP."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    ordered = sorted(containers, key=lambda c: c.get("name") != CONTAINER_NAME)
    for container in ordered:
        for port in container.get("ports") or []:
            if port.get("name") == "http" and isinstance(port.get("containerPort"), int):
                return str(ip), int(port["containerPort"])
    return str(ip), HTTP_PORT

"""Pure pod status: phase, conditions and container statuses from the agent's view of its processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RUNTIME_SCHEME = "warmpool-local"
BACKOFF_INITIAL_S = 10.0
BACKOFF_CAP_S = 300.0
BACKOFF_RESET_AFTER_S = 600.0


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    started_at: str
    finished_at: str
    signal: int | None = None

    @property
    def reason(self) -> str:
        return "Completed" if self.exit_code == 0 else "Error"

    def as_dict(self, container_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "exitCode": self.exit_code, "reason": self.reason,
            "startedAt": self.started_at, "finishedAt": self.finished_at, "containerID": container_id,
        }
        if self.signal is not None:
            body["signal"] = self.signal
        return body


@dataclass(frozen=True)
class ContainerView:
    """One container as the agent sees it right now."""

    name: str
    image: str
    state: Literal["waiting", "running", "terminated"]
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    pid: int | None = None


def restart_delay(consecutive_failures: int, *, initial_s: float = BACKOFF_INITIAL_S,
                  cap_s: float = BACKOFF_CAP_S) -> float:
    """Kubelet-style crash-loop backoff: 0 for the first restart, then initial, doubling, capped."""
    if consecutive_failures <= 0:
        return 0.0
    return float(min(cap_s, initial_s * 2 ** (consecutive_failures - 1)))


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _container_status(view: ContainerView) -> dict[str, Any]:
    container_id = f"{RUNTIME_SCHEME}://{view.pid}" if view.pid else ""
    state: dict[str, Any]
    if view.state == "running":
        state = {"running": {"startedAt": view.started_at}}
    elif view.state == "terminated" and view.terminated is not None:
        state = {"terminated": view.terminated.as_dict(container_id)}
    else:
        waiting: dict[str, Any] = {"reason": view.reason or "ContainerCreating"}
        if view.message:
            waiting["message"] = view.message
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": "",
        "state": state,
        "lastState": {"terminated": view.last_terminated.as_dict("")} if view.last_terminated else {},
        "ready": view.ready,
        "restartCount": view.restart_count,
        "started": view.state == "running",
    }
    if container_id:
        status["containerID"] = container_id
    return status


def pod_phase(policy: str, views: Sequence[ContainerView]) -> str:
    """Pending until every container has started once; Succeeded/Failed when nothing will run again."""
    if all(v.state == "terminated" and v.terminated for v in views):
        finals = [v.terminated for v in views if v.terminated]
        if all(not should_restart(policy, t.exit_code) for t in finals):
            return "Succeeded" if all(t.exit_code == 0 for t in finals) else "Failed"
    started = all(v.state != "waiting" or v.restart_count > 0 or v.last_terminated for v in views)
    return "Running" if started else "Pending"


def _condition(kind: str, ok: bool, previous: Mapping[str, Mapping[str, Any]], now: str,
               reason: str | None = None) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(kind) or {}
    changed_at = before.get("lastTransitionTime") if before.get("status") == status else None
    condition: dict[str, Any] = {
        "type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": changed_at or now,
    }
    if reason and not ok:
        condition["reason"] = reason
    return condition


def pod_status(
    *, policy: str, views: Sequence[ContainerView], pod_ip: str | None, host_ip: str, start_time: str,
    previous: Mapping[str, Any], now: str, refusal: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The full `status` of a pod. refusal=(reason, message) marks a pod that can never run here:
    Failed for restartPolicy Never, otherwise Pending with the waiting reason on its containers."""
    earlier = {str(c.get("type")): c for c in previous.get("conditions") or () if isinstance(c, Mapping)}
    phase = pod_phase(policy, views)
    if refusal is not None and policy == "Never":
        phase = "Failed"
    ready = phase == "Running" and all(v.ready for v in views)
    not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            _condition("PodReadyToStartContainers", pod_ip is not None, earlier, now),
            _condition("Initialized", True, earlier, now),
            _condition("Ready", ready, earlier, now, not_ready),
            _condition("ContainersReady", ready, earlier, now, not_ready),
            _condition("PodScheduled", True, earlier, now),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [_container_status(v) for v in views],
    }
    if previous.get("qosClass"):
        status["qosClass"] = previous["qosClass"]  # set by the API server at creation, immutable
    if pod_ip is not None:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if refusal is not None:
        status["reason"], status["message"] = refusal
    return status


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether new differs from old in anything the agent reports (ignores server-set fields)."""
    return any(old.get(key) != value for key, value in new.items())

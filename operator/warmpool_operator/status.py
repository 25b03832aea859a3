"""Pure computation of a WarmPool's status: kstatus conditions, counters, and the Events worth posting.

Conditions follow the kstatus convention (Argo CD, Flux and kubectl wait read them): `Ready`,
`Reconciling` (work in progress) and `Stalled` (no progress without a change), each with its
own `observedGeneration`; `lastTransitionTime` moves only when a condition's status flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from warmpool_operator.health import Problem, Progress
from warmpool_operator.ownership import ReplicaOwner, replica_owner
from warmpool_operator.render import selector_string
from warmpool_operator.spec import WarmPoolSpec

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
CONDITION_TYPES = (READY, RECONCILING, STALLED)


@dataclass(frozen=True, slots=True)
class Notice:
    """A Kubernetes Event to post on the WarmPool."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Cond:
    status: bool
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    *, generation: int, wanted: Mapping[str, Cond], previous: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Condition objects in a fixed order, keeping lastTransitionTime unless the status flipped."""
    before = {c.get("type"): c for c in previous if isinstance(c, Mapping)}
    out: list[dict[str, Any]] = []
    for kind in CONDITION_TYPES:
        cond = wanted[kind]
        status = "True" if cond.status else "False"
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": since or timestamp(now),
            }
        )
    return out


def judge(*, progress: Progress, problem: Problem | None) -> dict[str, Cond]:
    """The three conditions from what the rollout shows."""
    if problem is not None:
        return {
            READY: Cond(False, problem.reason, problem.message),
            RECONCILING: Cond(False, "Stalled", f"no progress until this is fixed: {problem.reason}"),
            STALLED: Cond(True, problem.reason, problem.message),
        }
    counts = f"{progress.ready}/{progress.desired} pods Ready, {progress.updated} on the current spec"
    if progress.rolled_out:
        return {
            READY: Cond(True, "PoolWarm", counts),
            RECONCILING: Cond(False, "RolledOut", "every pod runs the current spec"),
            STALLED: Cond(False, "NoProblem", "no blocking problem observed"),
        }
    if not progress.observed and progress.replicas == 0:
        step = "Creating"
    elif not progress.observed or progress.updated < progress.desired:
        step = "RollingOut"
    elif progress.replicas > progress.desired:
        step = "RemovingOldPods"
    else:
        step = "Prewarming"
    return {
        READY: Cond(False, "Progressing", counts),
        RECONCILING: Cond(True, step, counts),
        STALLED: Cond(False, "NoProblem", "no blocking problem observed"),
    }


def compute_status(
    *,
    name: str,
    generation: int,
    spec: WarmPoolSpec,
    progress: Progress,
    problem: Problem | None,
    previous: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The status fields the reconciler owns (the autoscaler owns missRatio and lastScaleTime)."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions(
            generation=generation,
            wanted=judge(progress=progress, problem=problem),
            previous=previous.get("conditions") or [],
            now=now,
        ),
        "replicas": progress.replicas,
        "readyReplicas": progress.ready,
        "warmInstances": progress.ready * spec.warm_instances_per_tuple,
        # Effective values (cluster defaults applied): what `kubectl get` shows, the manifest may not say.
        "warmInstancesPerTuple": spec.warm_instances_per_tuple,
        "maxTotalWarm": spec.max_total_warm,
        "selector": selector_string(name),
        "module": spec.module.short_hash,
        "readiness": f"{progress.ready}/{progress.desired}",
    }
    if replica_owner(spec) is ReplicaOwner.SPEC:
        status["desiredReplicas"] = spec.replicas
    return status


def invalid_spec_status(
    *, generation: int, reason: str, message: str, previous: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Status of a pool that cannot progress until someone changes something (its spec, RBAC); nothing else
    is touched."""
    wanted = {
        READY: Cond(False, reason, message),
        RECONCILING: Cond(False, "Stalled", f"no progress until the spec is fixed: {reason}"),
        STALLED: Cond(True, reason, message),
    }
    previous_conditions = previous.get("conditions") or []
    return {
        "observedGeneration": generation,
        "conditions": conditions(generation=generation, wanted=wanted, previous=previous_conditions, now=now),
    }


def scaling_status(
    *,
    desired_replicas: int,
    miss_ratio: float | None,
    last_scale_time: datetime | None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Status fields the autoscaler writes (through `KubeApi.patch_status`) after a decision."""
    out: dict[str, Any] = {"desiredReplicas": desired_replicas}
    if miss_ratio is not None:
        out["missRatio"] = round(miss_ratio, 6)
    if last_scale_time is not None:
        out["lastScaleTime"] = timestamp(last_scale_time)
    if reason is not None:
        out["scalingReason"] = reason
    return out


SCALING_OFF_REASON = "autoscaling disabled: spec.replicas decides the pod count"


def scaling_off_status() -> dict[str, Any]:
    """What the autoscaler leaves behind when it is turned off: no miss ratio it no longer measures."""
    return {"scalingReason": SCALING_OFF_REASON, "missRatio": None}


def notices(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Notice]:
    """Events on transitions only, so a pool stuck for hours does not flood the Event stream."""
    old = _by_type(previous)
    new = _by_type(current)
    out: list[Notice] = []
    stalled, was_stalled = new.get(STALLED), old.get(STALLED)
    if stalled and stalled.get("status") == "True":
        renewed = not was_stalled or was_stalled.get("status") != "True"
        if renewed or (was_stalled or {}).get("reason") != stalled.get("reason"):
            out.append(Notice("Warning", str(stalled.get("reason")), str(stalled.get("message"))))
    elif was_stalled and was_stalled.get("status") == "True":
        out.append(Notice("Normal", "Recovered", f"no longer blocked by {was_stalled.get('reason')}"))
    ready, was_ready = new.get(READY), old.get(READY)
    if ready and ready.get("status") == "True" and (not was_ready or was_ready.get("status") != "True"):
        out.append(Notice("Normal", "PoolWarm", str(ready.get("message"))))
    return out


def _by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}

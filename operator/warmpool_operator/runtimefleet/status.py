"""Pure status of a RuntimeFleet and of its member WarmPools (kstatus conditions, counters)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from warmpool_operator.health import Problem, Progress, redact_text
from warmpool_operator.runtimefleet.render import selector_string
from warmpool_operator.runtimefleet.spec import RuntimeFleet
from warmpool_operator.runtimefleet.tuples import Standing
from warmpool_operator.spec import WarmPool
from warmpool_operator.status import READY, RECONCILING, STALLED, Cond, conditions, judge


def fleet_status(
    fleet: RuntimeFleet,
    *,
    progress: Progress,
    problem: Problem | None,
    tuples: int,
    refused: int,
    warm_instances: int,
    now: datetime,
) -> dict[str, Any]:
    wanted = dict(judge(progress=progress, problem=problem))
    if wanted[READY].status:
        wanted[READY] = Cond(True, "FleetReady", wanted[READY].message)
    generation = fleet.meta.generation
    return {
        "observedGeneration": generation,
        "conditions": conditions(generation=generation, wanted=wanted,
                                 previous=fleet.status.get("conditions") or [], now=now),
        "replicas": progress.replicas,
        "readyReplicas": progress.ready,
        "readiness": f"{progress.ready}/{progress.desired}",
        "selector": selector_string(fleet.meta.name),
        "tuples": tuples,
        "refused": refused,
        "warmInstances": warm_instances,
    }


def stalled_member_status(pool: WarmPool, problem: Problem, now: datetime) -> dict[str, Any]:
    """A member the fleet does not host (refused, or no such fleet): Stalled, counters zeroed."""
    wanted = {
        READY: Cond(False, problem.reason, problem.message),
        RECONCILING: Cond(False, "Stalled", f"no progress until this is fixed: {problem.reason}"),
        STALLED: Cond(True, problem.reason, problem.message),
    }
    return {
        **_member_common(pool, now, wanted),
        "replicas": 0,
        "readyReplicas": 0,
        "warmInstances": 0,
        "readiness": "0/0",
    }


def member_status(
    pool: WarmPool, fleet: RuntimeFleet, progress: Progress, where: Standing, now: datetime
) -> dict[str, Any]:
    """A hosted member: Ready once its tuple is warm on every Ready pod of the fleet that answered."""
    fleet_name = f"RuntimeFleet {fleet.where}"
    counts = f"warm on {where.warm_pods}/{where.pods} Ready pods of {fleet_name}"
    if where.failure is not None:
        pod, reason = where.failure
        message = (f"pod {pod} of {fleet_name} failed to load tenant {pool.spec.tenant} module "
                   f"{pool.spec.module.short_hash}: {redact_text(reason) or 'no reason given'}")
        wanted = {
            READY: Cond(False, "ModuleFailed", message),
            RECONCILING: Cond(False, "Stalled", "no progress until this is fixed: ModuleFailed"),
            STALLED: Cond(True, "ModuleFailed", message),
        }
    elif where.pods > 0 and where.warm_pods == where.pods:
        wanted = {
            READY: Cond(True, "TupleWarm", counts),
            RECONCILING: Cond(False, "Hosted", f"hosted by {fleet_name}"),
            STALLED: Cond(False, "NoProblem", "no blocking problem observed"),
        }
    else:
        step = "Prewarming" if where.pods else "WaitingForFleet"
        detail = counts if where.pods else f"{fleet_name} has no Ready pod yet"
        wanted = {
            READY: Cond(False, "Progressing", detail),
            RECONCILING: Cond(True, step, detail),
            STALLED: Cond(False, "NoProblem", "no blocking problem observed"),
        }
    return {
        **_member_common(pool, now, wanted),
        "replicas": progress.replicas,
        "readyReplicas": where.warm_pods,
        "warmInstances": where.warm_instances,
        "readiness": f"{where.warm_pods}/{progress.desired}",
        "selector": selector_string(fleet.meta.name),
    }


def _member_common(pool: WarmPool, now: datetime, wanted: Mapping[str, Cond]) -> dict[str, Any]:
    generation = pool.meta.generation
    return {
        "observedGeneration": generation,
        "conditions": conditions(generation=generation, wanted=wanted,
                                 previous=pool.status.get("conditions") or [], now=now),
        "module": pool.spec.module.short_hash,
    }

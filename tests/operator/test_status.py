"""Status and conditions computed from what a reconciliation observed (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.operator.harness import warmpool_manifest
from warmpool_operator.health import Problem, Progress
from warmpool_operator.spec import parse_spec
from warmpool_operator.status import (
    compute_status,
    invalid_spec_status,
    judge,
    notices,
    scaling_status,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPEC = parse_spec(warmpool_manifest()["spec"])


def progress(**fields: Any) -> Progress:
    base: dict[str, Any] = {"desired": 2, "replicas": 2, "updated": 2, "ready": 2, "available": 2, "observed": True}
    base.update(fields)
    return Progress(**base)


def status_of(prog: Progress, problem: Problem | None = None, previous: dict[str, Any] | None = None,
              now: datetime = T0, generation: int = 1) -> dict[str, Any]:
    return compute_status(name="echo", generation=generation, spec=SPEC, progress=prog, problem=problem,
                          previous=previous or {}, now=now)


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_first_reconcile_is_not_ready_and_reconciling() -> None:
    fresh = Progress(desired=2, replicas=0, updated=0, ready=0, available=0, observed=False)
    status = status_of(fresh)
    assert conds(status) == {
        "Ready": ("False", "Progressing"),
        "Reconciling": ("True", "Creating"),
        "Stalled": ("False", "NoProblem"),
    }
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert status["readiness"] == "0/2"


@pytest.mark.parametrize(
    ("fields", "step"),
    [
        ({"observed": False}, "RollingOut"),
        ({"updated": 1}, "RollingOut"),
        ({"replicas": 3, "ready": 2}, "RemovingOldPods"),
        ({"ready": 1, "available": 1}, "Prewarming"),
    ],
)
def test_rollout_steps(fields: dict[str, Any], step: str) -> None:
    assert judge(progress=progress(**fields), problem=None)["Reconciling"].reason == step


def test_rolled_out_pool_is_ready_with_counts() -> None:
    status = status_of(progress())
    assert conds(status)["Ready"] == ("True", "PoolWarm")
    assert conds(status)["Reconciling"][0] == "False"
    assert status["readyReplicas"] == 2
    assert status["warmInstances"] == 8
    assert status["desiredReplicas"] == 2
    assert status["module"] == SPEC.module.short_hash


def test_a_problem_stalls_the_pool() -> None:
    status = status_of(progress(ready=0), Problem("CrashLoopBackOff", "pod p is crash-looping"))
    assert conds(status) == {
        "Ready": ("False", "CrashLoopBackOff"),
        "Reconciling": ("False", "Stalled"),
        "Stalled": ("True", "CrashLoopBackOff"),
    }


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = status_of(progress(ready=0))
    later = status_of(progress(ready=0), previous=first, now=T0 + timedelta(minutes=5))
    assert later == first  # nothing to write
    ready = status_of(progress(), previous=first, now=T0 + timedelta(minutes=9))
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times["Ready"] == "2025-01-01T00:09:00Z"
    assert times["Stalled"] == "2025-01-01T00:00:00Z"


def test_autoscaled_pools_leave_desired_replicas_to_the_autoscaler() -> None:
    auto = parse_spec({**warmpool_manifest()["spec"], "autoscaling": {"enabled": True}})
    status = compute_status(name="echo", generation=1, spec=auto, progress=progress(), problem=None,
                            previous={}, now=T0)
    assert "desiredReplicas" not in status
    assert "missRatio" not in status


def test_invalid_spec_status_names_the_problem() -> None:
    status = invalid_spec_status(generation=4, reason="InvalidSpec", message="spec.tenant: bad", previous={}, now=T0)
    assert conds(status)["Stalled"] == ("True", "InvalidSpec")
    assert status["observedGeneration"] == 4


def test_events_are_posted_on_transitions_only() -> None:
    progressing = status_of(progress(ready=0))
    stuck = status_of(progress(ready=0), Problem("Unschedulable", "no node"), previous=progressing)
    assert [(n.type, n.reason) for n in notices(progressing, stuck)] == [("Warning", "Unschedulable")]
    assert notices(stuck, stuck) == []
    other = status_of(progress(ready=0), Problem("CrashLoopBackOff", "boom"), previous=stuck)
    assert [n.reason for n in notices(stuck, other)] == ["CrashLoopBackOff"]
    healthy = status_of(progress(), previous=other)
    assert [(n.type, n.reason) for n in notices(other, healthy)] == [("Normal", "Recovered"), ("Normal", "PoolWarm")]
    assert notices(healthy, healthy) == []


def test_scaling_status_for_the_autoscaler() -> None:
    assert scaling_status(desired_replicas=4, miss_ratio=0.0123456789, last_scale_time=T0) == {
        "desiredReplicas": 4,
        "missRatio": 0.012346,
        "lastScaleTime": "2025-01-01T00:00:00Z",
    }
    assert scaling_status(desired_replicas=1, miss_ratio=None, last_scale_time=None) == {"desiredReplicas": 1}

"""Operator metrics of a pool's status: conditions and pod counts per namespace/warmpool, dropped on deletion."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from warmpool_operator.metrics import OperatorMetrics, register_process_collectors

pytestmark = pytest.mark.unit


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def status(ready: str, readiness: str) -> dict[str, object]:
    return {
        "readiness": readiness,
        "conditions": [
            {"type": "Ready", "status": ready, "reason": "Progressing"},
            {"type": "Stalled", "status": "False", "reason": "Progressing"},
        ],
    }


def test_conditions_and_pod_counts_are_published_per_pool() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics.create(registry)
    metrics.record_status("team-a", "classify", status("False", "0/2"))
    pool = {"namespace": "team-a", "warmpool": "classify"}
    assert value(registry, "warmpool_pool_condition", **pool, condition="Ready", status="False") == 1
    assert value(registry, "warmpool_pool_condition", **pool, condition="Ready", status="True") == 0
    assert value(registry, "warmpool_pool_condition", **pool, condition="Stalled", status="False") == 1
    assert value(registry, "warmpool_pool_replicas", **pool, state="desired") == 2
    assert value(registry, "warmpool_pool_replicas", **pool, state="ready") == 0

    metrics.record_status("team-a", "classify", status("True", "2/2"))
    assert value(registry, "warmpool_pool_condition", **pool, condition="Ready", status="False") == 0
    assert value(registry, "warmpool_pool_condition", **pool, condition="Ready", status="True") == 1
    assert value(registry, "warmpool_pool_replicas", **pool, state="ready") == 2


def test_a_deleted_pool_leaves_no_series_and_other_pools_keep_theirs() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics.create(registry)
    metrics.record_status("team-a", "gone", status("False", "0/1"))
    metrics.record_status("team-a", "kept", status("True", "1/1"))
    metrics.errors.labels("team-a", "gone", "Unschedulable").inc()
    metrics.forget_pool("team-a", "gone")
    names = {(s.name, s.labels.get("warmpool")) for family in registry.collect() for s in family.samples}
    assert not any(pool == "gone" for _, pool in names)
    assert ("warmpool_pool_condition", "kept") in names


def test_malformed_status_fields_publish_nothing() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics.create(registry)
    metrics.record_status("team-a", "odd", {"readiness": "n/a", "conditions": ["Ready", {"status": "True"}]})
    assert [s for family in registry.collect() for s in family.samples if s.name.startswith("warmpool_pool")] == []


def test_the_registry_carries_the_standard_process_series() -> None:
    registry = CollectorRegistry()
    register_process_collectors(registry)
    names = {family.name for family in registry.collect()}
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "python_info"} <= names

"""The seam the autoscaler uses (`Controller.ready_pod_targets`, `Controller.apply_scaling`), against
the kmock API emulator, interleaved with reconciliation of the same pool."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import TEST_CONFIG, PodSpec, get_pool, make_client, simulate_rollout, warmpool_manifest
from warmpool_operator.controller import Controller
from warmpool_operator.kinds import DEPLOYMENTS, WARMPOOLS
from warmpool_operator.kube import KubeApi
from warmpool_operator.metrics import OperatorMetrics
from warmpool_operator.probe import HttpProber

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def test_scaling_decisions_are_applied_and_kept_by_reconciliation(cluster: EmulatedCluster) -> None:
    api: KubeApi = make_client(cluster.connection())
    prober = HttpProber(timeout_seconds=1.0, max_pods=0)
    ctl = Controller(
        config=TEST_CONFIG,
        api=api,
        prober=prober,
        metrics=OperatorMetrics.create(CollectorRegistry()),
        clock=lambda: NOW,
        namespaces=(cluster.namespace,),
    )
    ns = cluster.namespace
    try:
        manifest = warmpool_manifest("scaled", autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 8})
        await cluster.api.create(WARMPOOLS, ns, manifest)
        assert await ctl.reconcile(ns, "scaled", trigger="test") is not None
        await simulate_rollout(cluster, "scaled", 2, PodSpec(ready=True, pod_ip="127.0.0.7", http_port=18080))

        targets = await ctl.ready_pod_targets(ns, "scaled")
        assert sorted(targets) == [("scaled-pod-0", "127.0.0.7", 18080), ("scaled-pod-1", "127.0.0.7", 18080)]

        assert await ctl.apply_scaling(ns, "scaled", desired_replicas=4, miss_ratio=0.05) is True
        deployment = await cluster.api.get(DEPLOYMENTS, ns, "scaled")
        pool = await get_pool(cluster, "scaled")
        assert deployment is not None
        assert pool is not None
        assert deployment["spec"]["replicas"] == 4
        assert pool["status"]["desiredReplicas"] == 4
        assert pool["status"]["missRatio"] == 0.05
        assert pool["status"]["lastScaleTime"] == "2025-06-01T12:00:00Z"

        versions = (deployment["metadata"]["resourceVersion"], pool["metadata"]["resourceVersion"])
        assert await ctl.apply_scaling(ns, "scaled", desired_replicas=4, miss_ratio=0.05) is False
        deployment = await cluster.api.get(DEPLOYMENTS, ns, "scaled")
        pool = await get_pool(cluster, "scaled")
        assert deployment is not None
        assert pool is not None
        assert (deployment["metadata"]["resourceVersion"], pool["metadata"]["resourceVersion"]) == versions

        await ctl.reconcile(ns, "scaled", trigger="test")
        deployment = await cluster.api.get(DEPLOYMENTS, ns, "scaled")
        pool = await get_pool(cluster, "scaled")
        assert deployment is not None
        assert pool is not None
        assert deployment["spec"]["replicas"] == 4
        assert (pool["status"]["desiredReplicas"], pool["status"]["missRatio"]) == (4, 0.05)
        assert pool["status"]["readiness"] == "2/4"
    finally:
        await prober.close()
        await api.close()

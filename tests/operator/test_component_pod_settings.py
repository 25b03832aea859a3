"""The running operator against the kmock API emulator: a pool's PodDisruptionBudget follows its spec."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.harness import Cluster, wait_for, warmpool_manifest
from tests.operator.scenarios import all_children
from warmpool_operator.kinds import DEPLOYMENTS, DISRUPTION_BUDGETS, WARMPOOLS
from warmpool_operator.render import ANNOTATION_BUDGET, selector_labels

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


async def test_budget_is_created_restored_and_deleted_with_the_field(cluster: Cluster) -> None:
    runtime = {"podDisruptionBudget": {"minAvailable": 1}}
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("guarded", runtime=runtime))
    async with cluster.operator():
        await wait_for(lambda: all_children(cluster, "guarded"), what="children")
        budget = await wait_for(lambda: cluster.api.get(DISRUPTION_BUDGETS, cluster.namespace, "guarded"),
                                what="the PodDisruptionBudget")
        assert budget["spec"] == {"selector": {"matchLabels": selector_labels("guarded")}, "minAvailable": 1}
        assert budget["metadata"]["ownerReferences"][0]["kind"] == "WarmPool"

        # Deleted by hand: the child watch brings it back.
        await cluster.api.delete(DISRUPTION_BUDGETS, cluster.namespace, "guarded")

        async def recreated() -> dict[str, Any] | None:
            found = await cluster.api.get(DISRUPTION_BUDGETS, cluster.namespace, "guarded")
            return found if found and found["metadata"]["uid"] != budget["metadata"]["uid"] else None

        await wait_for(recreated, what="the PodDisruptionBudget recreated")

        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "guarded",
                                      {"spec": {"runtime": {"podDisruptionBudget": None}}})

        async def deleted() -> bool:
            gone = await cluster.api.get(DISRUPTION_BUDGETS, cluster.namespace, "guarded") is None
            deployment = await cluster.api.get(DEPLOYMENTS, cluster.namespace, "guarded") or {}
            unmarked = ANNOTATION_BUDGET not in (deployment.get("metadata", {}).get("annotations") or {})
            return gone and unmarked

        await wait_for(deleted, what="the PodDisruptionBudget deleted and the Deployment unmarked")

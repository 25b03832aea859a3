"""The API requests reconciliation makes under server-side apply, counted on the emulated API."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.operator.conftest import EmulatedCluster
from tests.operator.emulator import is_operator_write
from tests.operator.harness import operator_running, wait_for, warmpool_manifest
from tests.operator.scenarios import all_children
from warmpool_operator.kinds import WARMPOOLS

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]

CHILDREN = {"configmaps", "services", "deployments"}


def child_writes(cluster: EmulatedCluster) -> Counter[tuple[str, str, str]]:
    """(method, content type, resource) of the operator's writes to the pool's children."""
    found: Counter[tuple[str, str, str]] = Counter()
    for request in cluster.emulator:
        if is_operator_write(request) and request.resource is not None and request.resource.plural in CHILDREN:
            method = str(getattr(request.method, "value", request.method)).upper()
            content_type = (request.headers or {}).get("Content-Type", "").split(";")[0]
            found[(method, content_type, request.resource.plural)] += 1
    return found


def applies(plurals: set[str]) -> Counter[tuple[str, str, str]]:
    return Counter({("PATCH", "application/apply-patch+yaml", plural): 1 for plural in plurals})


async def test_one_apply_per_child_on_creation_none_when_settled_and_only_what_changed(
    cluster: EmulatedCluster,
) -> None:
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("counted"))
    async with operator_running(cluster) as running:
        await wait_for(lambda: all_children(cluster, "counted"), what="children")

        async def resynced(after: float) -> bool:
            return await running.reconciles(trigger="resync") >= after + 2

        await wait_for(lambda: resynced(0), what="two resyncs")
        # Creation: each child applied once (the apply creates it); settled resyncs write nothing.
        assert child_writes(cluster) == applies(CHILDREN)

        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "counted", {"spec": {"warmInstancesPerTuple": 2}})

        async def applied_again() -> Any:
            return ("PATCH", "application/apply-patch+yaml", "deployments") in child_writes(cluster) - applies(CHILDREN)

        await wait_for(applied_again, what="the change applied")
        resyncs = await running.reconciles(trigger="resync")
        await wait_for(lambda: resynced(resyncs), what="two more resyncs")
        # The warm count changes the runtime config (ConfigMap) and the pods (Deployment): the
        # Service's intent is unchanged and it is not written; nor is anything after that.
        assert child_writes(cluster) - applies(CHILDREN) == applies({"configmaps", "deployments"})

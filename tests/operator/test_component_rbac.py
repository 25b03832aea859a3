"""RBAC refusing the operator a verb on a child kind (emulated 403): the pool says which, other pools go on.

tests/e2e/test_operator_rbac.py does the same with real RBAC on the local control plane.
"""

from __future__ import annotations

from typing import Any

import kmock
import pytest

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import condition, events_for, operator_running, wait_for, warmpool_manifest
from tests.operator.scenarios import all_children, pool_with
from warmpool_operator.kinds import SERVICES, WARMPOOLS

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


async def test_a_forbidden_child_write_stalls_that_pool_only(cluster: EmulatedCluster) -> None:
    allowed = False

    def refuse_services_in_pools(request: kmock.Request) -> Any:
        if allowed or request.namespace != "pools":
            raise NotImplementedError  # the emulator's normal handling
        raise kmock.KubernetesError(
            status=403, reason="Forbidden",
            message='services is forbidden: User "system:serviceaccount:ops:warmpool" cannot create resource '
                    '"services" in API group "" in the namespace "pools"',
        )

    # Whether the child is created by a POST or by a server-side apply (a PATCH), RBAC says `create`.
    for action in (kmock.action.CREATE, kmock.action.UPDATE):
        cluster.emulator[action, kmock.resource("v1/services")] << refuse_services_in_pools
    await cluster.api.create(WARMPOOLS, "pools", warmpool_manifest("denied"))
    await cluster.api.create(WARMPOOLS, "other", warmpool_manifest("allowed"))
    async with operator_running(cluster, namespaces=["pools", "other"]):
        pool = await wait_for(lambda: pool_with(cluster, "denied", "Stalled", "True", reason="Forbidden"),
                              what="Stalled=Forbidden")
        message = condition(pool, "Stalled")["message"]
        assert message.startswith("the operator may not create services in namespace pools: services is forbidden")
        assert condition(pool, "Ready")["status"] == "False"
        await wait_for(lambda: events_for(cluster, "denied", "Forbidden"), what="a Warning Event")

        other = await wait_for(lambda: cluster.api.get(SERVICES, "other", "allowed"), what="the other pool's Service")
        assert other is not None
        other_pool = await cluster.api.get(WARMPOOLS, "other", "allowed")
        assert condition(other_pool, "Stalled")["status"] == "False"

        allowed = True  # RBAC fixed: the retries with backoff pick it up
        await wait_for(lambda: all_children(cluster, "denied"), what="the children once allowed")
        await wait_for(lambda: pool_with(cluster, "denied", "Stalled", "False"), what="Stalled cleared")

"""The operator's metrics, liveness (failing once its RBAC is revoked) and peering on the real API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import RealCluster
from tests.operator.harness import (
    echo_module,
    operator_running,
    provide_modules,
    wait_for,
    warmpool_manifest,
    with_config,
)
from tests.operator.runtime_pods import free_port
from tests.operator.scenarios import all_children
from warmpool_operator.kinds import PEERINGS, WARMPOOLS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SERVICE_ACCOUNT = "warmpool-operator"
# What the operator does in a watched namespace, as the Helm chart grants it.
POOL_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["tensorwasm.dev"], "resources": ["warmpools"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["tensorwasm.dev"], "resources": ["warmpools/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["services", "configmaps"],
     "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
DISCOVERY_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]


@pytest.fixture
async def real(crds: LocalCluster, namespace: str) -> AsyncIterator[RealCluster]:
    crds.stop_operator()  # these tests run their own operator for this namespace
    async with RealCluster(crds, namespace) as view:
        yield view


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_metrics_count_reconciles_and_child_writes_against_the_real_api(real: RealCluster) -> None:
    port = free_port("127.0.0.1")
    await provide_modules(real)
    await real.api.create(WARMPOOLS, real.namespace, warmpool_manifest("counted", module=echo_module()))
    async with operator_running(real, config=with_config(metrics_host="127.0.0.1", metrics_port=port)):
        await wait_for(lambda: all_children(real, "counted"), what="children")

        async def exposed() -> str | None:
            status, text = await fetch(f"http://127.0.0.1:{port}/metrics")
            return text if status == 200 and 'result="ok",trigger="create"' in text else None

        text = await wait_for(exposed, what="reconcile metrics")
    for kind in ("ConfigMap", "Service", "Deployment"):
        assert f'warmpool_operator_child_writes_total{{kind="{kind}",verb="create"}} 1.0' in text
    assert "warmpool_operator_reconcile_duration_seconds_bucket" in text


@pytest.fixture
def service_account(crds: LocalCluster, namespace: str) -> Iterator[str]:
    """A ServiceAccount with the operator's rights in `namespace`; yields a token of it."""
    name = f"{SERVICE_ACCOUNT}-{namespace}"
    ns = f"--namespace={namespace}"
    crds.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, ns)
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]
    for manifest in (
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}, "rules": POOL_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVICE_ACCOUNT}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": DISCOVERY_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}},
    ):
        crds.apply(manifest)
    try:
        yield crds.kubectl("create", "token", SERVICE_ACCOUNT, ns).stdout.strip()
    finally:
        crds.kubectl("delete", f"clusterrolebinding/{name}", f"clusterrole/{name}", "--ignore-not-found")


async def test_liveness_stays_up_once_the_operator_loses_its_rbac(
    real: RealCluster, service_account: str
) -> None:
    port = free_port("127.0.0.1")
    config = with_config(health_host="127.0.0.1", health_port=port)
    async with RealCluster(real.local, real.namespace, token=service_account) as own:
        await provide_modules(real)
        await real.api.create(WARMPOOLS, real.namespace, warmpool_manifest("guarded", module=echo_module()))
        async with operator_running(own, config=config):
            # With the chart's rights it works: children created, liveness fine.
            await wait_for(lambda: all_children(real, "guarded"), what="children made with the operator's RBAC")

            async def answer() -> tuple[int, str] | None:
                try:
                    return await fetch(f"http://127.0.0.1:{port}/healthz")
                except aiohttp.ClientConnectionError:
                    return None

            status, text = await wait_for(answer, what="the liveness endpoint")
            assert status == 200
            assert json.loads(text)["alive"] is True

            real.local.kubectl("delete", "rolebinding", SERVICE_ACCOUNT, f"--namespace={real.namespace}")

            # Liveness is the process's, not the API's: lost RBAC is reported, never answered by a restart.
            for _ in range(3):
                await asyncio.sleep(1)
                found = await answer()
                assert found is not None
                assert found[0] == 200, found


async def test_the_peering_object_is_created_and_the_replica_acts(real: RealCluster) -> None:
    await provide_modules(real)
    await real.api.create(WARMPOOLS, real.namespace, warmpool_manifest("peered", module=echo_module()))
    assert await real.api.get(PEERINGS, real.namespace, "warmpool") is None
    config = with_config(standalone=False, leader_election=False, peering_name="warmpool")
    async with operator_running(real, config=config):
        await wait_for(lambda: all_children(real, "peered"), what="children while peering is mandatory")

        async def registered() -> dict[str, Any] | None:
            found = await real.api.get(PEERINGS, real.namespace, "warmpool")
            return found if found and found.get("status") else None

        peering = await wait_for(registered, what="this replica recorded in the peering object")
        (entry,) = peering["status"].values()
        assert entry["priority"] == 0
        assert entry["lifetime"] == 30

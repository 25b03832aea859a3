"""RBAC on the real API server refusing the operator `create` on Services in one namespace only."""

from __future__ import annotations

import copy
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import RealCluster
from tests.e2e.test_operator_endpoints import DISCOVERY_RULES, POOL_RULES, SERVICE_ACCOUNT
from tests.operator.harness import (
    condition,
    echo_module,
    events_for,
    get_pool,
    operator_running,
    provide_modules,
    wait_for,
    warmpool_manifest,
)
from tests.operator.scenarios import all_children, pool_with
from warmpool_operator.kinds import WARMPOOLS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def without_service_creation() -> list[dict[str, Any]]:
    rules = copy.deepcopy(POOL_RULES)
    for rule in rules:
        if rule["resources"] == ["services", "configmaps"]:
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != "create"]
    rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]})
    return rules


def role(namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}, "rules": rules}


@pytest.fixture
def other_namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def token(crds: LocalCluster, namespace: str, other_namespace: str) -> Iterator[str]:
    """The operator's ServiceAccount: full rights in `other_namespace`, no Service creation in `namespace`."""
    cluster_role = f"{SERVICE_ACCOUNT}-{namespace}"
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]
    crds.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, f"--namespace={namespace}")
    for where, rules in ((namespace, without_service_creation()), (other_namespace, POOL_RULES)):
        crds.apply(role(where, rules))
        crds.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": SERVICE_ACCOUNT, "namespace": where}, "subjects": subject,
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVICE_ACCOUNT}})
    crds.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": cluster_role}, "rules": DISCOVERY_RULES})
    crds.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": cluster_role}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}})
    try:
        yield crds.kubectl("create", "token", SERVICE_ACCOUNT, f"--namespace={namespace}").stdout.strip()
    finally:
        crds.kubectl("delete", f"clusterrolebinding/{cluster_role}", f"clusterrole/{cluster_role}",
                     "--ignore-not-found")


@pytest.fixture
async def views(crds: LocalCluster, namespace: str, other_namespace: str) -> AsyncIterator[tuple[RealCluster, ...]]:
    crds.stop_operator()  # the session's (admin) operator would act on the same pools
    async with RealCluster(crds, namespace) as denied, RealCluster(crds, other_namespace) as allowed:
        yield denied, allowed


async def test_a_forbidden_service_creation_stalls_that_pool_only(
    crds: LocalCluster, views: tuple[RealCluster, RealCluster], token: str
) -> None:
    denied, allowed = views
    for view, name in ((denied, "denied"), (allowed, "allowed")):
        await provide_modules(view)
        await view.api.create(WARMPOOLS, view.namespace, warmpool_manifest(name, module=echo_module()))
    async with RealCluster(crds, denied.namespace, token=token) as own, \
            operator_running(own, namespaces=[denied.namespace, allowed.namespace]):
        pool = await wait_for(lambda: pool_with(denied, "denied", "Stalled", "True", reason="Forbidden"),
                              what="Stalled=Forbidden")
        message = condition(pool, "Stalled")["message"]
        assert message.startswith(f"the operator may not create services in namespace {denied.namespace}: ")
        assert 'cannot create resource "services"' in message  # the API server's own words
        await wait_for(lambda: events_for(denied, "denied", "Forbidden"), what="a Warning Event")

        await wait_for(lambda: all_children(allowed, "allowed"), what="the other namespace's pool's children")
        assert condition(await get_pool(allowed, "allowed"), "Stalled")["status"] == "False"

        crds.apply(role(denied.namespace, POOL_RULES))  # RBAC fixed: the backoff retries pick it up
        await wait_for(lambda: all_children(denied, "denied"), what="the children once Services may be created")
        await wait_for(lambda: pool_with(denied, "denied", "Stalled", "False"), what="Stalled cleared")

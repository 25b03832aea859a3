"""Fleet reconciliation through the real API adapter against the emulated API server.

No runtime pods run here (the emulator has no controllers), so members stay Prewarming; what is
checked is what the operator writes: children, members' statuses, and no write when nothing changed.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.operator.conftest import EmulatedCluster
from tests.operator.emulator import ApiServerEmulator, is_operator_write
from tests.operator.harness import TEST_CONFIG, make_client, warmpool_manifest
from warmpool_operator.controller import Controller
from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, RUNTIMEFLEETS, SECRETS, SERVICES, WARMPOOLS
from warmpool_operator.metrics import OperatorMetrics
from warmpool_operator.probe import HttpProber
from warmpool_operator.render import RenderOptions
from warmpool_operator.runtimefleet.members import fleet_missing
from warmpool_operator.runtimefleet.reader import ReadyzReader
from warmpool_operator.runtimefleet.reconcile import FleetOutcome, naming_pools, reconcile_fleet, stall_members
from warmpool_operator.runtimefleet.spec import parse_fleet

pytestmark = pytest.mark.component

SHA = "c" * 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPTIONS = RenderOptions(default_image="warmpool:test")


def member(name: str, namespace: str, tenant: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1",
        "kind": "WarmPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tenant": tenant, "module": {"sha256": SHA, "source": {"url": "http://127.0.0.1:9/m.wasm"}},
                 "fleetRef": {"name": "shared", "namespace": "pools"}, **extra},
    }


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    assert body is not None
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


async def run(cluster: EmulatedCluster, reader: ReadyzReader) -> FleetOutcome:
    body = await cluster.api.get(RUNTIMEFLEETS, "pools", "shared")
    assert body is not None
    return await reconcile_fleet(parse_fleet(body), store=cluster.api, reader=reader, options=OPTIONS, now=NOW)


def operator_writes(emulator: ApiServerEmulator, plural: str) -> int:
    return sum(1 for r in emulator if is_operator_write(r) and r.resource is not None and r.resource.plural == plural)


async def test_a_fleet_hosts_admitted_members_and_refuses_the_others(
    cluster: EmulatedCluster, emulator: ApiServerEmulator
) -> None:
    api, reader = cluster.api, ReadyzReader()
    try:
        await api.create(RUNTIMEFLEETS, "pools", {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                                                  "metadata": {"name": "shared"}, "spec": {"replicas": {"min": 2}}})
        await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
        await api.create(WARMPOOLS, "other", member("b", "other", "beta"))
        first = await run(cluster, reader)
        assert {w.kind for w in first.writes} == {"ConfigMap", "Secret", "Service", "Deployment"}

        deployment = await api.get(DEPLOYMENTS, "pools", "shared-runtime")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 2
        assert await api.get(SERVICES, "pools", "shared-runtime") is not None
        assert await api.get(DEPLOYMENTS, "pools", "a") is None  # no Deployment of the member's own
        config = await api.get(CONFIGMAPS, "pools", "shared-runtime-config")
        assert config is not None
        assert "tenant: acme" in config["data"]["config.yaml"]
        assert "beta" not in config["data"]["config.yaml"]

        refused = await api.get(WARMPOOLS, "other", "b")
        assert condition(refused, "Stalled")["reason"] == "NotAdmitted"
        assert condition(refused, "Stalled")["message"] == (
            "RuntimeFleet pools/shared admits WarmPools from its own namespace only "
            "(allowedPools.namespaces.from: Same); namespace other is another")
        hosted = await api.get(WARMPOOLS, "pools", "a")
        assert condition(hosted, "Reconciling")["reason"] == "WaitingForFleet"
        fleet = await api.get(RUNTIMEFLEETS, "pools", "shared")
        assert fleet is not None
        assert (fleet["status"]["tuples"], fleet["status"]["refused"]) == (1, 1)

        # Settled: a second pass writes nothing at all.
        before = sum(operator_writes(emulator, p) for p in ("configmaps", "secrets", "services", "deployments",
                                                             "warmpools", "runtimefleets"))
        again = await run(cluster, reader)
        after = sum(operator_writes(emulator, p) for p in ("configmaps", "secrets", "services", "deployments",
                                                            "warmpools", "runtimefleets"))
        assert again.writes == ()
        assert after == before
    finally:
        await reader.close()


async def test_a_new_member_rewrites_the_config_and_digests_only(
    cluster: EmulatedCluster, emulator: ApiServerEmulator
) -> None:
    api, reader = cluster.api, ReadyzReader()
    try:
        await api.create(RUNTIMEFLEETS, "pools", {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                                                  "metadata": {"name": "shared"}, "spec": {}})
        await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
        await run(cluster, reader)
        deployment = await api.get(DEPLOYMENTS, "pools", "shared-runtime")
        assert deployment is not None

        await api.create(SECRETS, "pools", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "callers"},
                                            "data": {"ci": base64.b64encode(b"s3cret-token").decode()}})
        await api.create(WARMPOOLS, "pools", member("b", "pools", "beta", auth={"secretRef": {"name": "callers"}}))
        outcome = await run(cluster, reader)
        assert sorted(w.kind for w in outcome.writes) == ["ConfigMap", "Secret"]
        same = await api.get(DEPLOYMENTS, "pools", "shared-runtime")
        assert same is not None
        assert same["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]

        tokens = await api.get(SECRETS, "pools", "shared-tokens")
        assert tokens is not None
        text = base64.b64decode(tokens["data"]["beta"]).decode()
        assert text == hashlib.sha256(b"s3cret-token").hexdigest() + "\n"
        config = await api.get(CONFIGMAPS, "pools", "shared-runtime-config")
        assert config is not None
        assert "tokenDigestsFile: /var/run/warmpool/tokens/beta" in config["data"]["config.yaml"]
        assert "s3cret" not in str(config) + str(tokens)

        # The member leaves: its tuple and its digests go, the pods stay.
        await api.delete(WARMPOOLS, "pools", "b")
        await run(cluster, reader)
        config = await api.get(CONFIGMAPS, "pools", "shared-runtime-config")
        assert config is not None
        assert "beta" not in config["data"]["config.yaml"]
        kept = await api.get(DEPLOYMENTS, "pools", "shared-runtime")
        assert kept is not None
        assert kept["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    finally:
        await reader.close()


async def test_members_of_a_deleted_fleet_are_stalled_naming_it(cluster: EmulatedCluster) -> None:
    api = cluster.api
    await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
    pools = await naming_pools(api, "pools", "shared", ())
    assert [p["metadata"]["name"] for p in pools] == ["a"]
    outcome = await stall_members(api, pools, fleet_missing("pools/shared"), NOW)
    assert outcome[("pools", "a")].problem is not None
    stalled = condition(await api.get(WARMPOOLS, "pools", "a"), "Stalled")
    assert stalled["status"] == "True"
    assert stalled["message"] == "RuntimeFleet pools/shared (spec.fleetRef) does not exist"


async def test_a_pool_joining_a_fleet_stops_its_own_pods_once_warm_there_and_leaving_a_deleted_fleet_stalls_it(
    cluster: EmulatedCluster,
) -> None:
    api = make_client(cluster.connection())
    ctl = Controller(config=TEST_CONFIG, api=api, prober=HttpProber(timeout_seconds=1.0, max_pods=0),
                     metrics=OperatorMetrics.create(CollectorRegistry()), clock=lambda: NOW)
    try:
        await api.create(WARMPOOLS, "pools", warmpool_manifest("moving", replicas=2))
        await ctl.reconcile("pools", "moving", trigger="test")
        dedicated = await api.get(DEPLOYMENTS, "pools", "moving")
        assert dedicated is not None
        assert dedicated["spec"]["replicas"] == 2

        await api.create(RUNTIMEFLEETS, "pools", {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                                                  "metadata": {"name": "shared"}, "spec": {}})
        body = await api.get(WARMPOOLS, "pools", "moving")
        assert body is not None
        spec = dict(body["spec"])
        # A merge patch: the pool's path source is removed explicitly (a path in another pod means nothing).
        spec["module"] = {"sha256": SHA, "source": {"url": "http://127.0.0.1:9/m.wasm", "path": None}}
        await api.merge_patch(WARMPOOLS, "pools", "moving", {"spec": {**spec, "fleetRef": {"name": "shared"}}})
        result = await ctl.reconcile("pools", "moving", trigger="test")
        assert result is not None
        # No fleet pod runs here, so the tuple is not warm on the fleet: the pool's own pods keep serving.
        assert result.outcome.writes == ()
        kept = await api.get(DEPLOYMENTS, "pools", "moving")
        assert kept is not None
        assert kept["spec"]["replicas"] == 2
        config = await api.get(CONFIGMAPS, "pools", "shared-runtime-config")
        assert config is not None
        assert f"sha256: {SHA}" in config["data"]["config.yaml"]

        # Once the fleet holds it warm (its status says so), the Deployment is scaled to zero.
        await api.patch_status(WARMPOOLS, "pools", "moving", {"fleet": "pools/shared"})
        result = await ctl.reconcile("pools", "moving", trigger="test")
        assert result is not None
        assert [(w.kind, w.name) for w in result.outcome.writes] == [("Deployment", "moving")]
        retired = await api.get(DEPLOYMENTS, "pools", "moving")
        assert retired is not None
        assert retired["spec"]["replicas"] == 0

        await api.delete(RUNTIMEFLEETS, "pools", "shared")
        result = await ctl.reconcile("pools", "moving", trigger="test")
        assert result is not None
        assert result.outcome.problem is not None
        assert result.outcome.problem.message == "RuntimeFleet pools/shared (spec.fleetRef) does not exist"
        assert result.outcome.writes == ()
    finally:
        await ctl.readyz.close()
        await api.close()


async def test_a_fleet_keeps_a_leaving_members_tuple_until_it_is_warm_on_the_new_host(cluster: EmulatedCluster) -> None:
    api, reader = cluster.api, ReadyzReader()
    try:
        for name in ("shared", "next"):
            await api.create(RUNTIMEFLEETS, "pools", {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                                                      "metadata": {"name": name}, "spec": {}})
        await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
        await run(cluster, reader)
        # Warm on `shared` (as its reconciliation records it once every Ready pod holds the tuple warm).
        await api.patch_status(WARMPOOLS, "pools", "a", {"fleet": "pools/shared"})

        async def hosted() -> bool:
            config = await api.get(CONFIGMAPS, "pools", "shared-runtime-config")
            assert config is not None
            return "tenant: acme" in config["data"]["config.yaml"]

        await api.merge_patch(WARMPOOLS, "pools", "a", {"spec": {"fleetRef": {"name": "next"}}})
        outcome = await run(cluster, reader)
        assert await hosted()  # leaving, not yet warm on `next`: kept
        assert ("pools", "a") not in outcome.members  # its status is the new host's to write
        moving = await api.get(WARMPOOLS, "pools", "a")
        assert moving is not None
        assert moving["status"]["fleet"] == "pools/shared"

        # Warm on `next` (NOW, as `run` reconciles at NOW): kept while clients following the pool move over.
        await api.patch_status(WARMPOOLS, "pools", "a", {"fleet": "pools/next", "leftFleet": "pools/shared",
                                                         "movedAt": "2026-01-01T00:00:00Z"})
        await run(cluster, reader)
        assert await hosted()
        await api.patch_status(WARMPOOLS, "pools", "a", {"movedAt": "2025-12-31T23:59:00Z"})
        await run(cluster, reader)
        assert not await hosted()  # lingered long enough: let go
    finally:
        await reader.close()

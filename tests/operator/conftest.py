"""Fixtures: the kmock API emulator on loopback, the cluster view scenarios use, WarmPool manifests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import kmock
import kopf
import pytest

from tests.operator.emulator import ApiServerEmulator, is_operator_write
from tests.operator.harness import PodSpec, RunningOperator, make_client, operator_running, simulate_rollout
from warmpool_operator.diff import is_controlled_by
from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, PODS, SERVICES
from warmpool_operator.kube import KubeApi

CHILD_PLURALS = {"deployments", "services", "configmaps"}
@dataclass
class EmulatedCluster:
    """`tests.operator.harness.Cluster` over the kmock emulator."""

    emulator: ApiServerEmulator
    namespace: str
    api: KubeApi = field(init=False)

    def __post_init__(self) -> None:
        self.api = make_client(self.connection())

    def connection(self) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(self.emulator.url).rstrip("/"), default_namespace=self.namespace)

    def operator(self) -> contextlib.AbstractAsyncContextManager[RunningOperator]:
        return operator_running(self)

    async def roll_out(self, name: str, count: int, pod: PodSpec | None = None) -> None:
        await simulate_rollout(self, name, count, pod)

    def operator_child_writes(self) -> int | None:
        return sum(
            1
            for request in self.emulator
            if is_operator_write(request)
            and request.resource is not None
            and request.resource.plural in CHILD_PLURALS
        )

    async def collect_garbage(self) -> None:
        """The emulator has no garbage collector: delete what the vanished owner controlled."""
        alive = {obj["metadata"].get("uid") for obj in list(self.emulator.objects.values()) if not obj.deleted}
        for kind in (CONFIGMAPS, SERVICES, DEPLOYMENTS, PODS):
            for obj in await self.api.list(kind, self.namespace):
                refs = obj.get("metadata", {}).get("ownerReferences") or []
                owners = [ref["uid"] for ref in refs if ref.get("controller")]
                if owners and not any(is_controlled_by(obj, uid) and uid in alive for uid in owners):
                    await self.api.delete(kind, self.namespace, obj["metadata"]["name"])


@pytest.fixture
async def emulator() -> AsyncIterator[ApiServerEmulator]:
    async with ApiServerEmulator() as api, kmock.Server(api):
        api.declare_resources(namespaces=("pools", "other"))
        yield api


@pytest.fixture
async def cluster(emulator: ApiServerEmulator) -> AsyncIterator[EmulatedCluster]:
    view = EmulatedCluster(emulator, namespace="pools")
    try:
        yield view
    finally:
        await view.api.close()

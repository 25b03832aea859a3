"""The operator's own HTTP endpoints on loopback: Prometheus metrics and the liveness probe."""

from __future__ import annotations

from typing import Any

import aiohttp
import kmock
import pytest

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import operator_running, wait_for, warmpool_manifest, with_config
from tests.operator.runtime_pods import free_port
from tests.operator.scenarios import all_children
from warmpool_operator.kinds import PEERINGS, WARMPOOLS

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_metrics_count_reconciles_and_child_writes(cluster: EmulatedCluster) -> None:
    port = free_port("127.0.0.1")
    config = with_config(metrics_host="127.0.0.1", metrics_port=port)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("counted"))
    async with operator_running(cluster, config=config):
        await wait_for(lambda: all_children(cluster, "counted"), what="children")

        async def exposed() -> str | None:
            status, text = await fetch(f"http://127.0.0.1:{port}/metrics")
            return text if status == 200 and 'result="ok",trigger="create"' in text else None

        text = await wait_for(exposed, what="reconcile metrics")
    assert 'warmpool_operator_child_writes_total{kind="Deployment",verb="create"} 1.0' in text
    assert 'warmpool_operator_child_writes_total{kind="Service",verb="create"} 1.0' in text
    assert "warmpool_operator_reconcile_duration_seconds_bucket" in text


async def test_liveness_fails_when_the_watched_api_does(cluster: EmulatedCluster) -> None:
    port = free_port("127.0.0.1")
    config = with_config(health_host="127.0.0.1", health_port=port)
    broken = False

    def refuse_lists(_: Any) -> Any:
        if not broken:
            raise NotImplementedError  # serve normally
        raise kmock.KubernetesError(status=403, reason="Forbidden", message="warmpools is forbidden")

    cluster.emulator[kmock.action.LIST, kmock.resource("tensorwasm.dev/v1alpha1/warmpools")] << refuse_lists
    async with operator_running(cluster, config=config):
        status, text = await wait_for(lambda: _answer(port), what="the liveness endpoint")
        assert status == 200
        assert '"apiReachable": true' in text

        broken = True

        async def failing() -> bool:
            status, _ = await fetch(f"http://127.0.0.1:{port}/healthz")
            return status == 500

        # kopf caches probe results for 10 seconds, so this takes a while by design.
        await wait_for(failing, what="liveness failing while the API refuses the watched resource")


async def _answer(port: int) -> tuple[int, str] | None:
    try:
        return await fetch(f"http://127.0.0.1:{port}/healthz")
    except aiohttp.ClientConnectionError:
        return None


async def test_peering_object_is_ensured_and_the_replica_acts(cluster: EmulatedCluster) -> None:
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("peered"))
    async with operator_running(cluster, config=with_config(standalone=False, peering_name="warmpool")):
        await wait_for(lambda: all_children(cluster, "peered"), what="children while peering is mandatory")

        async def registered() -> dict[str, Any] | None:
            found = await cluster.api.get(PEERINGS, cluster.namespace, "warmpool")
            return found if found and found.get("status") else None

        peering = await wait_for(registered, what="this replica recorded in the peering object")
        (entry,) = peering["status"].values()
        assert entry["priority"] == 0

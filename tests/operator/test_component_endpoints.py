"""The operator's own HTTP endpoints on loopback: Prometheus metrics and the liveness probe."""

from __future__ import annotations

import json
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


async def test_liveness_stays_up_while_the_api_refuses_everything(cluster: EmulatedCluster) -> None:
    """/healthz reflects the process (its event loop beats), never the API: an outage must not restart it."""
    port = free_port("127.0.0.1")
    config = with_config(health_host="127.0.0.1", health_port=port)
    broken = False

    def refuse_lists(_: Any) -> Any:
        if not broken:
            raise NotImplementedError  # serve normally
        raise kmock.KubernetesError(status=503, reason="ServiceUnavailable", message="etcd is down")

    cluster.emulator[kmock.action.LIST, kmock.resource("tensorwasm.dev/v1alpha1/warmpools")] << refuse_lists
    async with operator_running(cluster, config=config):
        status, text = await wait_for(lambda: _answer(port), what="the liveness endpoint")
        assert status == 200
        assert json.loads(text)["alive"] is True
        broken = True
        lists = len(list(cluster.emulator))
        for _ in range(5):
            status, text = await fetch(f"http://127.0.0.1:{port}/healthz")
            assert status == 200, text
        assert not [r for r in list(cluster.emulator)[lists:] if "healthz" in str(r.url)]
        status, text = await fetch(f"http://127.0.0.1:{port}/readyz")
        assert status == 200
        assert "lastWatchEventAgeSeconds" in json.loads(text)


async def _answer(port: int) -> tuple[int, str] | None:
    try:
        return await fetch(f"http://127.0.0.1:{port}/healthz")
    except aiohttp.ClientConnectionError:
        return None


async def test_peering_object_is_ensured_and_the_replica_acts(cluster: EmulatedCluster) -> None:
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("peered"))
    config = with_config(standalone=False, leader_election=False, peering_name="warmpool")
    async with operator_running(cluster, config=config):
        await wait_for(lambda: all_children(cluster, "peered"), what="children while peering is mandatory")

        async def registered() -> dict[str, Any] | None:
            found = await cluster.api.get(PEERINGS, cluster.namespace, "warmpool")
            return found if found and found.get("status") else None

        peering = await wait_for(registered, what="this replica recorded in the peering object")
        (entry,) = peering["status"].values()
        assert entry["priority"] == 0

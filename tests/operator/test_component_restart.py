"""`warmpool operator run` as a real process: killed in the middle of a reconcile, then restarted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import PATIENCE_SECONDS, condition, get_pool, wait_for, warmpool_manifest
from tests.operator.scenarios import all_children, pool_with
from warmpool_operator.kinds import SERVICES, WARMPOOLS

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [
            {"name": "emulated", "context": {"cluster": "emulated", "user": "tester", "namespace": namespace}}
        ],
        "current-context": "emulated",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def operator_process(
    kubeconfig: Path, namespace: str, log: Path, command: Sequence[str] = (sys.executable, "-m", "warmpool.cli")
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`warmpool operator run` on one namespace, run as `command`, its output appended to `log`."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "WARMPOOL_OPERATOR_RESYNC_SECONDS": "1",
        "WARMPOOL_OPERATOR_RETRY_BACKOFF_SECONDS": "0.2,0.5,1",
        "WARMPOOL_OPERATOR_RUNTIME_IMAGE": "warmpool:test",
    }
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *command, "operator", "run",
            "--namespace", namespace, "--standalone", "--metrics-port", "0", "--health-port", "0",
            "--log-format", "plain",
            stdout=out, stderr=out, env=env,
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(PATIENCE_SECONDS):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def test_restart_in_the_middle_of_a_reconcile_converges(
    cluster: EmulatedCluster, tmp_path: Path
) -> None:
    emulator = cluster.emulator
    stuck = asyncio.Event()
    released = asyncio.Event()

    async def hang_service_creation(_: Any) -> Any:
        # The first Service apply reaches the API (the emulator creates it) but its answer
        # never comes back: the operator is killed while it waits, mid-reconcile.
        if released.is_set():
            raise NotImplementedError  # fall through to the emulator's normal handling
        stuck.set()
        await released.wait()
        raise NotImplementedError

    emulator[kmock.action.UPDATE, kmock.resource("v1/services")] << hang_service_creation
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url).rstrip("/"), cluster.namespace)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("phoenix"))

    log = tmp_path / "operator.log"
    async with operator_process(kubeconfig, cluster.namespace, log) as first:
        async with asyncio.timeout(PATIENCE_SECONDS):
            await stuck.wait()
        first.kill()  # SIGKILL: no cleanup, no graceful shutdown
        assert await first.wait() == -9
    released.set()
    half_done = await get_pool(cluster, "phoenix")
    assert "conditions" not in (half_done or {}).get("status", {})
    assert await cluster.api.get(SERVICES, cluster.namespace, "phoenix") is not None

    async with operator_process(kubeconfig, cluster.namespace, log):
        children = await wait_for(lambda: all_children(cluster, "phoenix"), what="children after the restart")
        uid = (await get_pool(cluster, "phoenix") or {})["metadata"]["uid"]
        assert all(obj["metadata"]["ownerReferences"][0]["uid"] == uid for obj in children.values())
        services = await cluster.api.list(SERVICES, cluster.namespace)
        assert [s["metadata"]["name"] for s in services] == ["phoenix"]
        await wait_for(lambda: pool_with(cluster, "phoenix", "Ready", "False"), what="status after the restart")
        await cluster.roll_out("phoenix", 2)
        ready = await wait_for(lambda: pool_with(cluster, "phoenix", "Ready", "True"), what="Ready")
        assert condition(ready, "Stalled")["status"] == "False"
    assert "Traceback" not in log.read_text()

"""Run the operator in this process against the cluster of KUBECONFIG until it reconciles one WarmPool, use
every verb of its API adapter, stop it, then print the `kubernetes` modules it loaded (JSON on stdout).

`python -m tests.e2e.operator_modules_probe NAMESPACE`: a process of its own, so that only the operator's
imports count (the test process itself loads the synchronous client)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from typing import Any

import kopf

from warmpool_operator.app import run_operator
from warmpool_operator.kinds import CONFIGMAPS, WARMPOOLS
from warmpool_operator.kube import KubeApi, Timeouts, login
from warmpool_operator.settings import OperatorConfig

PATIENCE_SECONDS = 120.0


def pool(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1",
        "kind": "WarmPool",
        "metadata": {"name": "modules", "namespace": namespace},
        "spec": {
            "tenant": "modules",
            "module": {"sha256": hashlib.sha256(b"modules").hexdigest(), "source": {"path": "/modules/m.wasm"}},
            "warmInstancesPerTuple": 1,
            "replicas": 0,
        },
    }


async def reconciled(api: KubeApi, namespace: str) -> None:
    while True:
        found = await api.get(WARMPOOLS, namespace, "modules") or {}
        if found.get("status", {}).get("observedGeneration") == found.get("metadata", {}).get("generation"):
            return
        await asyncio.sleep(0.2)


async def main(namespace: str) -> None:
    config = OperatorConfig(runtime_image="warmpool:test", metrics_port=0, health_port=0, standalone=True)
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(run_operator(config, namespaces=[namespace], stop_flag=stop, ready_flag=ready))
    api = KubeApi(await login(kopf.OperatorSettings(), logging.getLogger("probe")), timeouts=Timeouts())
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            await ready.wait()
            await api.create(WARMPOOLS, namespace, pool(namespace))
            await reconciled(api, namespace)
        await api.apply(CONFIGMAPS, namespace, "probe", {"apiVersion": "v1", "kind": "ConfigMap",
                                                         "metadata": {"name": "probe"}, "data": {"a": "1"}})
        await api.merge_patch(CONFIGMAPS, namespace, "probe", {"data": {"b": "2"}})
        assert "probe" in [item["metadata"]["name"] for item in await api.list(CONFIGMAPS, namespace, limit=50)]
        assert await api.delete(CONFIGMAPS, namespace, "probe")
    finally:
        stop.set()
        async with asyncio.timeout(PATIENCE_SECONDS):
            await running
        await api.close()
    print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "kubernetes")))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

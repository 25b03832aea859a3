"""Scenarios of pools that cannot work, written against `Cluster` only (any API backend).

Each one must end with Ready=False / Stalled=True naming the reason, a Warning Event, retries,
and an operator that keeps running; most then fix the cause and watch the pool recover.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.operator.harness import (
    Cluster,
    PodSpec,
    children_of,
    condition,
    echo_module,
    events_for,
    get_pool,
    pool_pods,
    provide_modules,
    wait_for,
    warmpool_manifest,
)
from tests.operator.runtime_pods import free_port, module_server, runtime_pod
from tests.operator.scenarios import all_children, pool_with
from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, WARMPOOLS

MODULE_BYTES = b"\x00asm\x01\x00\x00\x00"  # the smallest valid module: no imports, no exports
MODULE_SHA = hashlib.sha256(MODULE_BYTES).hexdigest()


async def stalled(cluster: Cluster, name: str, reason: str) -> dict[str, Any]:
    pool: dict[str, Any] = await wait_for(
        lambda: pool_with(cluster, name, "Stalled", "True", reason=reason), what=f"Stalled={reason}"
    )
    ready = condition(pool, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert condition(pool, "Reconciling")["status"] == "False"
    await wait_for(lambda: events_for(cluster, name, reason), what=f"a Warning Event {reason}")
    (event, *_) = await events_for(cluster, name, reason)
    assert event["type"] == "Warning"
    return pool


async def scenario_configmap_missing(cluster: Cluster) -> None:
    """No ConfigMap, then no key: stalled with retries and no pods; the right key: it proceeds."""
    source = {"configMapRef": {"name": "modules", "key": "echo.wasm"}}
    manifest = warmpool_manifest("cmref", module={"sha256": MODULE_SHA, "source": source})
    await cluster.api.create(WARMPOOLS, cluster.namespace, manifest)
    async with cluster.operator() as running:
        pool = await stalled(cluster, "cmref", "ConfigMapMissing")
        assert "modules" in condition(pool, "Stalled")["message"]

        async def retried() -> bool:
            return await running.reconciles(trigger="create", result="stalled") >= 3

        await wait_for(retried, what="retries of the create handler")
        assert await cluster.api.get(DEPLOYMENTS, cluster.namespace, "cmref") is None

        wrong = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "modules"}, "binaryData": {"x.wasm": ""}}
        await cluster.api.create(CONFIGMAPS, cluster.namespace, wrong)
        pool = await stalled(cluster, "cmref", "ConfigMapKeyMissing")
        assert "echo.wasm" in condition(pool, "Stalled")["message"]

        fixed = {"binaryData": {"echo.wasm": "AGFzbQEAAAA="}}
        await cluster.api.merge_patch(CONFIGMAPS, cluster.namespace, "modules", fixed)
        children = await wait_for(lambda: all_children(cluster, "cmref"), what="children once the key exists")
        volumes = children["deployments"]["spec"]["template"]["spec"]["volumes"]
        (modules,) = [volume["configMap"] for volume in volumes if volume["name"] == "modules"]
        # A real API server adds defaults (defaultMode) to what the operator wrote.
        assert (modules["name"], modules["items"]) == ("modules", [{"key": "echo.wasm", "path": "echo.wasm"}])
        assert "path: /modules/echo.wasm" in children["configmaps"]["data"]["runtime.yaml"]
        await wait_for(lambda: pool_with(cluster, "cmref", "Stalled", "False"), what="Stalled cleared")
        await wait_for(lambda: events_for(cluster, "cmref", "Recovered"), what="a Recovered Event")
        assert await running.sample("warmpool_operator_reconcile_errors_total", reason="ConfigMapMissing") >= 1


async def _runtime_stalls(
    cluster: Cluster, name: str, *, url: str, sha: str, workdir: Path, reason: str
) -> dict[str, Any]:
    """Start a runtime pod with the rendered config; the pool stalls with `reason` (operator running)."""
    manifest = warmpool_manifest(name, module={"sha256": sha, "source": {"url": url}}, replicas=1)
    await cluster.api.create(WARMPOOLS, cluster.namespace, manifest)
    children = await wait_for(lambda: all_children(cluster, name), what="children")
    async with runtime_pod(children["configmaps"]["data"]["runtime.yaml"], workdir) as pod:
        await cluster.roll_out(name, 1, PodSpec(ready=False, pod_ip=pod.ip, http_port=pod.port))
        found = await stalled(cluster, name, reason)
    message = condition(found, "Stalled")["message"]
    assert any(f"pod {pod['metadata']['name']} " in message for pod in await pool_pods(cluster, name))
    assert sha[:12] in message
    return found


async def scenario_module_unreachable(cluster: Cluster, workdir: Path) -> None:
    """The runtime pod cannot fetch the module from a signed URL: its /readyz says so, and so does the pool,
    naming the source without its credentials; reconciliation retries with backoff."""
    closed = free_port("127.0.0.1")  # nothing listens there once the probe socket is closed
    url = f"http://reader:pa55w0rd@127.0.0.1:{closed}/echo.wasm?X-Amz-Credential=AKIAX&X-Amz-Signature=s3cr3t"
    async with cluster.operator() as running:
        pool = await _runtime_stalls(
            cluster, "unreachable", url=url, sha=MODULE_SHA, workdir=workdir, reason="ModuleUnreachable"
        )
        message = condition(pool, "Stalled")["message"]
        assert f"http://127.0.0.1:{closed}/echo.wasm?<redacted>" in message
        events = await events_for(cluster, "unreachable")
        shown = [message, *(str(event.get("message")) for event in events)]
        assert not [text for text in shown if "s3cr3t" in text or "pa55w0rd" in text or "AKIAX" in text], shown

        async def retried() -> bool:
            return await running.reconciles(result="stalled") >= 2

        await wait_for(retried, what="retries of the stalled pool")
        # The runtime itself must fetch the real thing: its rendered config keeps the full URL.
        children = await all_children(cluster, "unreachable")
        assert children is not None
        assert "X-Amz-Signature=s3cr3t" in children["configmaps"]["data"]["runtime.yaml"]


async def scenario_hash_mismatch(cluster: Cluster, workdir: Path) -> None:
    """The pods fetch bytes with another hash: stalled; with the right hash the pool recovers."""
    wrong_sha = hashlib.sha256(b"other bytes").hexdigest()
    async with module_server({"echo.wasm": MODULE_BYTES}) as base, cluster.operator():
        url = f"{base}/echo.wasm"
        await _runtime_stalls(
            cluster, "mismatch", url=url, sha=wrong_sha, workdir=workdir, reason="ModuleHashMismatch"
        )
        fix = {"spec": {"module": {"sha256": MODULE_SHA}}}
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "mismatch", fix)

        async def rendered() -> dict[str, Any] | None:
            found = await all_children(cluster, "mismatch")
            return found if found and MODULE_SHA in found["configmaps"]["data"]["runtime.yaml"] else None

        children = await wait_for(rendered, what="the corrected hash rendered")
        async with runtime_pod(children["configmaps"]["data"]["runtime.yaml"], workdir / "fixed") as pod:
            # Play the kubelet: the pod turns Ready only once its own /readyz says warm.
            await wait_for(lambda: _readyz_ok(pod.ip, pod.port), what="the runtime prewarmed")
            await cluster.roll_out("mismatch", 1, PodSpec(ready=True, pod_ip=pod.ip, http_port=pod.port))
            await wait_for(lambda: pool_with(cluster, "mismatch", "Ready", "True"), what="Ready after the fix")
        assert condition(await get_pool(cluster, "mismatch"), "Stalled")["status"] == "False"
        await wait_for(lambda: events_for(cluster, "mismatch", "Recovered"), what="a Recovered Event")


async def _readyz_ok(ip: str, port: int) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"http://{ip}:{port}/readyz") as resp:
        return resp.status == 200


async def scenario_crash_looping(cluster: Cluster) -> None:
    """Pods whose runtime keeps dying stall the pool with restarts and exit code; running pods recover it."""
    await provide_modules(cluster)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("crashy", module=echo_module()))
    async with cluster.operator():
        await wait_for(lambda: all_children(cluster, "crashy"), what="children")
        crashing = PodSpec(
            ready=False,
            container_state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            last_state={"terminated": {"exitCode": 2, "reason": "Error", "message": "invalid configuration"}},
            restart_count=4,
        )
        await cluster.roll_out("crashy", 2, crashing)
        pool = await stalled(cluster, "crashy", "CrashLoopBackOff")
        message = condition(pool, "Stalled")["message"]
        found = re.search(r"pod (\S+) container runtime is crash-looping \((\d+) restarts, .*?exit code (\d+)",
                          message)
        assert found is not None, message
        pods = {pod["metadata"]["name"]: pod for pod in await pool_pods(cluster, "crashy")}
        (status,) = pods[found[1]]["status"]["containerStatuses"]
        # What the pod reported when the operator looked: its count only grows, its exit code stays.
        assert 1 <= int(found[2]) <= status["restartCount"]
        assert int(found[3]) == status["lastState"]["terminated"]["exitCode"]

        await cluster.roll_out("crashy", 2)
        await wait_for(lambda: pool_with(cluster, "crashy", "Ready", "True"), what="Ready once pods run")


async def scenario_unschedulable(cluster: Cluster) -> None:
    """Pods asking for more CPU than any node has stay Pending: the scheduler's reason is reported."""
    greedy = {"resources": {"requests": {"cpu": "4096"}}}
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("pending", runtime=greedy))
    async with cluster.operator():
        await wait_for(lambda: all_children(cluster, "pending"), what="children")
        await cluster.roll_out("pending", 2, PodSpec(ready=False, scheduled=False))
        pool = await stalled(cluster, "pending", "Unschedulable")
        assert "Insufficient cpu" in condition(pool, "Stalled")["message"]


async def scenario_invalid_spec(cluster: Cluster) -> None:
    """A spec the CRD would refuse (only an emulated API lets it in): permanent, nothing created."""
    source = {"path": "/modules/a.wasm", "url": "http://127.0.0.1:1/a.wasm"}
    bad = warmpool_manifest("invalid", module={"sha256": MODULE_SHA, "source": source})
    await cluster.api.create(WARMPOOLS, cluster.namespace, bad)
    async with cluster.operator() as running:
        pool = await stalled(cluster, "invalid", "InvalidSpec")
        assert "spec.module.source" in condition(pool, "Stalled")["message"]
        resyncs = await running.reconciles(trigger="resync")

        async def resynced_twice() -> bool:
            return await running.reconciles(trigger="resync") >= resyncs + 2

        await wait_for(resynced_twice, what="resyncs after the failure")
        # PermanentError: kopf does not retry the create handler for this spec.
        assert await running.reconciles(trigger="create") == 1
        assert not any((await children_of(cluster, "invalid")).values())

        fixed = {"spec": {"module": {"source": {"url": None}}}}
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "invalid", fixed)
        await wait_for(lambda: all_children(cluster, "invalid"), what="children after the fix")

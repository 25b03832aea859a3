"""The node agent: registers a Node, renews its Lease, watches the pods bound to it and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client

from warmpool.dev.agent.kubeapi import MERGE_PATCH, ApiError, KubeApi, Method
from warmpool.dev.agent.podips import PodIPs
from warmpool.dev.agent.podspec import ObjectKind, Refused, parse_pod
from warmpool.dev.agent.runner import PodRunner, RunnerSettings

log = logging.getLogger("warmpool.dev.agent")
HEARTBEAT_S = 10.0
LEASE_DURATION_S = 40
WATCH_TIMEOUT_S = 300
SHUTDOWN_GRACE_S = 10.0
TERMINAL_PHASES = ("Succeeded", "Failed")
LIFECYCLE_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})
VOLUME_KINDS: tuple[ObjectKind, ...] = ("configmaps", "secrets")
OBJECT_CHANGES = frozenset({"ADDED", "MODIFIED", "DELETED"})
LEASE_NAMESPACE = "kube-node-lease"
GONE = 410


@dataclass(frozen=True)
class NodeSettings:
    name: str
    pods_dir: Path
    host_ip: str = "127.0.0.1"
    cpu: str = "32"
    memory: str = "64Gi"
    max_pods: int = 110


def _now(micro: bool = False) -> str:
    stamp = dt.datetime.now(dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def node_status(settings: NodeSettings, kubelet_version: str, now: str, since: str | None = None) -> dict[str, Any]:
    """The Node's status: always Ready, no pressure, loopback address, synthetic capacity."""
    resources = {"cpu": settings.cpu, "memory": settings.memory, "pods": str(settings.max_pods),
                 "ephemeral-storage": "100Gi"}

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since or now}

    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "local node agent"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "local node agent"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "local node agent"),
            condition("Ready", "True", "KubeletReady", "the local node agent is running pods as processes"),
        ],
        "addresses": [{"type": "InternalIP", "address": settings.host_ip},
                      {"type": "Hostname", "address": settings.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
            "osImage": "local processes", "containerRuntimeVersion": "warmpool-local://0.1",
            "kubeletVersion": kubelet_version, "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
        },
    }


class NodeAgent:
    def __init__(self, settings: NodeSettings, api: KubeApi, runner_settings: RunnerSettings) -> None:
        self._settings = settings
        self._api = api
        self._runner_settings = runner_settings
        self._runners: dict[str, PodRunner] = {}
        self._terminating: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._ips = PodIPs()
        self._http: aiohttp.ClientSession | None = None
        self._kubelet_version = "v0.0.0"
        self._node_uid = ""
        self._since = _now()

    async def run(self) -> None:
        self._http = aiohttp.ClientSession()
        try:
            version = await self._api.call(self._api.version.get_code) or {}
            self._kubelet_version = str(version.get("gitVersion") or "v0.0.0")
            await self._register()
            await asyncio.gather(self._heartbeat_loop(), self._pods_loop(),
                                 *(self._objects_loop(kind) for kind in VOLUME_KINDS))
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        runners, self._runners = list(self._runners.values()), {}
        await asyncio.gather(*(r.stop(SHUTDOWN_GRACE_S) for r in runners), return_exceptions=True)
        self._ips.release_all()
        if self._http is not None:
            await self._http.close()

    # --- node and lease ---------------------------------------------------------------------------

    async def _register(self) -> None:
        name = self._settings.name
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": node_status(self._settings, "", "")["nodeInfo"]["architecture"],
            "node.kubernetes.io/instance-type": "local-processes"}}}
        created = await self._api.call(self._api.core.create_node, body, allow=(409,))
        node = created or await self._api.call(self._api.core.read_node, name) or {}
        self._node_uid = str((node.get("metadata") or {}).get("uid") or "")
        log.info("node %s registered (%s)", name, "created" if created else "already existed")
        await self._beat()

    async def _beat(self) -> None:
        name = self._settings.name
        status = node_status(self._settings, self._kubelet_version, _now(), self._since)
        patched = await self._api.call(self._api.core.patch_node_status, name, {"status": status},
                                       _content_type=MERGE_PATCH, allow=(404,))
        if patched is None:
            log.warning("node %s vanished; registering it again", name)
            await self._register()
            return
        taints = (patched.get("spec") or {}).get("taints") or []
        kept = [t for t in taints if t.get("key") not in LIFECYCLE_TAINTS]
        if len(kept) != len(taints):
            # Admission taints a new Node not-ready; without the node-lifecycle controller, the
            # agent lifts that taint itself once it reports Ready.
            await self._api.call(self._api.core.patch_node, name, {"spec": {"taints": kept or None}},
                                 _content_type=MERGE_PATCH)
            log.info("node %s is Ready; removed taints %s", name, sorted(LIFECYCLE_TAINTS))
        await self._renew_lease()

    async def _renew_lease(self) -> None:
        name = self._settings.name
        leases = self._api.coordination
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": _now(micro=True)}
        current = await self._api.call(leases.read_namespaced_lease, name, LEASE_NAMESPACE, allow=(404,))
        if current is None:
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": self._node_uid}
            await self._api.call(leases.create_namespaced_lease, LEASE_NAMESPACE, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": spec}, allow=(409,))
        else:
            await self._api.call(leases.patch_namespaced_lease, name, LEASE_NAMESPACE, {"spec": spec},
                                 _content_type=MERGE_PATCH)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._beat()
            except ApiError as exc:
                log.warning("node heartbeat failed: %s", exc)

    # --- pods -------------------------------------------------------------------------------------

    async def _pods_loop(self) -> None:
        selector = f"spec.nodeName={self._settings.name}"
        list_pods = self._api.core.list_pod_for_all_namespaces
        version: str | None = None
        while True:
            try:
                if version is None:
                    listing = await self._api.call(list_pods, field_selector=selector) or {}
                    self._sync(listing.get("items") or [])
                    version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                async for event in self._api.watch(list_pods, field_selector=selector, resource_version=version,
                                                   timeout_s=WATCH_TIMEOUT_S):
                    kind, obj = event["type"], event["object"]
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    try:
                        if kind in ("ADDED", "MODIFIED"):
                            self._observe(obj)
                        elif kind == "DELETED":
                            self._forget(obj)
                    except Exception:
                        log.exception("cannot handle %s of pod %s", kind, (obj.get("metadata") or {}).get("name"))
            except ApiError as exc:
                if exc.status == GONE:
                    log.info("pod watch expired (%s); listing again", exc)
                    version = None
                    continue
                log.warning("pod watch failed: %s", exc)
                await asyncio.sleep(1)

    async def _objects_loop(self, kind: ObjectKind) -> None:
        """Watch every ConfigMap (or Secret) and have the pods that read a changed one rewrite their volumes
        at once, as the kubelet refreshes configMap, secret and projected volumes."""
        list_all = self._list_all(kind)
        version: str | None = None
        while True:
            try:
                if version is None:
                    listing = await self._api.call(list_all, limit=1) or {}
                    version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                async for event in self._api.watch(list_all, resource_version=version, timeout_s=WATCH_TIMEOUT_S):
                    change, meta = event["type"], event["object"].get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if change in OBJECT_CHANGES:
                        self._refresh_readers(kind, str(meta.get("namespace")), str(meta.get("name")))
            except ApiError as exc:
                if exc.status == GONE:
                    version = None
                    continue
                log.warning("%s watch failed: %s", kind, exc)
                await asyncio.sleep(1)

    def _list_all(self, kind: ObjectKind) -> Method:
        core = self._api.core
        return core.list_config_map_for_all_namespaces if kind == "configmaps" else core.list_secret_for_all_namespaces

    def _refresh_readers(self, kind: ObjectKind, namespace: str, name: str) -> None:
        for runner in self._runners.values():
            if runner.needs(kind, namespace, name):
                runner.refresh()

    def _sync(self, pods: list[Mapping[str, Any]]) -> None:
        """Make the runners match a fresh listing: pods gone while the watch was down are stopped."""
        present = {str(p["metadata"]["uid"]) for p in pods}
        for uid in [uid for uid in self._runners if uid not in present]:
            self._stop_in_background(self._runners.pop(uid))
        for pod in pods:
            self._observe(pod)

    def _observe(self, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        if meta.get("deletionTimestamp"):
            if uid not in self._terminating:
                self._terminating[uid] = asyncio.create_task(self._terminate(pod))
            return
        runner = self._runners.get(uid)
        if runner is not None:
            runner.update(pod)
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return
        try:
            plan, refusal = parse_pod(pod), None
        except Refused as exc:
            plan, refusal = None, exc
            log.warning("refusing pod %s/%s: %s", meta.get("namespace"), meta.get("name"), exc.message)
        except (KeyError, TypeError, ValueError) as exc:
            plan, refusal = None, Refused("CreateContainerConfigError", f"malformed pod spec: {exc!r}")
        assert self._http is not None
        runner = PodRunner(plan=plan, refusal=refusal, pod=pod, api=self._api, http=self._http, ips=self._ips,
                           pod_dir=self._settings.pods_dir / uid, settings=self._runner_settings)
        self._runners[uid] = runner
        runner.start()
        log.info("started pod %s", runner.where)

    def _forget(self, pod: Mapping[str, Any]) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        runner = self._runners.pop(uid, None)
        if runner is not None:
            self._stop_in_background(runner)

    def _stop_in_background(self, runner: PodRunner) -> None:
        task = asyncio.create_task(runner.stop(0))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _terminate(self, pod: Mapping[str, Any]) -> None:
        """Stop a pod being deleted within its grace period, then finish the deletion as a kubelet does."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        try:
            runner = self._runners.pop(uid, None)
            if runner is not None:
                grace = meta.get("deletionGracePeriodSeconds")
                await runner.stop(None if grace is None else float(grace))
            await self._api.call(
                self._api.core.delete_namespaced_pod, str(meta.get("name")), str(meta.get("namespace")),
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                      "preconditions": {"uid": uid}}, allow=(404, 409))
            log.info("pod %s/%s stopped and deleted", meta.get("namespace"), meta.get("name"))
        except ApiError as exc:
            log.warning("finishing the deletion of %s failed: %s", meta.get("name"), exc)
        finally:
            self._terminating.pop(uid, None)


async def run_agent(settings: NodeSettings, api_client: client.ApiClient, runner_settings: RunnerSettings) -> None:
    """Run until SIGTERM/SIGINT, then stop every pod process."""
    settings.pods_dir.mkdir(parents=True, exist_ok=True)
    api = KubeApi(api_client)
    agent = NodeAgent(settings, api, runner_settings)
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        api.close()
        log.info("node agent stopped (pid %d)", os.getpid())

"""`tests.operator.harness.Cluster` over the real local control plane: its controllers, scheduler, node agent and GC."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import yaml

from tests.e2e.conftest import LocalCluster
from tests.local_cluster import credentials
from tests.operator.harness import PodSpec, RunningOperator, make_client, operator_running
from warmpool.dev import procs
from warmpool_operator.health import pod_is_ready
from warmpool_operator.kinds import DEPLOYMENTS, PODS, Kind
from warmpool_operator.kube import KubeApi
from warmpool_operator.render import deployment_name, selector_string
from warmpool_operator.scaling.exposition import PodMetrics, pool_metrics

REPLICASETS = Kind("apps/v1", "replicasets")
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
LOCAL_RUNTIME = "warmpool-local"
# Liveness bound of a real rollout (pods are processes started on 2 shared cores): a cap that
# turns a stuck rollout into a failure, never a statement about speed.
ROLLOUT_PATIENCE_SECONDS = 240.0


async def eventually(probe: Callable[[], Awaitable[Any]], *, what: str,
                     timeout_s: float = ROLLOUT_PATIENCE_SECONDS, interval_s: float = 0.25) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value seen."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                last = await probe()
                if last:
                    return last
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise AssertionError(f"never happened: {what} (last seen: {last!r})") from None


def container_pid(status: Mapping[str, Any]) -> int | None:
    """The process the node agent runs for a container (its containerID is `warmpool-local://PID`)."""
    scheme, _, pid = str(status.get("containerID") or "").partition("://")
    return int(pid) if scheme == LOCAL_RUNTIME and pid.isdigit() else None


def parent_pid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[1])


def waiting_reason(pod: Mapping[str, Any]) -> str | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        waiting = (status.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason") or "")
    return None


def unschedulable(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in (pod.get("status") or {}).get("conditions") or ())


@dataclass
class RealCluster:
    """Scenarios on the real API server, with the operator running in this event loop."""

    local: LocalCluster
    namespace: str
    token: str | None = None
    """Credentials other than the kubeconfig's admin token (e.g. a ServiceAccount's)."""
    api: KubeApi = field(init=False)
    _crashers: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.api = make_client(self.connection())

    def connection(self) -> kopf.ConnectionInfo:
        access = credentials(self.local.kubeconfig)
        return kopf.ConnectionInfo(server=access.server, ca_path=access.ca_path, token=self.token or access.token,
                                   insecure=access.insecure or None, default_namespace=self.namespace)

    async def close(self) -> None:
        for name in list(self._crashers):
            await self._stop_crashing(name)
        await self.api.close()

    async def __aenter__(self) -> RealCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def collect_garbage(self) -> None:
        """Nothing to play: the real garbage collector deletes dependents; scenarios wait for it."""

    def operator_child_writes(self) -> int | None:
        return None  # a real API server does not count another client's requests

    def operator(self) -> contextlib.AbstractAsyncContextManager[RunningOperator]:
        return operator_running(self)

    async def roll_out(self, name: str, count: int, pod: PodSpec | None = None) -> None:
        """Wait until the Deployment controller, scheduler and node agent have brought `count` pods
        of the current template into the state `pod` describes.

        The real pods run the real runtime on their own pod IPs, so `pod_ip`/`http_port` of a
        simulated pod do not apply. A valid runtime can only crash from outside: for a
        crash-looping `pod` its container processes are killed each time they run (SIGKILL, as an
        OOM kill does) until the next roll_out, and restart counts and exit codes are the node's.
        """
        pod = pod or PodSpec()
        await self._stop_crashing(name)
        waiting = (pod.container_state or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            self._crashers[name] = asyncio.create_task(self._crash_loop(name))

        async def reached() -> list[str] | None:
            current = await self.current_pods(name, count)
            if current is None:
                return None
            if pod.ready:
                settled = await self._rolled_out(name, count)
                ok = settled and all(pod_is_ready(p) for p in current)
            elif not pod.scheduled:
                ok = all(unschedulable(p) for p in current)
            elif waiting:
                ok = all(waiting_reason(p) == waiting.get("reason") for p in current)
            else:
                ok = all((p.get("status") or {}).get("podIP") and (p.get("status") or {}).get("phase") == "Running"
                         and not pod_is_ready(p) for p in current)
            return [p["metadata"]["name"] for p in current] if ok else None

        await eventually(reached, what=f"{count} pod(s) of {name}'s current template as {pod}")

    async def current_pods(self, name: str, count: int) -> list[dict[str, Any]] | None:
        """Exactly `count` live pods of the Deployment's current template, or None (yet)."""
        ns = self.namespace
        deployment = await self.api.get(DEPLOYMENTS, ns, deployment_name(name))
        if deployment is None:
            return None
        meta, status = deployment["metadata"], deployment.get("status") or {}
        if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
            return None
        wanted = deployment["spec"].get("replicas", 1)
        assert wanted == count, f"roll_out of {count} pods, but the Deployment of {name} wants {wanted}"
        revision = (meta.get("annotations") or {}).get(REVISION)
        hashes = [
            rs["metadata"]["labels"].get(TEMPLATE_HASH)
            for rs in await self.api.list(REPLICASETS, ns, label_selector=selector_string(name))
            if (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
        ]
        if len(hashes) != 1:
            return None
        selector = f"{selector_string(name)},{TEMPLATE_HASH}={hashes[0]}"
        pods = [p for p in await self.api.list(PODS, ns, label_selector=selector)
                if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count else None

    async def _rolled_out(self, name: str, count: int) -> bool:
        """Every wanted pod is current and Ready, no old pod is left, and the controller says so."""
        deployment = await self.api.get(DEPLOYMENTS, self.namespace, deployment_name(name))
        status = (deployment or {}).get("status") or {}
        counts = [status.get(key, 0) for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")]
        progressing = [c for c in status.get("conditions") or () if c.get("type") == "Progressing"]
        done = bool(progressing) and progressing[0].get("reason") == "NewReplicaSetAvailable"
        everyone = await self.api.list(PODS, self.namespace, label_selector=selector_string(name))
        return counts == [count] * 4 and done and len(everyone) == count

    async def _crash_loop(self, name: str) -> None:
        agent = procs.read_pid_file(self.local.layout.pid("node-agent"))
        assert agent is not None, "the node agent is not running"
        killed: set[int] = set()
        while True:
            for found in await self.api.list(PODS, self.namespace, label_selector=selector_string(name)):
                for status in (found.get("status") or {}).get("containerStatuses") or ():
                    pid = container_pid(status)
                    # Only a container process of this pool that the node agent started itself.
                    if "running" in (status.get("state") or {}) and pid and pid not in killed \
                            and parent_pid(pid) == agent.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        killed.add(pid)
            await asyncio.sleep(0.2)

    async def _stop_crashing(self, name: str) -> None:
        task = self._crashers.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- What e2e tests of the operator share: the example pool, its pods and their HTTP endpoints ---

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "classify.yaml"
TENANT = "acme"
RUNTIME_PORT = 8080


def example_documents() -> list[dict[str, Any]]:
    """examples/classify.yaml: the module's ConfigMap and the WarmPool."""
    return [doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc]


def example_module() -> tuple[bytes, str]:
    """The example module's bytes (from its ConfigMap) and the sha256 the example WarmPool pins."""
    config_map, pool = example_documents()
    wasm = base64.b64decode(config_map["binaryData"]["classify.wasm"])
    sha = str(pool["spec"]["module"]["sha256"])
    assert hashlib.sha256(wasm).hexdigest() == sha, "examples/classify.yaml pins another module"
    return wasm, sha


def conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


def get_pool(local: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    pool: dict[str, Any] = local.kubectl_json("get", "warmpool", f"--namespace={namespace}", name)
    return pool


def pool_pods(local: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The pool's live pods (not being deleted)."""
    found = local.kubectl_json("get", "pods", f"--namespace={namespace}", f"--selector={selector_string(name)}")
    return [pod for pod in found["items"] if not pod["metadata"].get("deletionTimestamp")]


def ready_pods(local: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return [pod for pod in pool_pods(local, namespace, name) if pod_is_ready(pod) and pod["status"].get("podIP")]


def wait_pool_ready(local: LocalCluster, namespace: str, name: str, *, generation: int = 1,
                    replicas: int | None = None, timeout_s: float = ROLLOUT_PATIENCE_SECONDS) -> dict[str, Any]:
    """The pool once Ready=True for `generation` (with `replicas` Ready pods when given)."""

    def ready() -> dict[str, Any] | None:
        pool = get_pool(local, namespace, name)
        cond = conditions(pool).get("Ready") or {}
        if cond.get("status") != "True" or cond.get("observedGeneration") != generation:
            return None
        if replicas is not None and (pool["status"].get("readyReplicas"),
                                     len(ready_pods(local, namespace, name))) != (replicas, replicas):
            return None
        return pool

    found: dict[str, Any] = local.wait_for(f"WarmPool {name} Ready at generation {generation}", ready,
                                           timeout_s=timeout_s)
    return found


def invoke(ip: str, sha: str, export: str, args: list[Any], *, tenant: str = TENANT,
           timeout_s: float = 10) -> tuple[int, Any]:
    """POST /v1/{tenant}/{sha}/{export} to a pod at its IP; the status and the decoded body."""
    request = urllib.request.Request(f"http://{ip}:{RUNTIME_PORT}/v1/{tenant}/{sha}/{export}",
                                     data=json.dumps({"args": args}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_text(url: str, timeout_s: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def draws(ip: str, sha: str, tenant: str = TENANT) -> PodMetrics:
    """Warm-pool hits, misses and idle warm instances of one tuple, from the pod's /metrics."""
    status, text = get_text(f"http://{ip}:{RUNTIME_PORT}/metrics")
    assert status == 200, text
    found = pool_metrics(text, tenant=tenant, module=sha[:12])
    assert found is not None, f"no pool metrics for {tenant}/{sha[:12]} at {ip}"
    return found


def expected_score(a: float, b: float) -> float:
    """What the example module's score(a, b) computes: logistic(1.5 a - 2 b + 0.25)."""
    return 1.0 / (1.0 + math.exp(-(1.5 * a - 2.0 * b + 0.25)))

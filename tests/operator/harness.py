"""Backend-independent test harness: a cluster seen only through its API, and the operator under test.

Scenarios talk to `Cluster`, so the same scenario runs against the kmock emulator here and
against a real kube-apiserver (tests/e2e/real_cluster.py) by providing another `Cluster`. What an
API server alone does not do (a Deployment controller creating pods, a kubelet reporting them,
the garbage collector) is played by the harness through ordinary API writes on the emulator; on
the real control plane the real controllers and node agent do it and `roll_out` waits for them.
So scenarios give pools what a real pod needs (a real module, an impossible CPU request for an
unschedulable pool) and read pod names, restart counts and exit codes from the API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import kopf
from prometheus_client import CollectorRegistry

from warmpool_operator.app import Registrar, run_operator
from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, PODS, SERVICES, WARMPOOLS, Kind
from warmpool_operator.kube import KubeApi, Timeouts
from warmpool_operator.render import config_map_name, deployment_name, selector_string, service_name
from warmpool_operator.settings import OperatorConfig

TEST_USER_AGENT = "warmpool-tests/1"
# A liveness bound so that a broken operator fails the test instead of hanging it; never a
# statement about how fast anything should be.
PATIENCE_SECONDS = 60.0

# Fast loops for tests: resync and retries within a second, nothing exposed on shared ports.
TEST_CONFIG = OperatorConfig(
    runtime_image="warmpool:test",
    resync_seconds=1.0,
    retry_backoff_seconds=(0.2, 0.5, 1.0),
    probe_timeout_seconds=2.0,
    metrics_port=0,
    health_port=0,
    standalone=True,
)


SHA_A = "a" * 64
SHA_B = "b" * 64

# Real modules, for pools whose pods must really start: the smallest valid module, and the same
# with a custom section (same behaviour, other bytes, so another sha256).
ECHO_WASM = b"\x00asm\x01\x00\x00\x00"
ECHO_V2_WASM = ECHO_WASM + b"\x00\x03\x02v2"
ECHO_MODULES = "echo-modules"
ECHO_KEYS = {"echo.wasm": ECHO_WASM, "echo-v2.wasm": ECHO_V2_WASM}


def warmpool_manifest(name: str = "echo", **spec: Any) -> dict[str, Any]:
    """A valid WarmPool as a user would apply it; keyword arguments override spec fields."""
    body: dict[str, Any] = {
        "tenant": "acme",
        "module": {"sha256": SHA_A, "source": {"path": "/modules/echo.wasm"}},
        "warmInstancesPerTuple": 4,
        "maxTotalWarm": 16,
        "replicas": 2,
    }
    body.update(spec)
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1",
        "kind": "WarmPool",
        "metadata": {"name": name},
        "spec": body,
    }


def echo_module(key: str = "echo.wasm") -> dict[str, Any]:
    """`spec.module` of a real module from the ConfigMap `provide_modules` creates."""
    sha = hashlib.sha256(ECHO_KEYS[key]).hexdigest()
    return {"sha256": sha, "source": {"configMapRef": {"name": ECHO_MODULES, "key": key}}}


async def provide_modules(cluster: Cluster) -> None:
    """The ConfigMap holding the echo modules (in binaryData), as a user would ship them."""
    binary = {key: base64.b64encode(data).decode() for key, data in ECHO_KEYS.items()}
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ECHO_MODULES}, "binaryData": binary}
    await cluster.api.create(CONFIGMAPS, cluster.namespace, body)


class Cluster(Protocol):
    """A Kubernetes API server the operator and the test both talk to."""

    namespace: str
    api: KubeApi
    """The test's own client (its writes are not the operator's)."""

    def connection(self) -> kopf.ConnectionInfo:
        """Credentials the operator logs in with."""
        ...

    async def collect_garbage(self) -> None:
        """Delete objects whose controlling owner is gone (the garbage collector's job)."""
        ...

    def operator_child_writes(self) -> int | None:
        """Writes the operator has made to Deployments, Services and ConfigMaps so far, when the
        backend can count requests (otherwise scenarios rely on resourceVersions alone)."""
        ...

    def operator(self) -> contextlib.AbstractAsyncContextManager[OperatorView]:
        """The operator under test runs inside this context."""
        ...

    async def roll_out(self, name: str, count: int, pod: PodSpec | None = None) -> None:
        """Bring `count` pods of the pool's current template into the state `pod` describes
        (the emulator has no controllers or kubelet: the harness plays them, see `simulate_rollout`;
        a real cluster's controllers and nodes do it, and this waits until they have)."""
        ...


class OperatorView(Protocol):
    """What scenarios read from the operator under test: its Prometheus metrics."""

    async def sample(self, name: str, **labels: str) -> float:
        """Sum of the samples of metric `name` carrying `labels`."""
        ...

    async def reconciles(self, **labels: str) -> float:
        ...


@dataclass
class ChildKeys:
    name: str

    @property
    def children(self) -> tuple[tuple[Any, str], ...]:
        return (
            (CONFIGMAPS, config_map_name(self.name)),
            (SERVICES, service_name(self.name)),
            (DEPLOYMENTS, deployment_name(self.name)),
        )


async def wait_for(probe: Callable[[], Awaitable[Any]], *, what: str) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` past the liveness bound."""
    last: Any = None
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while True:
                try:
                    last = await probe()
                except AssertionError as exc:
                    last = exc
                else:
                    if last:
                        return last
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what} (last seen: {last!r})") from None


def condition(body: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


EVENTS = Kind("v1", "events")


async def events_for(cluster: Cluster, name: str, reason: str | None = None) -> list[dict[str, Any]]:
    found = await cluster.api.list(EVENTS, cluster.namespace)
    return [
        event
        for event in found
        if (event.get("involvedObject") or {}).get("name") == name
        and (event.get("involvedObject") or {}).get("kind") == "WarmPool"
        and (reason is None or event.get("reason") == reason)
    ]


async def get_pool(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return await cluster.api.get(WARMPOOLS, cluster.namespace, name)


async def children_of(cluster: Cluster, name: str) -> dict[str, dict[str, Any] | None]:
    keys = ChildKeys(name)
    return {kind.plural: await cluster.api.get(kind, cluster.namespace, child) for kind, child in keys.children}


async def resource_versions(cluster: Cluster, name: str) -> dict[str, str | None]:
    found = await children_of(cluster, name)
    return {kind: (obj or {}).get("metadata", {}).get("resourceVersion") for kind, obj in found.items()}


async def pool_pods(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """The pool's pods as the API holds them (simulated ones, or those real controllers made)."""
    return await cluster.api.list(PODS, cluster.namespace, label_selector=selector_string(name))


@dataclass
class PodSpec:
    """How a simulated pod of the pool looks to the operator."""

    ready: bool = True
    pod_ip: str | None = None
    http_port: int | None = None
    container_state: Mapping[str, Any] | None = None
    last_state: Mapping[str, Any] | None = None
    restart_count: int = 0
    scheduled: bool = True
    schedule_message: str = "0/3 nodes are available: 3 Insufficient cpu."


async def simulate_rollout(cluster: Cluster, name: str, count: int, pod: PodSpec | None = None) -> None:
    """Play the Deployment controller and kubelets: `count` pods of the current template, as `pod`."""
    pod = pod or PodSpec()
    ns = cluster.namespace
    deployment = await cluster.api.get(DEPLOYMENTS, ns, deployment_name(name))
    assert deployment is not None, "no Deployment to roll out"
    template = deployment["spec"]["template"]
    for old in await cluster.api.list(PODS, ns, label_selector=_selector(deployment)):
        await cluster.api.delete(PODS, ns, old["metadata"]["name"])
    containers = [dict(c) for c in template["spec"]["containers"]]
    if pod.http_port is not None:
        containers[0]["ports"] = [{"name": "http", "containerPort": pod.http_port, "protocol": "TCP"}]
    for index in range(count):
        pod_name = f"{name}-pod-{index}"
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": dict(template["metadata"].get("annotations") or {}),
            },
            "spec": {**template["spec"], "containers": containers},
        }
        await cluster.api.create(PODS, ns, body)
        await cluster.api.patch_status(PODS, ns, pod_name, _pod_status(pod))
    ready = count if pod.ready else 0
    await cluster.api.patch_status(
        DEPLOYMENTS,
        ns,
        deployment_name(name),
        {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": count,
            "updatedReplicas": count,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    )


def _selector(deployment: Mapping[str, Any]) -> str:
    labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _pod_status(pod: PodSpec) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [
        {"type": "PodScheduled", "status": "True"}
        if pod.scheduled
        else {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": pod.schedule_message},
        {"type": "Ready", "status": "True" if pod.ready else "False"},
    ]
    status: dict[str, Any] = {"phase": "Running" if pod.scheduled else "Pending", "conditions": conditions}
    if pod.pod_ip is not None:
        status["podIP"] = pod.pod_ip
    if pod.scheduled:
        container: dict[str, Any] = {
            "name": "runtime",
            "ready": pod.ready,
            "restartCount": pod.restart_count,
            "state": dict(pod.container_state or {"running": {"startedAt": "2025-01-01T00:00:00Z"}}),
        }
        if pod.last_state is not None:
            container["lastState"] = dict(pod.last_state)
        status["containerStatuses"] = [container]
    return status


@dataclass
class RunningOperator:
    """The real operator (kopf, handlers, adapter, prober) running in this event loop."""

    metrics: CollectorRegistry
    task: asyncio.Task[None]
    stop_flag: asyncio.Event = field(default_factory=asyncio.Event)

    async def sample(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching `labels`."""
        total = 0.0
        for metric in self.metrics.collect():
            for sample in metric.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    async def reconciles(self, **labels: str) -> float:
        return await self.sample("warmpool_operator_reconciles_total", **labels)


@contextlib.asynccontextmanager
async def operator_running(
    cluster: Cluster, *, config: OperatorConfig = TEST_CONFIG, namespaces: Sequence[str] | None = None,
    registrars: Sequence[Registrar] = (),
) -> AsyncIterator[RunningOperator]:
    """The real operator against `cluster`, ready when yielded; reconciliation only, unless
    `registrars` add handlers (as `app.EXTRA_REGISTRARS` does in production)."""
    registry = CollectorRegistry()
    stop_flag = asyncio.Event()
    ready_flag = asyncio.Event()

    async def login() -> kopf.ConnectionInfo:
        return cluster.connection()

    task = asyncio.create_task(
        run_operator(
            config,
            namespaces=list(namespaces or [cluster.namespace]),
            login=login,
            metrics_registry=registry,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            registrars=list(registrars),
        )
    )
    running = RunningOperator(metrics=registry, task=task, stop_flag=stop_flag)
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            done, _ = await asyncio.wait(
                {task, asyncio.create_task(ready_flag.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        if task in done:
            task.result()
            raise AssertionError("the operator exited before it was ready")
        yield running
    finally:
        stop_flag.set()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(PATIENCE_SECONDS):
                await task


def make_client(connection: kopf.ConnectionInfo) -> KubeApi:
    return KubeApi(connection, timeouts=Timeouts(30.0, 5.0), user_agent=TEST_USER_AGENT)


def with_config(**changes: Any) -> OperatorConfig:
    return replace(TEST_CONFIG, **changes)

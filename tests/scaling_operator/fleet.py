"""Real runtime pods behind a WarmPool in the emulated API, a load generator, and the operator with its autoscaler.

The emulator has no Deployment controller or kubelet: the test starts real `warmpool runtime
serve` processes (each on its own loopback address, with the config the operator rendered into
the pool's ConfigMap) and records them as the pool's Ready pods, each with its own IP and port,
so the operator scrapes each one directly as it would scrape pod IPs in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.operator.harness import Cluster, PodSpec, RunningOperator, operator_running, wait_for
from tests.operator.runtime_pods import RuntimePod, runtime_pod
from warmpool_operator import scaling_handlers
from warmpool_operator.kinds import DEPLOYMENTS, PODS
from warmpool_operator.render import deployment_name

# A guest that counts down from its argument: a bounded, CPU-bound call whose length the test
# chooses. Calls longer than the runtime's 2 ms inline budget run on its worker threads, so
# several are in flight at once and the warm instances run out: misses.
SPIN_WAT = """
(module
  (func (export "spin") (param $n i32) (result i32)
    (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $acc)))
"""


def autoscaling_operator(cluster: Cluster) -> contextlib.AbstractAsyncContextManager[RunningOperator]:
    """The real operator with the autoscaler's handlers registered, as `app.EXTRA_REGISTRARS`
    does in production."""
    return operator_running(cluster, registrars=[scaling_handlers.register])


@contextlib.asynccontextmanager
async def runtime_pods(config_text: str, workdir: Path, count: int) -> AsyncIterator[list[RuntimePod]]:
    """`count` real runtime processes, each prewarmed (its /readyz says 200) before it is yielded."""
    async with contextlib.AsyncExitStack() as stack:
        pods = [
            await stack.enter_async_context(runtime_pod(config_text, workdir / f"pod-{index}"))
            for index in range(count)
        ]
        async with aiohttp.ClientSession() as session:
            for pod in pods:
                await wait_for(_ready(session, pod), what=f"runtime pod {pod.ip} prewarmed")
        yield pods


def _ready(session: aiohttp.ClientSession, pod: RuntimePod) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"http://{pod.ip}:{pod.port}/readyz") as resp:
                return resp.status == 200
        return False

    return probe


async def place_pods(cluster: Cluster, name: str, pods: Sequence[RuntimePod]) -> None:
    """Record `pods` as the pool's Ready pods, one Pod object per process with its IP and port."""
    first = pods[0]
    await cluster.roll_out(name, len(pods), PodSpec(ready=True, pod_ip=first.ip, http_port=first.port))
    for index, pod in enumerate(pods[1:], start=1):
        pod_name = f"{name}-pod-{index}"
        found = await cluster.api.get(PODS, cluster.namespace, pod_name)
        assert found is not None
        containers = [dict(c) for c in found["spec"]["containers"]]
        containers[0]["ports"] = [{"name": "http", "containerPort": pod.port, "protocol": "TCP"}]
        await cluster.api.merge_patch(PODS, cluster.namespace, pod_name, {"spec": {"containers": containers}})
        await cluster.api.patch_status(PODS, cluster.namespace, pod_name, {"podIP": pod.ip})


@dataclass
class LoadCounts:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    shed: int = 0
    """Not sent because `max_outstanding` invocations were already waiting."""


@contextlib.asynccontextmanager
async def steady_load(
    pods: Sequence[RuntimePod],
    *,
    tenant: str,
    sha256: str,
    rate: float,
    spin: int,
    max_outstanding: int = 32,
) -> AsyncIterator[LoadCounts]:
    """Open-loop load: `rate` invocations of `spin(spin)` per second, each to a pod picked at
    random (as a Service routes), each in its own task; stops when the context exits."""
    counts = LoadCounts()
    outstanding: set[asyncio.Task[None]] = set()

    async def invoke(session: aiohttp.ClientSession, pod: RuntimePod) -> None:
        url = f"http://{pod.ip}:{pod.port}/v1/{tenant}/{sha256}/spin"
        try:
            async with session.post(url, json={"args": [spin]}) as resp:
                await resp.read()
                if resp.status == 200:
                    counts.answered += 1
                else:
                    counts.failed += 1
        except (aiohttp.ClientError, TimeoutError):
            counts.failed += 1

    async def generate(session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if len(outstanding) >= max_outstanding:
                counts.shed += 1
            else:
                task = asyncio.create_task(invoke(session, random.choice(pods)))
                outstanding.add(task)
                task.add_done_callback(outstanding.discard)
                counts.sent += 1
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        generator = asyncio.create_task(generate(session))
        try:
            yield counts
        finally:
            generator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await generator
            for task in list(outstanding):
                task.cancel()
            await asyncio.gather(*outstanding, return_exceptions=True)


async def pod_misses(pods: Sequence[RuntimePod]) -> float:
    """Misses the runtime pods themselves have counted (`tensor_wasm_pool_draws_total{result="miss"}`)."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for pod in pods:
            async with session.get(f"http://{pod.ip}:{pod.port}/metrics") as resp:
                text = await resp.text()
            for line in text.splitlines():
                if line.startswith("tensor_wasm_pool_draws_total{") and 'result="miss"' in line:
                    total += float(line.rsplit(" ", 1)[1])
    return total


async def deployment_replicas(cluster: Cluster, name: str) -> int | None:
    found = await cluster.api.get(DEPLOYMENTS, cluster.namespace, deployment_name(name))
    if found is None:
        return None
    replicas: Any = (found.get("spec") or {}).get("replicas")
    return int(replicas) if isinstance(replicas, int) else None

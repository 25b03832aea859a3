"""The operator's periodic scaling of a WarmPool against the emulated API, with `/metrics` served
by real runtime processes under load from a small load generator."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import events_for, get_pool, wait_for, warmpool_manifest
from tests.operator.scenarios import all_children
from tests.runtime.wasm import write_module
from tests.scaling_operator.fleet import (
    SPIN_WAT,
    autoscaling_operator,
    deployment_replicas,
    place_pods,
    pod_misses,
    runtime_pods,
    steady_load,
)
from warmpool_operator.kinds import WARMPOOLS
from warmpool_operator.status import SCALING_OFF_REASON

pytestmark = [pytest.mark.component, pytest.mark.timeout(240)]

TICK = 0.5
PANIC = 1.5
STABLE = 4.0
DELAY = 3.0
MIN_REPLICAS = 2
MAX_REPLICAS = 6
AUTOSCALING = {
    "enabled": True,
    "minReplicas": MIN_REPLICAS,
    "maxReplicas": MAX_REPLICAS,
    "tickSeconds": TICK,
    "panicWindowSeconds": PANIC,
    "stableWindowSeconds": STABLE,
    "scaleDownDelaySeconds": DELAY,
}
# About 40 calls a second of a few milliseconds each: under half a core, yet with one warm
# instance per pod (the target allows 1 % misses) far more load than two pods carry.
RATE = 40.0
SPIN = 15_000_000
PODS = 2
SCRAPE_FAILURES = "warmpool_operator_autoscaler_scrape_failures_total"
SCALE_EVENTS = "warmpool_operator_autoscaler_scale_events_total"
DESIRED = "warmpool_operator_autoscaler_desired_replicas"


async def create_pool(cluster: EmulatedCluster, name: str, workdir: Path, **spec: Any) -> str:
    """A WarmPool of the spinning module (one warm instance per pod); returns the module's sha256."""
    path, sha = write_module(workdir, SPIN_WAT)
    body = {"warmInstancesPerTuple": 1, "maxTotalWarm": 4, "replicas": MIN_REPLICAS, "autoscaling": AUTOSCALING}
    body.update(spec)
    manifest = warmpool_manifest(name, module={"sha256": sha, "source": {"path": str(path)}}, **body)
    await cluster.api.create(WARMPOOLS, cluster.namespace, manifest)
    return sha


async def rendered_config(cluster: EmulatedCluster, name: str) -> str:
    children = await wait_for(lambda: all_children(cluster, name), what="the pool's children")
    assert children["deployments"]["spec"]["replicas"] == MIN_REPLICAS  # set once, at creation
    return str(children["configmaps"]["data"]["runtime.yaml"])


def replicas_where(cluster: EmulatedCluster, name: str, test: Callable[[int], bool]) -> Callable[[], Any]:
    async def probe() -> int | None:
        found = await deployment_replicas(cluster, name)
        return found if found is not None and test(found) else None

    return probe


def status_where(cluster: EmulatedCluster, name: str, test: Callable[[dict[str, Any]], bool]) -> Callable[[], Any]:
    async def probe() -> dict[str, Any] | None:
        pool = await get_pool(cluster, name)
        status = (pool or {}).get("status") or {}
        return status if test(status) else None

    return probe


async def test_scales_up_under_load_and_back_down_after_the_delay(cluster: EmulatedCluster, tmp_path: Path) -> None:
    sha = await create_pool(cluster, "busy", tmp_path)
    async with autoscaling_operator(cluster) as running:
        config = await rendered_config(cluster, "busy")
        async with runtime_pods(config, tmp_path, PODS) as pods:
            await place_pods(cluster, "busy", pods)
            # Idle pods measured: the pool stays at its minimum, and says so.
            await wait_for(
                status_where(cluster, "busy", lambda s: str(s.get("scalingReason", "")).startswith("keep 2:")),
                what="an idle pool kept at minReplicas",
            )

            async with steady_load(pods, tenant="acme", sha256=sha, rate=RATE, spin=SPIN) as load:
                scaled = await wait_for(replicas_where(cluster, "busy", lambda r: r > MIN_REPLICAS), what="a scale-up")
                (first, *_) = await wait_for(lambda: events_for(cluster, "busy", "ScaledUp"), what="a ScaledUp Event")
                assert first["type"] == "Normal"
                assert first["message"].startswith(f"runtime pods {MIN_REPLICAS} → ")
                status = await wait_for(
                    status_where(cluster, "busy", lambda s: s.get("desiredReplicas", 0) > MIN_REPLICAS),
                    what="desiredReplicas in status",
                )
                # The scale-up acts on the measured load, so the miss ratio written with it may still
                # be 0; the pods' own counters below show the misses that the load caused.
                assert 0.0 <= status["missRatio"] <= 1.0
                assert status["lastScaleTime"]
                assert "Erlangs" in status["scalingReason"]
                assert await pod_misses(pods) > 0
                assert await running.sample(SCALE_EVENTS, warmpool="busy", direction="up") >= 1
                assert await running.sample(DESIRED, namespace=cluster.namespace, warmpool="busy") > 2
            assert load.answered > 0
            load_stopped = asyncio.get_running_loop().time()

            # The pods stay up and answer scrapes: the load is gone, so after the delay it scales down.
            await wait_for(replicas_where(cluster, "busy", lambda r: r == MIN_REPLICAS), what="scale-down to min")
            assert asyncio.get_running_loop().time() - load_stopped >= DELAY

            async def down_to_min() -> list[dict[str, Any]] | None:
                found = await events_for(cluster, "busy", "ScaledDown")
                return found if any(f"→ {MIN_REPLICAS}: " in event["message"] for event in found) else None

            downs = await wait_for(down_to_min, what=f"a ScaledDown Event to {MIN_REPLICAS}")
            assert any(event["message"].startswith(f"runtime pods {scaled} → ") for event in downs)
            await wait_for(
                status_where(cluster, "busy", lambda s: s.get("desiredReplicas") == MIN_REPLICAS),
                what="desiredReplicas back at min",
            )
            assert await running.sample(SCALE_EVENTS, warmpool="busy", direction="down") >= 1

    pool = await get_pool(cluster, "busy")
    assert pool is not None
    # The Deployment was scaled; the WarmPool's own spec was never written.
    assert pool["spec"]["replicas"] == MIN_REPLICAS
    assert pool["metadata"]["generation"] == 1


async def test_holds_the_replicas_while_the_pods_metrics_are_lost(cluster: EmulatedCluster, tmp_path: Path) -> None:
    sha = await create_pool(cluster, "lost", tmp_path)
    async with autoscaling_operator(cluster) as running:
        config = await rendered_config(cluster, "lost")
        fleet = contextlib.AsyncExitStack()
        pods = await fleet.enter_async_context(runtime_pods(config, tmp_path, PODS))
        try:
            await place_pods(cluster, "lost", pods)
            async with steady_load(pods, tenant="acme", sha256=sha, rate=RATE, spin=SPIN):
                await wait_for(replicas_where(cluster, "lost", lambda r: r > MIN_REPLICAS), what="a scale-up")
                # The runtime processes die under load; their Pod objects still say Ready (as they
                # would until a kubelet noticed), so every scrape now fails.
                await fleet.aclose()
                status = await wait_for(
                    status_where(cluster, "lost", lambda s: "no usable metrics" in str(s.get("scalingReason"))),
                    what="a hold for lost metrics",
                )
                held = await deployment_replicas(cluster, "lost")
                assert held is not None
                assert held > MIN_REPLICAS
                assert status["scalingReason"].startswith(f"hold {held}: ")
                assert f"(0/{PODS} pods answered)" in status["scalingReason"]
                assert status["desiredReplicas"] == held
                ups = len(await events_for(cluster, "lost", "ScaledUp"))

                # Enough failed ticks for the stable window and the scale-down delay to pass many
                # times over: without data nothing moves, neither up nor down.
                failed = await running.sample(SCRAPE_FAILURES, warmpool="lost")
                ticks = 3 * math.ceil((STABLE + DELAY) / TICK)

                async def failed_ticks() -> bool:
                    return await running.sample(SCRAPE_FAILURES, warmpool="lost") >= failed + PODS * ticks

                await wait_for(failed_ticks, what=f"{ticks} more ticks of failed scrapes")
                assert await deployment_replicas(cluster, "lost") == held
                assert await events_for(cluster, "lost", "ScaledDown") == []
                assert len(await events_for(cluster, "lost", "ScaledUp")) == ups
                pool = await get_pool(cluster, "lost")
                assert pool is not None
                assert pool["status"]["desiredReplicas"] == held
                assert "no usable metrics" in pool["status"]["scalingReason"]
        finally:
            await fleet.aclose()


async def test_turning_autoscaling_off_hands_the_replicas_back_to_the_spec(
    cluster: EmulatedCluster, tmp_path: Path
) -> None:
    sha = await create_pool(cluster, "manual", tmp_path, replicas=3)
    async with autoscaling_operator(cluster) as running:
        config = await rendered_config(cluster, "manual")
        async with runtime_pods(config, tmp_path, PODS) as pods:
            await place_pods(cluster, "manual", pods)
            async with steady_load(pods, tenant="acme", sha256=sha, rate=RATE, spin=SPIN):
                await wait_for(replicas_where(cluster, "manual", lambda r: r > 3), what="a scale-up past spec.replicas")
                off = {"spec": {"autoscaling": {"enabled": False}}}
                await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "manual", off)

                await wait_for(replicas_where(cluster, "manual", lambda r: r == 3), what="spec.replicas applied")
                status = await wait_for(
                    status_where(cluster, "manual", lambda s: s.get("scalingReason") == SCALING_OFF_REASON),
                    what="status saying autoscaling is off",
                )
                assert "missRatio" not in status
                ups = len(await events_for(cluster, "manual", "ScaledUp"))

                # The load goes on; over several resyncs the replicas stay with the spec.
                resyncs = await running.reconciles(trigger="resync")

                async def resynced() -> bool:
                    return await running.reconciles(trigger="resync") >= resyncs + 5

                await wait_for(resynced, what="five more resyncs")
                assert await deployment_replicas(cluster, "manual") == 3
                assert len(await events_for(cluster, "manual", "ScaledUp")) == ups
                assert await running.sample(DESIRED, warmpool="manual") == 0.0  # the series is gone
                pool = await get_pool(cluster, "manual")
                assert pool is not None
                assert pool["status"]["desiredReplicas"] == 3
                assert pool["status"]["scalingReason"] == SCALING_OFF_REASON


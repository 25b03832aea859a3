"""The autoscaler on the real cluster: up under real load over Ready pod IPs, back down after it stops."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import (
    RUNTIME_PORT,
    RealCluster,
    conditions,
    eventually,
    example_documents,
    example_module,
    wait_pool_ready,
)
from tests.operator.harness import events_for
from warmpool.demo.load import LoadCounts, Phase, run_load
from warmpool_operator.health import pod_is_ready
from warmpool_operator.kinds import DEPLOYMENTS, PODS, WARMPOOLS
from warmpool_operator.render import selector_string

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

POOL = "classify"
MIN_REPLICAS = 1
MAX_REPLICAS = 4
AUTOSCALING = {
    "enabled": True, "minReplicas": MIN_REPLICAS, "maxReplicas": MAX_REPLICAS, "targetMissRatio": 0.02,
    "tickSeconds": 1, "panicWindowSeconds": 3, "stableWindowSeconds": 10, "scaleDownDelaySeconds": 5,
}
HOLD_MS = 100
# 60 calls a second each holding an instance for 100 ms: 6 Erlangs offered to pods of 4 warm
# instances each, far above what one pod serves warm at a 2 % miss target and more than
# MAX_REPLICAS pods would need to stay under it (so the sizing never asks for fewer while the load
# lasts), yet little CPU: the guest waits on a WASI clock.
RATE = 60.0
LOAD_SECONDS = 60.0


@dataclass
class Watch:
    """What the test saw of the pool while it ran: Ready pod addresses and every status."""

    targets: list[str] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    """The Deployment's replicas, as sampled."""
    max_ready: int = 0

    async def follow(self, view: RealCluster) -> None:
        while True:
            pods = await view.api.list(PODS, view.namespace, label_selector=selector_string(POOL))
            ready = [p for p in pods if pod_is_ready(p) and p["status"].get("podIP")
                     and not p["metadata"].get("deletionTimestamp")]
            self.targets[:] = [f"http://{p['status']['podIP']}:{RUNTIME_PORT}" for p in ready]
            self.max_ready = max(self.max_ready, len(ready))
            pool = await view.api.get(WARMPOOLS, view.namespace, POOL)
            if pool is not None:
                self.statuses.append(dict(pool.get("status") or {}))
            self.replicas.append(await replicas(view))
            await asyncio.sleep(0.5)


@pytest.fixture
async def view(operator: LocalCluster, namespace: str) -> AsyncIterator[RealCluster]:
    async with RealCluster(operator, namespace) as found:
        yield found


def autoscaled_example() -> str:
    documents = copy.deepcopy(example_documents())
    spec = documents[1]["spec"]
    del spec["replicas"]
    spec["autoscaling"] = AUTOSCALING
    return "\n---\n".join(json.dumps(doc) for doc in documents)


async def replicas(view: RealCluster) -> int:
    deployment = await view.api.get(DEPLOYMENTS, view.namespace, POOL)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


async def test_the_autoscaler_scales_up_under_load_and_back_down_after_it_stops(
    operator: LocalCluster, view: RealCluster
) -> None:
    _, sha = example_module()
    operator.kubectl("apply", f"--namespace={view.namespace}", "--filename=-", stdin=autoscaled_example())
    settled = wait_pool_ready(operator, view.namespace, POOL, replicas=MIN_REPLICAS)
    spec, generation = settled["spec"], settled["metadata"]["generation"]
    assert await replicas(view) == MIN_REPLICAS

    watch = Watch()
    follower = asyncio.create_task(watch.follow(view))
    counts = LoadCounts()
    try:
        async def seen() -> list[str]:
            return watch.targets

        await eventually(seen, what="the Ready pod seen")
        load = asyncio.create_task(run_load(
            [Phase(LOAD_SECONDS, RATE, RATE)], lambda: watch.targets, f"/v1/acme/{sha}/hold",
            json.dumps({"args": [HOLD_MS]}).encode(), counts, clock=time.monotonic, rng=random.Random(5)))

        async def scaled_up() -> int | None:
            assert not load.done() or load.exception() is None
            found = await replicas(view)
            return found if found >= 3 else None

        peak = await eventually(scaled_up, what="the Deployment scaled to 3 or more pods under load",
                                timeout_s=LOAD_SECONDS)
        up_status = (await view.api.get(WARMPOOLS, view.namespace, POOL) or {})["status"]
        await load
        loaded_statuses, loaded_replicas = list(watch.statuses), list(watch.replicas)

        async def scaled_down() -> dict[str, Any] | None:
            pool = await view.api.get(WARMPOOLS, view.namespace, POOL)
            status = (pool or {}).get("status") or {}
            done = await replicas(view) == MIN_REPLICAS and status.get("desiredReplicas") == MIN_REPLICAS
            return pool if done else None

        down = await eventually(scaled_down, what=f"the pool back at {MIN_REPLICAS} pod once the load stopped",
                                timeout_s=300)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

    # The load really exceeded one pod's warm instances, was served, and met more pods as they came;
    # no pod went away while it lasted (so no request met a pod being removed).
    assert counts.sent > RATE * LOAD_SECONDS / 2
    assert all(later >= earlier for earlier, later in itertools.pairwise(loaded_replicas)), loaded_replicas
    # A pod overloaded before the autoscaler reacts sheds calls (429/503 with Retry-After, counted
    # apart): nothing else may fail, no connection error and no error answer of another kind.
    assert counts.failed == 0, counts.errors
    assert watch.max_ready >= 3
    assert peak <= MAX_REPLICAS
    # What the autoscaler said while loaded, and after.
    assert up_status["desiredReplicas"] >= 3
    assert up_status["lastScaleTime"]
    assert max(float(s.get("missRatio") or 0) for s in loaded_statuses) > 0
    final = down["status"]
    assert final["desiredReplicas"] == MIN_REPLICAS
    assert final["lastScaleTime"] > up_status["lastScaleTime"]
    assert "missRatio" in final
    assert conditions(down)["Stalled"]["status"] == "False"
    reasons = {event["reason"] for event in await events_for(view, POOL)}
    assert {"ScaledUp", "ScaledDown"} <= reasons
    # The operator sized the Deployment; the WarmPool's own spec is the user's and never changed.
    assert down["spec"] == spec
    assert down["metadata"]["generation"] == generation

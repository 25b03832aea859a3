"""`warmpool bench fleet-reconcile`: one RuntimeFleet reconciliation's wall time, CPU and peak memory at N members.

Runs `runtimefleet.reconcile.reconcile_fleet` in-process against an in-memory store (objects kept as
JSON text, so every read decodes a fresh copy as an API client would) and real loopback HTTP servers
standing in for the fleet's pods, each serving a `/readyz` body listing every member's tuple warm.
Three reconciliations per N: the first (every member's status written), then two at steady state
(nothing changed: no write); the second is measured under tracemalloc (peak), the third without it
(wall, CPU). The API transport is not measured (see `warmpool bench fleet-cluster` for the whole path).

Figures on the shared 2-core development machine, 2 fleet pods (one run each, same sitting; "before" is
the operator before the fleet's reconciliation indexed the pods' tuples, emitted its config with libyaml
and remembered it, and reused its members' parsed specs):

  members  first wall s  steady wall s  steady CPU s  steady peak MiB
  before
      100         0.262          0.116         0.093              1.4
     1000         2.031          2.170         1.109             13.5
  after (the reconcile's parsed specs kept between runs, as the controller keeps them per fleet)
      100         0.158          0.028         0.028              1.0
     1000         0.494          0.177         0.177              9.2

("before" ran this bench without its `specs` argument, which that operator did not have.)

Before, a steady-state reconcile at 1,000 members spent its time in the pure-Python YAML emitter (the
~290 KB config, ~57% under cProfile) and in finding each member's tuple by scanning every pod's list
(members x tuples x pods: 3 million `TupleReport.is_for` calls over three reconciles). After, what is
left is comparing each member's status with the one it has (`diff.drift`), decoding the store's JSON
and parsing the pods' /readyz bodies. The traced peak of one reconcile is ~9 MiB at 1,000 members:
the operator's RSS at that size (566 MiB on the local control plane) is held elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from warmpool_contract import READYZ_PATH
from warmpool_operator.kinds import PODS, RUNTIMEFLEETS, WARMPOOLS, Kind
from warmpool_operator.render import RenderOptions
from warmpool_operator.runtimefleet.reader import ReadyzReader
from warmpool_operator.runtimefleet.reconcile import reconcile_fleet
from warmpool_operator.runtimefleet.render import selector_labels
from warmpool_operator.runtimefleet.spec import parse_fleet
from warmpool_operator.runtimefleet.specs import ParsedSpecs

NAMESPACE = "bench"
FLEET = "shared"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPTIONS = RenderOptions(default_image="warmpool:bench")


class MemoryStore:
    """The `FleetStore` protocol over dicts of JSON text; label selectors match exactly."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], str] = {}
        self.writes = 0

    def put(self, kind: Kind, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        self.objects[(kind.plural, meta["namespace"], meta["name"])] = json.dumps(body)

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        text = self.objects.get((kind.plural, namespace, name))
        return None if text is None else dict(json.loads(text))

    async def list(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(",")) if label_selector else {}
        out = []
        for (plural, ns, _), text in self.objects.items():
            if plural != kind.plural or (namespace is not None and ns != namespace):
                continue
            body = json.loads(text)
            labels = body["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                out.append(body)
        return out[:limit] if limit else out

    async def apply(self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes += 1
        found = await self.get(kind, namespace, name) or {}
        merged = {**found, **json.loads(json.dumps(body))}
        merged["metadata"] = {**(found.get("metadata") or {}), **merged["metadata"], "namespace": namespace}
        merged["metadata"].setdefault("uid", str(uuid.uuid4()))
        self.put(kind, merged)
        return merged

    async def patch_status(self, kind: Kind, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        self.writes += 1
        found = await self.get(kind, namespace, name)
        assert found is not None
        found["status"] = json.loads(json.dumps(status))
        self.put(kind, found)
        return found

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        return self.objects.pop((kind.plural, namespace, name), None) is not None


def sha(index: int) -> str:
    return f"{index:064x}"


def member(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool",
        "metadata": {"name": f"m{index}", "namespace": NAMESPACE, "uid": f"uid-{index}", "generation": 1,
                     "creationTimestamp": f"2026-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}Z"},
        "spec": {"tenant": f"t{index}", "module": {"sha256": sha(index),
                                                   "source": {"url": f"http://127.0.0.1:9/m{index}.wasm"}},
                 "fleetRef": {"name": FLEET, "namespace": NAMESPACE}},
    }


@contextlib.asynccontextmanager
async def fleet_pods(store: MemoryStore, members: int, pods: int) -> AsyncIterator[None]:
    """`pods` Ready fleet pods on 127.0.0.1, each serving a /readyz that lists every member warm."""
    body = json.dumps({"ready": True, "tuples": [
        {"tenant": f"t{i}", "sha256": sha(i), "state": "warm", "warm": 1} for i in range(members)]}).encode()

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(READYZ_PATH, readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for index in range(pods):
        store.put(PODS, {"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{FLEET}-runtime-{index}", "namespace": NAMESPACE,
                                      "labels": selector_labels(FLEET)},
                         "spec": {"containers": [{"name": "runtime", "ports": [
                             {"name": "http", "containerPort": port}]}]},
                         "status": {"phase": "Running", "podIP": "127.0.0.1",
                                    "conditions": [{"type": "Ready", "status": "True"}]}})
    try:
        yield
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Figures:
    members: int
    first_wall: float
    wall: float
    cpu: float
    peak_bytes: int
    steady_writes: int


async def measure(members: int, pods: int) -> Figures:
    store = MemoryStore()
    store.put(RUNTIMEFLEETS, {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                              "metadata": {"name": FLEET, "namespace": NAMESPACE, "uid": "fleet-uid",
                                           "generation": 1}, "spec": {}})
    for index in range(members):
        store.put(WARMPOOLS, member(index))
    reader = ReadyzReader(timeout_seconds=30.0)
    specs = ParsedSpecs()  # kept between reconciliations, as the controller keeps one per fleet

    async def once() -> None:
        body = await store.get(RUNTIMEFLEETS, NAMESPACE, FLEET)
        assert body is not None
        await reconcile_fleet(parse_fleet(body), store=store, reader=reader, options=OPTIONS, now=NOW,
                              watched=[NAMESPACE], specs=specs)

    try:
        async with fleet_pods(store, members, pods):
            started = time.perf_counter()
            await once()
            first_wall = time.perf_counter() - started
            writes = store.writes
            tracemalloc.start()
            await once()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            wall, cpu = time.perf_counter(), time.process_time()
            await once()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return Figures(members, first_wall, wall, cpu, peak, store.writes - writes)
    finally:
        await reader.close()


def run(sizes: Sequence[int], pods: int) -> int:
    print("members  first_wall_s  steady_wall_s  steady_cpu_s  steady_peak_MiB  steady_writes")
    for size in sizes:
        f = asyncio.run(measure(size, pods))
        print(f"{f.members:7d}  {f.first_wall:12.3f}  {f.wall:13.3f}  {f.cpu:12.3f}  "
              f"{f.peak_bytes / 2**20:15.1f}  {f.steady_writes:13d}")
    return 0

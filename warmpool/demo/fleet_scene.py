"""The fleet scene: one autoscaled RuntimeFleet keeping eight tenants' modules warm under differently shaped loads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml

from warmpool.demo.load import LoadCounts, Phase, rate_at, ready_pod_targets, run_load
from warmpool.demo.loopback import module_server
from warmpool.demo.plot import TenantSample, plot_fleet
from warmpool_operator.runtimefleet.render import selector_string as fleet_selector
from warmpool_operator.scaling.exposition import ExpositionError, pool_metrics

FLEET = "shared"
SCENE_SECONDS = 160.0
TICK = 2.0
TARGET_MISS = 0.02
HOLD_MS = 100
MAX_TOTAL_WARM = 24


@dataclass(frozen=True, slots=True)
class Tenant:
    """One member WarmPool of the fleet and the shape of the load it gets."""

    name: str
    shape: str
    phases: tuple[Phase, ...]


def _repeat(period: tuple[Phase, ...], seconds: float, offset: float = 0.0) -> tuple[Phase, ...]:
    """Constant-rate `period` over and over for `seconds`, started `offset` seconds into it."""
    out: list[Phase] = []
    t = -offset
    while t < seconds:
        for phase in period:
            begin, end = max(t, 0.0), min(t + phase.seconds, seconds)
            if end > begin:
                out.append(Phase(end - begin, phase.start, phase.end))
            t += phase.seconds
    return tuple(out)


def _burst(rate: float, on: float, off: float) -> tuple[Phase, ...]:
    return (Phase(off, 1, 1), Phase(on, rate, rate))


BUSY_SECONDS = 110.0
QUIET_TAIL = Phase(SCENE_SECONDS - BUSY_SECONDS, 1, 1)
"""Every tenant drops to one call a second at the end. The fleet keeps its burst capacity through it: the
decision lets a tuple's peak decay over minutes and holds a timer's surge for its next firing, so pods are
removed only well after the scene (`--keep` to watch it)."""


def _shaped(phases: tuple[Phase, ...]) -> tuple[Phase, ...]:
    return (*phases, QUIET_TAIL)


# A floor of one call a second keeps every tuple's arrivals from sleeping over a burst's start.
TENANTS = (
    Tenant("steady-a", "steady 20/s", _shaped((Phase(BUSY_SECONDS, 20, 20),))),
    Tenant("steady-b", "steady 6/s", _shaped((Phase(BUSY_SECONDS, 6, 6),))),
    Tenant("bursty-a", "bursts of 40/s", _shaped(_repeat(_burst(40, 12, 23), BUSY_SECONDS))),
    Tenant("bursty-b", "bursts of 30/s", _shaped(_repeat(_burst(30, 8, 17), BUSY_SECONDS, offset=12))),
    Tenant("timer-a", "timer: 5 s of 50/s every 30 s", _shaped(_repeat(_burst(50, 5, 25), BUSY_SECONDS, offset=10))),
    Tenant("timer-b", "timer: 3 s of 30/s every 20 s", _shaped(_repeat(_burst(30, 3, 17), BUSY_SECONDS))),
    Tenant("ramp", "ramp 1 -> 35/s -> 1", _shaped((Phase(30, 1, 1), Phase(30, 1, 35), Phase(20, 35, 35),
                                                    Phase(30, 35, 1)))),
    Tenant("idle", "idle 1/s", (Phase(SCENE_SECONDS, 1, 1),)),
)


def variant(wasm: bytes, index: int) -> bytes:
    """The module with a custom section appended: the same code, another sha256 (runtimes ignore custom sections)."""
    name = b"warmpool-demo-variant"
    payload = bytes([len(name)]) + name + index.to_bytes(4, "little")
    size = bytearray()
    remaining = len(payload)
    while True:  # unsigned LEB128
        byte, remaining = remaining & 0x7F, remaining >> 7
        size.append(byte | (0x80 if remaining else 0))
        if not remaining:
            break
    return wasm + b"\x00" + bytes(size) + payload


def fleet_manifests(base_url: str, wasm: bytes, limits: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, bytes],
                                                                               dict[str, str]]:
    """The fleet, one WarmPool per tenant with its own module variant, the files to serve, and each tenant's sha256."""
    fleet = {
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet", "metadata": {"name": FLEET},
        "spec": {"replicas": {"min": 1, "max": 4}, "maxTotalWarm": MAX_TOTAL_WARM,
                 "autoscaling": {"enabled": True, "targetMissRatio": TARGET_MISS, "tickSeconds": TICK,
                                 "scaleDownDelaySeconds": 20}},
    }
    documents: list[dict[str, Any]] = [fleet]
    files, shas = {}, {}
    for index, tenant in enumerate(TENANTS):
        data = variant(wasm, index)
        files[f"{tenant.name}.wasm"] = data
        shas[tenant.name] = hashlib.sha256(data).hexdigest()
        documents.append({
            "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool", "metadata": {"name": f"fleet-{tenant.name}"},
            "spec": {"tenant": tenant.name, "fleetRef": {"name": FLEET}, "warmInstancesPerTuple": 1,
                     "module": {"sha256": shas[tenant.name], "source": {"url": f"{base_url}/{tenant.name}.wasm"}},
                     "limits": limits},
        })
    return documents, files, shas


async def _scrape(session: aiohttp.ClientSession, base: str) -> str | None:
    try:
        async with session.get(f"{base}/metrics") as resp:
            return await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return None


async def drive_fleet(
    targets_now: Callable[[], list[str]],
    status_now: Callable[[], dict[str, Any]],
    shas: dict[str, str],
    say: Callable[[str], None],
) -> tuple[list[TenantSample], dict[str, LoadCounts], dict[str, tuple[float, float]]]:
    """Run every tenant's load at once; sample per-tenant draws, misses and warm floors, and the fleet's pods."""
    loop = asyncio.get_running_loop()
    targets: list[str] = await loop.run_in_executor(None, targets_now)
    counts = {t.name: LoadCounts() for t in TENANTS}
    body = json.dumps({"args": [HOLD_MS]}).encode()
    loads = [asyncio.create_task(run_load(t.phases, lambda: targets, f"/v1/{t.name}/{shas[t.name]}/hold", body,
                                          counts[t.name], clock=time.monotonic, rng=random.Random(i)))
             for i, t in enumerate(TENANTS)]
    everything = asyncio.gather(*loads)

    async def follow() -> None:
        while not everything.done():
            with contextlib.suppress(RuntimeError):
                targets[:] = await loop.run_in_executor(None, targets_now)
            await asyncio.sleep(0.5)

    follower = asyncio.create_task(follow())
    samples: list[TenantSample] = []
    seen: dict[tuple[str, str], tuple[float, float]] = {}  # per (pod, tenant): last (hits, misses)
    totals = {t.name: (0.0, 0.0) for t in TENANTS}
    start = last = time.monotonic()
    say(f"{'t':>5}  pods  {'warm floor per tenant (' + ' '.join(t.name for t in TENANTS) + ')'}   miss % (all)")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as session:
        while not everything.done():
            await asyncio.sleep(TICK)
            bases = list(targets)
            texts = await asyncio.gather(*(_scrape(session, b) for b in bases))
            draws = {t.name: [0.0, 0.0, 0.0] for t in TENANTS}  # hits, misses, warm floor
            for base, text in zip(bases, texts, strict=True):
                if text is None:
                    continue
                for tenant in TENANTS:
                    try:
                        metrics = pool_metrics(text, tenant=tenant.name)
                    except ExpositionError:
                        metrics = None
                    if metrics is None:
                        continue
                    last_hits, last_misses = seen.get((base, tenant.name), (metrics.hits, metrics.misses))
                    seen[(base, tenant.name)] = (metrics.hits, metrics.misses)
                    draws[tenant.name][0] += max(0.0, metrics.hits - last_hits)
                    draws[tenant.name][1] += max(0.0, metrics.misses - last_misses)
                    draws[tenant.name][2] += metrics.capacity
            status = await loop.run_in_executor(None, status_now)
            now = time.monotonic()
            t, interval, last = now - start, now - last, now
            for tenant in TENANTS:
                hits, misses, floor = draws[tenant.name]
                total_hits, total_misses = totals[tenant.name]
                totals[tenant.name] = (total_hits + hits, total_misses + misses)
                samples.append(TenantSample(
                    t=t, tenant=tenant.name, offered_rps=rate_at(tenant.phases, t),
                    draws_rps=(hits + misses) / interval,
                    miss_ratio=misses / (hits + misses) if hits + misses else None, warm_floor=int(floor),
                    pods=int(status.get("replicas") or 0), ready_pods=int(status.get("readyReplicas") or 0)))
            all_draws = sum(d[0] + d[1] for d in draws.values())
            miss = f"{100 * sum(d[1] for d in draws.values()) / all_draws:5.1f}" if all_draws else "    -"
            floors = " ".join(f"{int(draws[t.name][2]):>{len(t.name)}}" for t in TENANTS)
            say(f"{t:5.0f}  {status.get('readyReplicas') or 0}/{status.get('replicas') or 0}   {floors}   {miss}")
    await everything
    await follower
    return samples, counts, totals


SELECTOR = fleet_selector(FLEET)


class KubeLike(Protocol):
    def run(self, *args: str, stdin: str | None = None) -> str: ...

    def json(self, *args: str) -> Any: ...


def wait_members_ready(kube: KubeLike, say: Callable[[str], None], timeout_s: float = 300) -> None:
    deadline, last = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        pools = [p for p in kube.json("get", "warmpools")["items"] if (p["spec"].get("fleetRef") or {})]
        ready = sum(any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get(
            "conditions") or ()) for p in pools)
        if ready != last:
            say(f"  {ready}/{len(TENANTS)} fleet members warm")
            last = ready
        if ready == len(TENANTS):
            return
        time.sleep(1)
    raise RuntimeError("the fleet's members did not become Ready in time")


def fleet_scene(kube: KubeLike, wasm: bytes, limits: dict[str, Any], out: Path,
                say: Callable[[str], None]) -> Path:
    """Apply the fleet and its members, drive the loads, print each tenant's measured miss ratio, plot."""
    files: dict[str, bytes] = {}
    with module_server(files) as url:
        documents, variants, shas = fleet_manifests(url, wasm, limits)
        files.update(variants)
        say(f"applying RuntimeFleet {FLEET!r} (autoscaled, maxTotalWarm {MAX_TOTAL_WARM} per pod) and "
            f"{len(TENANTS)} member WarmPools, each its own module variant served from {url}")
        kube.run("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
        wait_members_ready(kube, say)
        print(kube.run("get", "runtimefleet", FLEET), flush=True)
        for tenant in TENANTS:
            say(f"  {tenant.name:>9}: {tenant.shape}")
        say(f"driving {SCENE_SECONDS:.0f} s of Poisson arrivals of hold({HOLD_MS} ms) per tenant over the "
            "fleet's Ready pods by pod IP")

        def targets_now() -> list[str]:
            return ready_pod_targets(kube.json("get", "pods", "-l", SELECTOR)["items"])

        def status_now() -> dict[str, Any]:
            return dict(kube.json("get", "runtimefleet", FLEET).get("status") or {})

        samples, counts, totals = asyncio.run(drive_fleet(targets_now, status_now, shas, say))
        print(kube.run("get", "runtimefleet", FLEET), flush=True)
    picture = plot_fleet(samples, TARGET_MISS, out)
    say("measured per tenant over the whole scene (draws read from the pods' /metrics):")
    for tenant in TENANTS:
        hits, misses = totals[tenant.name]
        c = counts[tenant.name]
        ratio = f"{100 * misses / (hits + misses):5.2f} %" if hits + misses else "    -"
        say(f"  {tenant.name:>9}  miss ratio {ratio}  ({misses:.0f} of {hits + misses:.0f} draws)  calls: {c.sent} "
            f"sent, {c.ok} ok, {c.shed} shed, {c.failed} failed {c.errors or ''}")
    say(f"peak fleet pods {max((s.pods for s in samples), default=0)}, "
        f"lowest {min((s.pods for s in samples), default=0)}")
    return picture

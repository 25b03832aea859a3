"""An open-loop load generator: Poisson arrivals at a scheduled rate, spread over the pods a Service would use."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class Phase:
    """Arrivals per second ramp linearly from `start` to `end` over `seconds`."""

    seconds: float
    start: float
    end: float


def rate_at(phases: Sequence[Phase], t: float) -> float:
    """The scheduled arrival rate at `t` seconds into the run (0 after the last phase)."""
    for phase in phases:
        if t < phase.seconds:
            return phase.start + (phase.end - phase.start) * t / phase.seconds
        t -= phase.seconds
    return 0.0


def total_seconds(phases: Sequence[Phase]) -> float:
    return sum(p.seconds for p in phases)


@dataclass
class LoadCounts:
    """What the generator saw, cumulative."""

    sent: int = 0
    ok: int = 0
    shed: int = 0
    """Refused by an overloaded runtime with 429/503 and `Retry-After`: load shedding, not a failure."""
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def ready_pod_targets(pods: Sequence[Mapping[str, Any]], port_name: str = "http") -> list[str]:
    """Base URLs (pod IP, named port) of the pods a Service sends traffic to: Ready and not being deleted.

    That is the EndpointSlice controller's rule, applied to the pods directly: the local control
    plane's pod IPs are loopback addresses, which EndpointSlices may not hold. A pod being deleted
    leaves at once (its readiness also fails on SIGTERM) while it keeps serving for its drain window,
    so a client following this reaches it only while it serves.
    """
    out = []
    for pod in pods:
        status = pod.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
        if conditions.get("Ready") != "True" or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        ports = [p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or ()
                 for p in c.get("ports") or () if p.get("name") == port_name]
        if status.get("podIP") and ports:
            out.append(f"http://{status['podIP']}:{ports[0]}")
    return sorted(out)


async def run_load(
    phases: Sequence[Phase],
    targets: Callable[[], Sequence[str]],
    path: str,
    body: bytes,
    counts: LoadCounts,
    *,
    clock: Callable[[], float],
    rng: random.Random,
) -> None:
    """Send until the schedule ends; each request goes to a uniformly random base URL, as a Service would."""
    start = clock()
    end = start + total_seconds(phases)
    in_flight: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        while (now := clock()) < end:
            rate = rate_at(phases, now - start)
            await asyncio.sleep(rng.expovariate(rate) if rate > 0 else 0.5)
            bases = targets()
            if rate <= 0 or not bases:
                continue
            task = asyncio.create_task(_invoke(session, rng.choice(bases) + path, body, counts))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)


async def _invoke(session: aiohttp.ClientSession, url: str, body: bytes, counts: LoadCounts) -> None:
    counts.sent += 1
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            payload = await resp.read()
            if resp.status == 200:
                counts.ok += 1
                return
            if resp.status in (429, 503) and "Retry-After" in resp.headers:
                counts.shed += 1
                return
            code = json.loads(payload).get("error", {}).get("code", str(resp.status))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        code = type(exc).__name__
    counts.failed += 1
    counts.errors[code] = counts.errors.get(code, 0) + 1

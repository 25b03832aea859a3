"""An open-loop load generator: Poisson arrivals at a scheduled rate, routed at random over Ready pods."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


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
            code = json.loads(payload).get("error", {}).get("code", str(resp.status))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        code = type(exc).__name__
    counts.failed += 1
    counts.errors[code] = counts.errors.get(code, 0) + 1

"""Scraping runtime pods by IP for the autoscalers, their only I/O: a thin aiohttp edge.

A pod is asked for its compact `/stats` first; a runtime that predates it answers 404 and is read
through `/metrics` instead, so pods of two versions scale together during a rollout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from warmpool_contract import HTTP_PORT, METRICS_PATH, STATS_PATH
from warmpool_operator.runtimefleet.reader import read_bounded
from warmpool_operator.scalers import DEFAULT_TIMEOUT_SECONDS
from warmpool_operator.scaling.collector import Scrape, scrape_from_stats, scrape_from_text
from warmpool_operator.scaling.tuple_stats import MAX_STATS_BYTES, PodStats, StatsError, parse_stats

MAX_EXPOSITION_BYTES = 16 << 20
"""`/metrics` of a runtime without `/stats`: ~4.6 KB a tuple, so room for ~3,500 tuples."""


class ScrapeFailed(Exception):
    """The pod gave nothing usable; the message says why (never a body)."""


def base_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


async def read_pod(session: aiohttp.ClientSession, ip: str, port: int, *, timeout: float) -> PodStats | str:
    """The pod's checked stats document or, when it does not serve `/stats` (404), its `/metrics` text.

    Both requests together are bounded by `timeout`, and each body by its limit. Raises ScrapeFailed.
    """
    base = base_url(ip, port)
    try:
        async with asyncio.timeout(timeout):
            async with session.get(base + STATS_PATH) as resp:
                if resp.status == 200:
                    body = await read_bounded(resp.content, MAX_STATS_BYTES)
                    if body is None:
                        raise ScrapeFailed(f"{STATS_PATH} is larger than {MAX_STATS_BYTES} bytes")
                    return parse_stats(body)
                if resp.status != 404:
                    raise ScrapeFailed(f"HTTP {resp.status}")
            async with session.get(base + METRICS_PATH) as resp:
                if resp.status != 200:
                    raise ScrapeFailed(f"HTTP {resp.status}")
                text = await read_bounded(resp.content, MAX_EXPOSITION_BYTES)
                if text is None:
                    raise ScrapeFailed(f"{METRICS_PATH} is larger than {MAX_EXPOSITION_BYTES} bytes")
                return text.decode("utf-8", "replace")
    except TimeoutError:
        raise ScrapeFailed(f"timed out after {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise ScrapeFailed(f"{type(exc).__name__}: {exc}") from None
    except StatsError as exc:
        raise ScrapeFailed(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """A Ready runtime pod to scrape."""

    pod: str
    """The pod's identity in the collector (its name)."""
    ip: str
    port: int = HTTP_PORT


async def scrape_one(
    session: aiohttp.ClientSession,
    target: ScrapeTarget,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    tenant: str | None = None,
    module: str | None = None,
) -> Scrape:
    """Fetch and parse one pod's counters; every failure becomes a Scrape without metrics."""
    try:
        reading = await read_pod(session, target.ip, target.port, timeout=timeout)
    except ScrapeFailed as exc:
        return Scrape(target.pod, None, str(exc))
    if isinstance(reading, str):
        return scrape_from_text(target.pod, reading, tenant=tenant, module=module)
    return scrape_from_stats(target.pod, reading, tenant=tenant, module=module)


async def scrape_pods(
    session: aiohttp.ClientSession,
    targets: Sequence[ScrapeTarget],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    tenant: str | None = None,
    module: str | None = None,
) -> list[Scrape]:
    """Scrape every target concurrently; one Scrape per target, in the targets' order."""
    return list(
        await asyncio.gather(
            *(scrape_one(session, t, timeout=timeout, tenant=tenant, module=module) for t in targets)
        )
    )

"""Scraping `/metrics` of runtime pods by IP: the autoscaler's only I/O, a thin aiohttp edge."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from warmpool_contract import HTTP_PORT, METRICS_PATH
from warmpool_operator.scalers import DEFAULT_TIMEOUT_SECONDS
from warmpool_operator.scaling.collector import Scrape, scrape_from_text


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """A Ready runtime pod to scrape."""

    pod: str
    """The pod's identity in the collector (its name)."""
    ip: str
    port: int = HTTP_PORT

    @property
    def url(self) -> str:
        host = self.ip
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{METRICS_PATH}"


async def scrape_one(
    session: aiohttp.ClientSession,
    target: ScrapeTarget,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    tenant: str | None = None,
    module: str | None = None,
) -> Scrape:
    """Fetch and parse one pod's exposition; every failure becomes a Scrape without metrics."""
    try:
        async with session.get(target.url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                return Scrape(target.pod, None, f"HTTP {response.status}")
            text = await response.text()
    except TimeoutError:
        return Scrape(target.pod, None, f"timed out after {timeout:g} s")
    except aiohttp.ClientError as exc:
        return Scrape(target.pod, None, f"{type(exc).__name__}: {exc}")
    return scrape_from_text(target.pod, text, tenant=tenant, module=module)


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

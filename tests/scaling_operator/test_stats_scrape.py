"""Scraping `/stats` over HTTP on loopback, and falling back to `/metrics` for runtimes that do not serve it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from warmpool_contract import METRICS_PATH, SHORT_HASH, STATS_FIELDS, STATS_PATH
from warmpool_lab.pod_exposition import render_pool_metrics
from warmpool_operator.fleet.observations import TupleCounters, TupleKey
from warmpool_operator.runtimefleet.autoscaler import scrape_fleet_pod
from warmpool_operator.scaling.exposition import PodMetrics
from warmpool_operator.scaling.tuple_stats import MAX_STATS_BYTES
from warmpool_operator.scraper import ScrapeTarget, scrape_pods

pytestmark = pytest.mark.component

TENANT = "acme"
SHA = "3f5c" + "0" * 60
OTHER = TupleKey("globex", "ab" * 32)
METRICS = PodMetrics(hits=90, misses=10, warm=12, capacity=16, in_flight=4)


def stats_doc(metrics: PodMetrics, **extra: Any) -> dict[str, Any]:
    row = [TENANT, SHA, metrics.hits, metrics.misses, metrics.in_flight, metrics.warm, metrics.capacity]
    other = [OTHER.tenant, OTHER.module, 5, 1, 0, 2, 2]
    return {"version": 1, "fields": list(STATS_FIELDS), "tuples": [row, other], **extra}


class Runtime:
    """A stand-in runtime pod: `/metrics` always, `/stats` unless it plays an older version; records each path asked."""

    def __init__(self, metrics: PodMetrics = METRICS, *, serves_stats: bool = True) -> None:
        self.metrics = metrics
        self.serves_stats = serves_stats
        self.stats_body: bytes | None = None
        self.stats_status = 200
        self.metrics_delay = 0.0
        self.asked: list[str] = []

    async def stats(self, request: web.Request) -> web.StreamResponse:
        self.asked.append(request.path)
        body = self.stats_body if self.stats_body is not None else json.dumps(stats_doc(self.metrics)).encode()
        return web.Response(body=body, status=self.stats_status, content_type="application/json")

    async def exposition(self, request: web.Request) -> web.Response:
        self.asked.append(request.path)
        if self.metrics_delay:
            await asyncio.sleep(self.metrics_delay)
        text = render_pool_metrics(self.metrics, tenant=TENANT, module=SHA[:SHORT_HASH])
        text += render_pool_metrics(PodMetrics(5, 1, 2, 2, 0), tenant=OTHER.tenant, module=OTHER.module[:SHORT_HASH])
        return web.Response(text=text, content_type="text/plain")

    async def not_found(self, request: web.Request) -> web.Response:
        self.asked.append(request.path)
        return web.Response(status=404, text='{"error":{"code":"not_found"}}', content_type="application/json")


async def start(pod: Runtime) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get(METRICS_PATH, pod.exposition)
    app.router.add_get(STATS_PATH, pod.stats if pod.serves_stats else pod.not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def scrape(
    session: aiohttp.ClientSession, pod: Runtime, timeout: float = 5.0
) -> tuple[PodMetrics | None, str | None]:
    runner, port = await start(pod)
    try:
        (result,) = await scrape_pods(session, [ScrapeTarget("p", "127.0.0.1", port)], timeout=timeout,
                                      tenant=TENANT, module=SHA[:SHORT_HASH])
    finally:
        await runner.cleanup()
    return result.metrics, result.error


async def test_a_runtime_serving_stats_is_read_from_stats_alone(session: aiohttp.ClientSession) -> None:
    pod = Runtime()
    metrics, error = await scrape(session, pod)
    assert (metrics, error) == (METRICS, None)
    assert pod.asked == [STATS_PATH]


async def test_a_runtime_without_stats_is_read_from_metrics(session: aiohttp.ClientSession) -> None:
    pod = Runtime(serves_stats=False)
    metrics, error = await scrape(session, pod)
    assert (metrics, error) == (METRICS, None)
    assert pod.asked == [STATS_PATH, METRICS_PATH]


async def test_old_and_new_runtimes_give_a_fleet_the_same_counters(session: aiohttp.ClientSession) -> None:
    new, old = Runtime(), Runtime(serves_stats=False)
    (new_runner, new_port), (old_runner, old_port) = await start(new), await start(old)
    wanted = frozenset({TupleKey(TENANT, SHA)})
    try:
        from_new = await scrape_fleet_pod(session, "new", "127.0.0.1", new_port, wanted, timeout=5.0)
        from_old = await scrape_fleet_pod(session, "old", "127.0.0.1", old_port, wanted, timeout=5.0)
    finally:
        await new_runner.cleanup()
        await old_runner.cleanup()
    expected = {TupleKey(TENANT, SHA): TupleCounters(hits=90, misses=10, in_flight=4, warm=12)}
    assert from_new is not None
    assert from_old is not None
    assert from_new.tuples == from_old.tuples == expected
    assert (new.asked, old.asked) == ([STATS_PATH], [STATS_PATH, METRICS_PATH])


@pytest.mark.parametrize(("body", "named"), [
    (b"{not json", "not JSON"),
    (json.dumps(stats_doc(METRICS)).replace("90", "NaN").encode(), "NaN"),
    (json.dumps(stats_doc(PodMetrics(90, -1, 12, 16, 4))).encode(), "tuples[0].misses"),
    (json.dumps(stats_doc(METRICS, version=2)).encode(), "version"),
])
async def test_a_broken_stats_document_fails_the_scrape_without_falling_back(
    session: aiohttp.ClientSession, body: bytes, named: str
) -> None:
    pod = Runtime()
    pod.stats_body = body
    metrics, error = await scrape(session, pod)
    assert metrics is None
    assert error is not None
    assert named in error
    assert pod.asked == [STATS_PATH]
    wanted = frozenset({TupleKey(TENANT, SHA)})
    runner, port = await start(pod)
    try:
        assert await scrape_fleet_pod(session, "p", "127.0.0.1", port, wanted, timeout=5.0) is None
    finally:
        await runner.cleanup()


async def test_an_oversize_stats_body_is_not_read_to_its_end(session: aiohttp.ClientSession) -> None:
    pod = Runtime()
    pod.stats_body = b" " * (MAX_STATS_BYTES + 1)
    metrics, error = await scrape(session, pod)
    assert metrics is None
    assert error == f"{STATS_PATH} is larger than {MAX_STATS_BYTES} bytes"


async def test_a_stats_error_status_is_a_failed_scrape(session: aiohttp.ClientSession) -> None:
    pod = Runtime()
    pod.stats_status = 503
    metrics, error = await scrape(session, pod)
    assert (metrics, error) == (None, "HTTP 503")
    assert pod.asked == [STATS_PATH]


async def test_the_timeout_bounds_both_requests_together(session: aiohttp.ClientSession) -> None:
    pod = Runtime(serves_stats=False)
    pod.metrics_delay = 5.0
    metrics, error = await scrape(session, pod, timeout=0.5)
    assert metrics is None
    assert error == "timed out after 0.5 s"
    assert pod.asked == [STATS_PATH, METRICS_PATH]

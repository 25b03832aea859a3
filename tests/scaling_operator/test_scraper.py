"""Scraping runtime pods' /metrics over HTTP on loopback, into the autoscaler."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from warmpool_lab.pod_exposition import render_pool_metrics
from warmpool_operator.scaling.autoscaler import Autoscaler
from warmpool_operator.scaling.exposition import PodMetrics
from warmpool_operator.scaling.spec import AutoscalingSpec
from warmpool_operator.scraper import ScrapeTarget, base_url, scrape_pods

pytestmark = pytest.mark.component

TENANT, MODULE = "acme", "3f5c00000000"


class Pod:
    """A stand-in runtime pod serving a fixed exposition; tests change it between scrapes."""

    def __init__(self, metrics: PodMetrics) -> None:
        self.metrics = metrics
        self.status = 200
        self.delay = 0.0
        self.body: str | None = None

    async def handle(self, _: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self.body if self.body is not None else render_pool_metrics(self.metrics, tenant=TENANT, module=MODULE)
        return web.Response(text=text, status=self.status, content_type="text/plain")


async def serve(pod: Pod) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/metrics", pod.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_scrapes_pods_and_reports_each_failure(session: aiohttp.ClientSession) -> None:
    healthy = Pod(PodMetrics(hits=90, misses=10, warm=12, capacity=16, in_flight=4))
    unready = Pod(healthy.metrics)
    unready.status = 503
    slow = Pod(healthy.metrics)
    slow.delay = 5.0
    garbled = Pod(healthy.metrics)
    garbled.body = f'tensor_wasm_pool_in_flight{{tenant="{TENANT}",module="{MODULE}"}} NaN\n'
    runners = []
    targets = []
    for name, pod in (("healthy", healthy), ("unready", unready), ("slow", slow), ("garbled", garbled)):
        runner, port = await serve(pod)
        runners.append(runner)
        targets.append(ScrapeTarget(name, "127.0.0.1", port))
    targets.append(ScrapeTarget("gone", "127.0.0.1", closed_port()))
    try:
        scrapes = await scrape_pods(session, targets, timeout=0.5, tenant=TENANT, module=MODULE)
    finally:
        for runner in runners:
            await runner.cleanup()
    by_pod = {s.pod: s for s in scrapes}
    assert [s.pod for s in scrapes] == ["healthy", "unready", "slow", "garbled", "gone"]
    assert by_pod["healthy"].metrics == healthy.metrics
    assert by_pod["unready"].error == "HTTP 503"
    assert by_pod["slow"].error is not None
    assert "timed out" in by_pod["slow"].error
    assert by_pod["garbled"].error is not None
    assert "tensor_wasm_pool_in_flight" in by_pod["garbled"].error
    assert by_pod["gone"].metrics is None
    assert by_pod["gone"].error


async def test_a_tuple_the_pod_does_not_serve_is_no_data(session: aiohttp.ClientSession) -> None:
    pod = Pod(PodMetrics(hits=1, misses=0, warm=16, capacity=16, in_flight=0))
    runner, port = await serve(pod)
    try:
        (scrape,) = await scrape_pods(session, [ScrapeTarget("p", "127.0.0.1", port)], tenant="someone-else")
    finally:
        await runner.cleanup()
    assert scrape.metrics is None
    assert scrape.error == "no pool metrics for the tuple"


async def test_scraped_counters_drive_the_autoscaler(session: aiohttp.ClientSession) -> None:
    # Two pods serving 40 invocations/s between scrapes with 27.5 in flight: 4 pods of 16 at 1 %.
    pods = [Pod(PodMetrics(0, 0, 16, 16, 0)), Pod(PodMetrics(0, 0, 16, 16, 0))]
    servers = [await serve(pod) for pod in pods]
    targets = [ScrapeTarget(f"pod-{i}", "127.0.0.1", port) for i, (_, port) in enumerate(servers)]
    scaler = Autoscaler(AutoscalingSpec(enabled=True, max_replicas=10))
    replicas = 2
    try:
        for tick in range(6):
            now = 2.0 * tick
            for pod in pods:
                hits = 40.0 * now / 2
                pod.metrics = PodMetrics(hits=hits, misses=0, warm=16 - 13.75, capacity=16, in_flight=13.75)
            scaler.observe(await scrape_pods(session, targets, tenant=TENANT, module=MODULE), now)
            replicas = scaler.decide(replicas, now).desired_replicas
    finally:
        for runner, _ in servers:
            await runner.cleanup()
    assert replicas == 4


def test_ipv6_loopback_targets_are_bracketed() -> None:
    assert base_url("::1", 9090) == "http://[::1]:9090"
    assert base_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"

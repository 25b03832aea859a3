"""`/metrics` renders off the event loop: calls keep being answered during a slow render, and scrapes
that arrive during one share it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.runtime.wasm import STATEFUL, tuple_entry, write_module
from warmpool_runtime.metrics import build_registry
from warmpool_runtime.server import serve

pytestmark = pytest.mark.component


class HeldCollector(Collector):
    """Stands for a render of many tuples: it returns only when the test releases it, counting renders."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.renders = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.renders += 1
        self.entered.set()
        self.release.wait(30)
        yield GaugeMetricFamily("held_render", "A render the test held.", value=1.0)


async def test_calls_are_answered_while_metrics_render_and_scrapes_share_a_render(make_runtime,
                                                                                  tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 2)]})
    metrics = build_registry(runtime.registry.pools.values)
    held = HeldCollector()
    metrics.register(held)
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(runtime, metrics, "127.0.0.1", 0,
                                       lambda s: started.set_result(s.sockets[0].getsockname()[1])))
    base = f"http://127.0.0.1:{await started}"
    try:
        async with aiohttp.ClientSession() as session:
            async def scrape() -> tuple[int, str]:
                async with session.get(f"{base}/metrics") as resp:
                    return resp.status, await resp.text()

            first = asyncio.create_task(scrape())
            await asyncio.get_running_loop().run_in_executor(None, held.entered.wait, 30)
            second = asyncio.create_task(scrape())
            for n in range(5):  # the render is still held: the loop answers calls all the same
                async with session.post(f"{base}/v1/acme/{sha}/add", json={"args": [n, 1]}) as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"results": [n + 1]}
            assert not first.done()
            assert not second.done()
            held.release.set()
            for status, text in await asyncio.gather(first, second):
                assert status == 200
                assert "held_render 1.0" in text
                assert "tensor_wasm_pool_draws_total" in text
            assert held.renders == 1
    finally:
        held.release.set()
        server.cancel()

"""Load shedding over HTTP on a real `warmpool runtime serve`: 429 and 503 with Retry-After, /readyz, metrics."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.runtime.wasm import SLEEPY, tuple_entry, write_module

pytestmark = pytest.mark.component

HANG_GUARD = 30.0
MINUTE_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A runtime process with tenants alpha and beta (one worker each of two), at most 3 calls per tenant
    and 2 queued calls pod-wide; saturated from one queued call with every worker busy."""
    path, sha = write_module(tmp_path, SLEEPY)
    config = {
        "settings": {"workers": 2, "tenantMaxWorkers": 1, "tenantMaxCalls": 3, "maxQueuedCalls": 2,
                     "queueHighWater": 0.5, "queueLowWater": 0, "poolSlots": 16, "maxMemoryBytes": 1 << 20},
        "limits": {"memoryBytes": 1 << 20, "timeoutMs": 4000},
        "tuples": [tuple_entry("alpha", path, sha, 1), tuple_entry("beta", path, sha, 1)],
    }
    config_path = tmp_path / "runtime.json"
    config_path.write_text(json.dumps(config))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config", str(config_path),
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG_GUARD
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the runtime did not start listening"
                time.sleep(0.05)
        yield base, sha
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def post(session: aiohttp.ClientSession, url: str, args: list[int]) -> tuple[int, dict[str, object], str | None]:
    async with session.post(url, json={"args": args}) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


async def until(session: aiohttp.ClientSession, url: str, status: int) -> dict[str, object]:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        got, body = await get(session, url)
        if got == status:
            parsed: dict[str, object] = json.loads(body)
            return parsed
        assert time.monotonic() < deadline, f"{url} stayed {got}: {body}"
        await asyncio.sleep(0.02)


async def test_shed_calls_get_429_or_503_with_retry_after_and_readyz_follows_saturation(server) -> None:
    base, sha = server
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=HANG_GUARD)) as session:
        await until(session, f"{base}/readyz", 200)
        sleep = f"{base}/v1/alpha/{sha}/sleep_ms"
        # alpha: one call on its worker, two queued behind its share (a worker is still idle: not saturated).
        alphas = [asyncio.create_task(post(session, sleep, [MINUTE_MS])) for _ in range(3)]
        await until_metric(session, base, 'tensor_wasm_worker_queue_depth{tenant="alpha"} 2.0')
        assert (await until(session, f"{base}/readyz", 200))["saturated"] is False

        status, body, retry_after = await post(session, sleep, [MINUTE_MS])
        assert (status, body["error"]["code"]) == (429, "tenant_limit")  # type: ignore[index]
        assert retry_after == "4"  # the tuple's deadline

        # beta takes the other worker: every worker busy with two calls queued -> saturated.
        beta = asyncio.create_task(post(session, f"{base}/v1/beta/{sha}/sleep_ms", [MINUTE_MS]))
        ready = await until(session, f"{base}/readyz", 503)
        assert (ready["saturated"], ready["reason"]) == (True, "saturated")
        status, body, retry_after = await post(session, f"{base}/v1/beta/{sha}/ping", [])
        assert (status, body["error"]["code"]) == (503, "saturated")  # type: ignore[index]
        assert retry_after == "4"

        # The sleepers are cut at their deadline; alpha's queued calls run then, or are refused once
        # they have waited as long.
        statuses = [status for status, _, _ in await asyncio.wait_for(asyncio.gather(*alphas, beta), HANG_GUARD)]
        assert (statuses[0], statuses[-1]) == (408, 408)
        assert set(statuses) <= {408, 429}
        ready = await until(session, f"{base}/readyz", 200)
        assert ready["saturated"] is False

        _, metrics = await get(session, f"{base}/metrics")
        assert sample(metrics, 'tensor_wasm_calls_shed_total{reason="tenant_limit",tenant="alpha"}') >= 1
        assert sample(metrics, 'tensor_wasm_calls_shed_total{reason="saturated",tenant="beta"}') == 1
        assert "tensor_wasm_saturated 0.0" in metrics
        assert 'tensor_wasm_worker_busy{tenant="alpha"} 0.0' in metrics


def sample(metrics: str, series: str) -> float:
    """The value of one series in a Prometheus text exposition."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} in /metrics")


async def until_metric(session: aiohttp.ClientSession, base: str, line: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while line not in (await get(session, f"{base}/metrics"))[1]:
        assert time.monotonic() < deadline, f"no {line} in /metrics"
        await asyncio.sleep(0.02)

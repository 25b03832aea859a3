"""Real runtime processes standing in for pods, each on its own 127.x.y.z address, and a module server.

A "pod" here is `warmpool runtime serve` started with the runtime config the operator rendered
into the pool's ConfigMap, listening where the simulated Pod object says its IP and port are;
the operator then reads its real `/readyz` body exactly as it would in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.operator.harness import PATIENCE_SECONDS


def loopback_address() -> str:
    """An address in 127.0.0.0/8 unlikely to be shared with other tests on this machine."""
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RuntimePod:
    ip: str
    port: int


@contextlib.asynccontextmanager
async def runtime_pod(config_text: str, workdir: Path) -> AsyncIterator[RuntimePod]:
    """Run the real runtime on a fresh loopback address until its /healthz answers."""
    ip = loopback_address()
    port = free_port(ip)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "runtime.yaml"
    config.write_text(config_text)
    log = (workdir / "runtime.log").open("wb")
    # The rendered pod args say --port 8080 on all interfaces; the last --host/--port win.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warmpool.cli", "runtime", "serve",
        "--config", str(config), "--host", ip, "--port", str(port),
        stdout=log, stderr=log,
    )
    try:
        await _wait_healthy(ip, port, proc, workdir / "runtime.log")
        yield RuntimePod(ip=ip, port=port)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(PATIENCE_SECONDS):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def _wait_healthy(ip: str, port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    async with asyncio.timeout(PATIENCE_SECONDS), aiohttp.ClientSession() as session:
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"runtime exited with {proc.returncode}: {log.read_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://{ip}:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def module_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """Serve `files` over HTTP on loopback; yields the base URL."""

    async def serve(request: web.Request) -> web.Response:
        data = files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/wasm")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port("127.0.0.1")
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()

"""The operator's own health endpoints: liveness from an event-loop heartbeat (never the API), readiness with state."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Heartbeat:
    """Beaten by a task on the operator's event loop: a stale beat means the loop is stuck."""

    interval_seconds: float = 1.0
    stale_after_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    last: float | None = None
    state: dict[str, Any] = field(default_factory=dict)
    """What the process is doing (leading, kopf running, ...), shown by both endpoints."""

    def beat(self) -> None:
        self.last = self.clock()

    def age_seconds(self) -> float | None:
        return None if self.last is None else round(self.clock() - self.last, 3)

    def alive(self) -> bool:
        age = self.age_seconds()
        return age is not None and age <= self.stale_after_seconds

    async def run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.interval_seconds)


def _answer(status: int, body: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def serve_health(heartbeat: Heartbeat, host: str, port: int,
                       readiness: Callable[[], Mapping[str, Any]]) -> web.AppRunner:
    """`GET /healthz` (liveness: the loop beats) and `GET /readyz` (always 200 once serving; a
    standby replica is ready too, it only waits for the Lease). The caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        body = {"alive": heartbeat.alive(), "heartbeatAgeSeconds": heartbeat.age_seconds(), **heartbeat.state}
        return _answer(200 if heartbeat.alive() else 500, body)

    async def readyz(_: web.Request) -> web.Response:
        return _answer(200, {**heartbeat.state, **readiness()})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

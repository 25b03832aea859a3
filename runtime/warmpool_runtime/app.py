"""Process wiring for `warmpool runtime serve`: event loop, runtime, server, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from warmpool_contract import SHORT_HASH
from warmpool_runtime.config import RuntimeConfig
from warmpool_runtime.metrics import build_registry
from warmpool_runtime.server import serve
from warmpool_runtime.service import Runtime

log = logging.getLogger("warmpool.runtime")


def run_server(config: RuntimeConfig, host: str, port: int, log_level: str = "INFO") -> int:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(_main(config, host, port))
    return uvloop.run(_main(config, host, port))


async def _main(config: RuntimeConfig, host: str, port: int) -> int:
    runtime = Runtime(config)
    runtime.start()
    metrics = build_registry(lambda: list(runtime.registry.pools.values()))
    loop = asyncio.get_running_loop()
    server_task = asyncio.create_task(serve(runtime, metrics, host, port,
                                            lambda s: log.info("listening on http://%s:%d", host, port)))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Modules load off the loop so /healthz answers at once; /readyz turns 200 once pools are warm.
    await loop.run_in_executor(None, runtime.load_all)
    for status in runtime.registry.statuses():
        if status.error is not None:
            log.error("tenant %s module %s: %s (%s)", status.tenant, status.sha256[:SHORT_HASH], status.error.message,
                      status.error.code)
    stop_wait = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({server_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    server_task.cancel()
    stop_wait.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server_task
    runtime.close()
    if server_task in done and server_task.exception() is not None:
        log.error("server failed: %s", server_task.exception())
        return 1
    return 0

"""Process wiring for `warmpool runtime serve`: event loop, runtime, server, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import threading

from warmpool_contract import SHORT_HASH
from warmpool_runtime.config import RuntimeConfig
from warmpool_runtime.metrics import build_registry
from warmpool_runtime.server import HttpServer
from warmpool_runtime.service import Runtime
from warmpool_runtime.watch import ConfigWatcher

log = logging.getLogger("warmpool.runtime")

_SPARE_FILES = 256
"""File descriptors beyond the connections': modules, the cache, the event loop's own."""


def log_formatter(log_format: str) -> logging.Formatter:
    """`text`: one readable line; `json`: one object per line (timestamp, severity, name, message, exc_info),
    through python-json-logger as the operator's JSON logs (kopf's formatter, which the runtime cannot use)."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(levelname)s %(name)s %(message)s", rename_fields={"levelname": "severity"},
                             timestamp=True)
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def run_server(config: RuntimeConfig, host: str, port: int, log_level: str = "INFO", *,
               watch: str | None = None, log_format: str = "text") -> int:
    """Serve until SIGTERM/SIGINT. With `watch` (the config file's path) its changes apply live, and the pod
    is Ready once its initial tuples are warm or failed (or the startup grace passed), then whatever later
    tuples' states; without it, Ready only once every tuple is warm."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter(log_format))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    # Served connections, plus as many refused ones lingering until their 503 is read.
    _raise_file_limit(2 * config.settings.max_connections + _SPARE_FILES)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        code = asyncio.run(_main(config, host, port, watch))
    else:
        code = uvloop.run(_main(config, host, port, watch))
    # Worker threads stuck in a guest (a WASI sleep, say) or a module download still running must not
    # hold the exit: the interpreter would join them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _main(config: RuntimeConfig, host: str, port: int, watch: str | None) -> int:
    runtime = Runtime(config, tuples_gate_readiness=watch is None)
    runtime.start()
    metrics = build_registry(lambda: list(runtime.registry.pools.values()), runtime.lanes.workers,
                             runtime.tuple_metrics)
    loop = asyncio.get_running_loop()
    server = HttpServer(runtime, metrics)
    try:
        await server.start(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        runtime.close()
        return 1
    log.info("listening on http://%s:%d", host, port)
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        # SIGINT (an interactive stop), or a second signal, skips the drain window.
        if sig == signal.SIGINT or stop.is_set():
            hurry.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # Modules load on a daemon thread so /healthz answers at once, /readyz turns 200 once pools are
    # warm, and a slow download never holds a shutdown.
    threading.Thread(target=_load, args=(runtime,), name="module-load", daemon=True).start()
    watcher = ConfigWatcher(runtime, watch)
    watcher.start()
    if watch is not None:
        log.info("watching %s: tuple changes apply live", watch)
    await stop.wait()
    watcher.stop()

    settings = config.settings
    deadline = loop.time() + settings.shutdown_timeout_seconds
    log.info("shutting down: readiness fails now, serving %.1f s more", settings.drain_seconds)
    server.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hurry.wait(), timeout=min(settings.drain_seconds, settings.shutdown_timeout_seconds))
    log.info("shutting down: no longer accepting connections; finishing requests in progress")
    if not await server.stop(deadline - loop.time()):
        log.warning("shutting down: connections still busy at the shutdown deadline were closed")
    runtime.close()
    log.info("stopped")
    return 0


def _load(runtime: Runtime) -> None:
    try:
        runtime.load_all()
    except Exception:
        log.exception("loading the modules failed")
        return
    for status in runtime.registry.statuses():
        if status.error is not None:
            log.error("tenant %s module %s: %s (%s)", status.tenant, status.sha256[:SHORT_HASH], status.error.message,
                      status.error.code)

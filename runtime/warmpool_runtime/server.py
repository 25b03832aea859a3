"""HTTP surface: an HTTP/1.1 asyncio protocol over httptools' parser, routing to the registry and the call lanes.

Chosen by measurement (`warmpool bench runtime`): a protocol-level server adds far less per
request than a framework, and completed-inline calls answer without creating a task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from warmpool_contract import HEALTHZ_PATH, INVOKE_PREFIX, METRICS_PATH, READYZ_PATH, SHORT_HASH, STATS_PATH
from warmpool_runtime.errors import BadArguments, RuntimeFault, Unauthorized
from warmpool_runtime.http_protocol import (
    INTERNAL_ERROR,
    JSON,
    Connections,
    HttpProtocol,
    PendingReply,
    Reply,
    Request,
    retry_after,
)
from warmpool_runtime.lanes import CallArgs, CallResult, PendingCall
from warmpool_runtime.registry import Target
from warmpool_runtime.service import Runtime
from warmpool_runtime.tokens import WWW_AUTHENTICATE, TokenFile
from warmpool_runtime.tuple_stats import render_stats

log = logging.getLogger(__name__)


OCTETS = b"application/octet-stream"
_INVOKE = INVOKE_PREFIX.encode()
_HEALTHZ, _READYZ, _METRICS = HEALTHZ_PATH.encode(), READYZ_PATH.encode(), METRICS_PATH.encode()
_STATS = STATS_PATH.encode()
_INT_ARGS = re.compile(rb'\{"args":\[((?:-?(?:0|[1-9][0-9]{0,19}),)*-?(?:0|[1-9][0-9]{0,19}))?\]\}')
"""The common body, compact integer args, parsed without the json module; anything else goes through it."""
_METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_SHUTTING_DOWN: Reply = (503, b'{"error":{"code":"shutting_down","message":"the runtime is shutting down"}}', JSON,
                         retry_after(1))


def error_response(fault: RuntimeFault) -> Reply:
    extra = b"" if fault.retry_after_seconds is None else retry_after(fault.retry_after_seconds)
    if isinstance(fault, Unauthorized):
        extra += WWW_AUTHENTICATE
    return fault.status, json.dumps(fault.to_json()).encode(), JSON, extra


class Handler:
    """Routes a parsed request to a reply, or a Future of one when the call went to a worker."""

    def __init__(self, runtime: Runtime, metrics: CollectorRegistry) -> None:
        self.runtime = runtime
        self.exposition = SharedExposition(metrics)
        self._routes: dict[bytes, Target] = runtime.registry.route_cache()
        self._route_cache_size = runtime.config.settings.route_cache_size
        self._registry = runtime.registry
        self._version = runtime.registry.version
        self._resolve = runtime.registry.target
        self._run = runtime.lanes.call
        self.draining = False
        """Set on SIGTERM: `/readyz` fails from then on."""

    def handle(self, req: Request) -> Reply | PendingReply:
        try:
            if self._version != self._registry.version:  # a tuple was added, removed or replaced
                self._routes.clear()
                self._version = self._registry.version
            target = self._routes.get(req.url)
            if target is not None and req.method == b"POST":
                if target.auth is not None and not target.auth.allows(req.authorization):
                    raise self._refuse(target.pool.template.tenant)
                return self._call(target, req)
            path = req.url.split(b"?", 1)[0]
            if path.startswith(_INVOKE):
                if req.method != b"POST":
                    return 405, b'{"error":{"code":"method_not_allowed","message":"use POST"}}', JSON, b""
                return self._invoke(path, req)
            if req.method != b"GET":
                if req.method == b"HEAD":
                    req.keep_alive = False  # the answer has a body, which a HEAD answer must not
                return 405, b'{"error":{"code":"method_not_allowed","message":"use GET"}}', JSON, b""
            if path == _HEALTHZ:
                return 200, b'{"status":"ok"}', JSON, b""
            if path == _READYZ:
                return self._readyz()
            if path == _METRICS:
                return self.exposition.reply()
            if path == _STATS:
                pools = list(self._registry.pools.values())
                return 200, render_stats(pools, saturated=self.runtime.saturated), JSON, b""
            return 404, b'{"error":{"code":"not_found","message":"no such route"}}', JSON, b""
        except RuntimeFault as fault:
            return error_response(fault)

    def _refuse(self, tenant: str) -> Unauthorized:
        self.runtime.unauthorized[tenant] += 1
        # Never the token, nor whether one was sent or which part of it was wrong.
        return Unauthorized(f"calls to tenant {tenant} need a valid bearer token (Authorization: Bearer <token>)",
                            tenant=tenant)

    def _invoke(self, path: bytes, req: Request) -> Reply | PendingReply:
        parts = path.decode("utf-8", "replace").split("/")
        if len(parts) != 5 or not all(parts[2:]):
            raise BadArguments(f"expected POST {INVOKE_PREFIX}{{tenant}}/{{module_sha256}}/{{export}}")
        _, _, tenant, sha256, export = parts
        auth: TokenFile | None = self._registry.auth_for(tenant, sha256)
        if auth is not None and not auth.allows(req.authorization):
            raise self._refuse(tenant)  # before anything about the tuple (its exports) is revealed
        target = self._resolve(tenant, sha256, export)
        if len(self._routes) >= self._route_cache_size:
            self._routes.clear()
        self._routes[req.url] = target
        return self._call(target, req)

    def _call(self, target: Target, req: Request) -> Reply | PendingReply:
        body = req.body[0] if len(req.body) == 1 else b"".join(req.body)
        args: CallArgs
        if req.content_type.startswith(OCTETS):
            args = body
        elif (match := _INT_ARGS.fullmatch(body)) is not None:
            ints = match.group(1)
            args = list(map(int, ints.split(b","))) if ints else []
        else:
            args = _json_args(body)
        result = self._run(target, args)
        if isinstance(result, asyncio.Future):
            out: PendingReply = asyncio.get_running_loop().create_future()
            result.add_done_callback(lambda f: out.set_result(_encode_outcome(f)))
            return out
        return _encode(result)

    def _readyz(self) -> Reply:
        runtime = self.runtime
        tuples = [{
            "tenant": s.tenant, "sha256": s.sha256, "module": s.sha256[:SHORT_HASH], "state": s.state,
            "warm": s.warm, "target": s.target, "ready": s.ready,
            "error": None if s.error is None else {"code": s.error.code, "message": s.error.message},
        } for s in runtime.registry.statuses()]
        reloads = runtime.reloads
        config: dict[str, Any] = {
            "watching": reloads.watching, "applied": reloads.applied, "refused": reloads.refused,
            "lastError": reloads.last_error, "restartNeeded": list(reloads.restart_needed),
        }
        if self.draining:
            body = {"ready": False, "draining": True, "reason": "draining", "tuples": tuples, "config": config}
            return 503, json.dumps(body).encode(), JSON, retry_after(1)
        r = runtime.readiness()
        body = {"ready": r.ready, "reason": r.reason, "loading": r.loading, "saturated": r.saturated,
                "tuplesGateReadiness": runtime.tuples_gate_readiness, "startup": r.startup,
                "tuples": tuples, "config": config}
        return (200 if r.ready else 503), json.dumps(body).encode(), JSON, b""


def _json_args(body: bytes) -> list[Any]:
    if not body.strip():
        return []
    try:
        doc = json.loads(body)
    except RecursionError as exc:
        raise BadArguments("body is not accepted: JSON nested too deeply") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadArguments(f"body is not JSON: {exc}") from exc
    except ValueError as exc:  # an integer over Python's digit limit for conversion
        raise BadArguments("body is not accepted: a number in it has too many digits") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("args", []), list):
        raise BadArguments('body must be a JSON object {"args": [numbers...]}')
    args: list[Any] = doc.get("args", [])
    return args


def _encode(result: CallResult) -> Reply:
    if isinstance(result, bytes):
        return 200, result, OCTETS, b""
    if len(result) == 1 and result[0].__class__ is int:
        return 200, b'{"results":[%d]}' % result[0], JSON, b""
    return 200, b'{"results":%s}' % json.dumps(result).encode(), JSON, b""


def _encode_outcome(future: PendingCall) -> Reply:
    if future.cancelled():
        return _SHUTTING_DOWN
    exc = future.exception()
    if exc is None:
        return _encode(future.result())
    if isinstance(exc, RuntimeFault):
        return error_response(exc)
    log.error("invocation failed inside the runtime", exc_info=exc)
    return INTERNAL_ERROR




class SharedExposition:
    """Renders `/metrics` on one thread of its own, off the event loop, and scrapes that arrive during a
    render share it.

    At 1,000 tuples the text exposition takes about a second of CPU (`warmpool bench exposition`); on the
    loop, every call on the pod would wait that long. Sharing keeps concurrent scrapers from multiplying it.
    """

    def __init__(self, metrics: CollectorRegistry) -> None:
        self._metrics = metrics
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self._render: asyncio.Future[bytes] | None = None

    def reply(self) -> PendingReply:
        if self._render is None or self._render.done():
            self._render = asyncio.wrap_future(self._executor.submit(generate_latest, self._metrics))
        out: PendingReply = asyncio.get_running_loop().create_future()

        def answer(render: asyncio.Future[bytes]) -> None:
            if not out.done():
                out.set_result(_exposition(render))

        self._render.add_done_callback(answer)
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _exposition(render: asyncio.Future[bytes]) -> Reply:
    if render.cancelled():
        return _SHUTTING_DOWN
    exc = render.exception()
    if exc is not None:
        log.error("rendering /metrics failed", exc_info=exc)
        return INTERNAL_ERROR
    return 200, render.result(), _METRICS_TYPE, b""


class HttpServer:
    """The listening socket, its connections and their timeouts; `drain` and `stop` shut it down in order."""

    def __init__(self, runtime: Runtime, metrics: CollectorRegistry) -> None:
        self.runtime = runtime
        self.handler = Handler(runtime, metrics)
        self.connections = Connections(runtime.config.settings, self.handler.handle)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen; `runtime`'s calls run on this loop from now on."""
        loop = asyncio.get_running_loop()
        self.runtime.serve_on(loop)
        settings = self.runtime.config.settings
        connections = self.connections
        self._server = await loop.create_server(lambda: HttpProtocol(connections), host, port,
                                                reuse_address=True, backlog=settings.listen_backlog)
        self._sweep()
        return self._server

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self.connections.sweep(loop.time())
        self._sweeper = loop.call_later(self.connections.limits.tick, self._sweep)

    def drain(self) -> None:
        """Readiness fails from now on, and each answer closes its connection once nothing else is owed on it."""
        self.handler.draining = True
        self.connections.draining = True

    async def stop(self, timeout: float) -> bool:
        """Stop accepting, close idle connections, let the others finish; after `timeout`, abort them.

        True when every connection finished in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        if self._server is not None:
            self._server.close()
        self.drain()
        self.connections.closing = True
        self.connections.close_idle()
        while self.connections.open and loop.time() < deadline:
            await asyncio.sleep(0.02)
        finished = not self.connections.open
        self.abort()
        return finished

    def abort(self) -> None:
        """Close the listener and every connection now."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.connections.abort_all()
        self.handler.exposition.close()


async def serve(runtime: Runtime, metrics: CollectorRegistry, host: str, port: int,
                started: Callable[[asyncio.Server], None] | None = None) -> None:
    """Serve until cancelled, then close every connection; `runtime`'s calls run on this loop from now on."""
    server = HttpServer(runtime, metrics)
    listener = await server.start(host, port)
    if started is not None:
        started(listener)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        server.abort()

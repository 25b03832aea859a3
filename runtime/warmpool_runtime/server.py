"""HTTP surface: an HTTP/1.1 asyncio protocol over httptools' parser, routing to the registry and the call lanes.

Chosen by measurement (`warmpool bench runtime`): a protocol-level server adds far less per
request than a framework, and completed-inline calls answer without creating a task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools
from prometheus_client import CollectorRegistry, generate_latest

from warmpool_contract import HEALTHZ_PATH, INVOKE_PREFIX, METRICS_PATH, READYZ_PATH
from warmpool_runtime.errors import BadArguments, PayloadTooLarge, RuntimeFault
from warmpool_runtime.lanes import CallArgs, CallResult, PendingCall
from warmpool_runtime.registry import Target
from warmpool_runtime.service import Runtime

log = logging.getLogger(__name__)

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout",
            413: b"Payload Too Large", 422: b"Unprocessable Content", 429: b"Too Many Requests",
            500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable"}
JSON = b"application/json"
OCTETS = b"application/octet-stream"
_INVOKE = INVOKE_PREFIX.encode()
_HEALTHZ, _READYZ, _METRICS = HEALTHZ_PATH.encode(), READYZ_PATH.encode(), METRICS_PATH.encode()
_INT_ARGS = re.compile(rb'\{"args":\[((?:-?(?:0|[1-9][0-9]{0,19}),)*-?(?:0|[1-9][0-9]{0,19}))?\]\}')
"""The common body, compact integer args, parsed without the json module; anything else goes through it."""


def response(status: int, body: bytes, content_type: bytes = JSON, close: bool = False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status, _REASONS.get(status, b"Unknown"), content_type, len(body),
        b"Connection: close\r\n" if close else b"")
    return head + body


Reply = tuple[int, bytes, bytes]
"""(status, body, content type)."""
PendingReply = asyncio.Future[Reply]
INTERNAL_ERROR: Reply = (500, b'{"error":{"code":"internal","message":"the runtime failed; see its log"}}', JSON)


def error_response(fault: RuntimeFault) -> Reply:
    return fault.status, json.dumps(fault.to_json()).encode(), JSON


class Request:
    __slots__ = ("body", "content_type", "keep_alive", "method", "url")

    def __init__(self) -> None:
        self.url = b""
        self.method = b""
        self.content_type = b""
        self.body: list[bytes] = []
        self.keep_alive = True


class Handler:
    """Routes a parsed request to a reply, or a Future of one when the call went to a worker."""

    def __init__(self, runtime: Runtime, metrics: CollectorRegistry) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self._routes: dict[bytes, Target] = {}
        self._route_cache_size = runtime.config.settings.route_cache_size
        self._resolve = runtime.registry.target
        self._run = runtime.lanes.call

    def handle(self, req: Request) -> Reply | PendingReply:
        try:
            target = self._routes.get(req.url)
            if target is not None and req.method == b"POST":
                return self._call(target, req)
            path = req.url.split(b"?", 1)[0]
            if path.startswith(_INVOKE):
                if req.method != b"POST":
                    return 405, b'{"error":{"code":"method_not_allowed","message":"use POST"}}', JSON
                return self._invoke(path, req)
            if req.method != b"GET":
                return 405, b'{"error":{"code":"method_not_allowed","message":"use GET"}}', JSON
            if path == _HEALTHZ:
                return 200, b'{"status":"ok"}', JSON
            if path == _READYZ:
                return self._readyz()
            if path == _METRICS:
                return 200, generate_latest(self.metrics), b"text/plain; version=0.0.4; charset=utf-8"
            return 404, b'{"error":{"code":"not_found","message":"no such route"}}', JSON
        except RuntimeFault as fault:
            return error_response(fault)

    def _invoke(self, path: bytes, req: Request) -> Reply | PendingReply:
        parts = path.decode("utf-8", "replace").split("/")
        if len(parts) != 5 or not all(parts[2:]):
            raise BadArguments(f"expected POST {INVOKE_PREFIX}{{tenant}}/{{module_sha256}}/{{export}}")
        _, _, tenant, sha256, export = parts
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
        registry = self.runtime.registry
        tuples = [{
            "tenant": s.tenant, "sha256": s.sha256, "warm": s.warm, "target": s.target, "ready": s.ready,
            "error": None if s.error is None else {"code": s.error.code, "message": s.error.message},
        } for s in registry.statuses()]
        ready = registry.ready
        return (200 if ready else 503), json.dumps({"ready": ready, "tuples": tuples}).encode(), JSON


def _json_args(body: bytes) -> list[Any]:
    if not body.strip():
        return []
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadArguments(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("args", []), list):
        raise BadArguments('body must be a JSON object {"args": [numbers...]}')
    args: list[Any] = doc.get("args", [])
    return args


def _encode(result: CallResult) -> Reply:
    if isinstance(result, bytes):
        return 200, result, OCTETS
    if len(result) == 1 and result[0].__class__ is int:
        return 200, b'{"results":[%d]}' % result[0], JSON
    return 200, b'{"results":%s}' % json.dumps(result).encode(), JSON


def _encode_outcome(future: PendingCall) -> Reply:
    exc = future.exception()
    if exc is None:
        return _encode(future.result())
    if isinstance(exc, RuntimeFault):
        return error_response(exc)
    log.error("invocation failed inside the runtime", exc_info=exc)
    return INTERNAL_ERROR


class HttpProtocol(asyncio.Protocol):
    """One connection: requests answered in order (pipelining safe), keep-alive by default."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self._handler = handler
        self._max_body = max_body
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._req = Request()
        self._body_size = 0
        self._queue: deque[tuple[Request, Reply | PendingReply]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply(400, b'{"error":{"code":"bad_request","message":"upgrade not supported"}}', JSON, True)
        except httptools.HttpParserError as exc:
            message = json.dumps({"error": {"code": "bad_request", "message": f"malformed HTTP: {exc}"}})
            self._reply(400, message.encode(), JSON, True)
        except PayloadTooLarge as fault:
            status, body, content_type = error_response(fault)
            self._reply(status, body, content_type, True)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._req = Request()
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._req.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"content-type":
            self._req.content_type = value.lower()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            raise PayloadTooLarge(f"request body over {self._max_body} bytes")
        self._req.body.append(body)

    def on_message_complete(self) -> None:
        req = self._req
        req.method = self._parser.get_method()
        req.keep_alive = self._parser.should_keep_alive()
        try:
            outcome = self._handler.handle(req)
        except Exception:
            log.exception("request handling failed")
            outcome = INTERNAL_ERROR
        if not self._queue and not isinstance(outcome, asyncio.Future):
            status, body, content_type = outcome
            self._reply(status, body, content_type, not req.keep_alive)
            return
        self._queue.append((req, outcome))
        if isinstance(outcome, asyncio.Future):
            outcome.add_done_callback(lambda _: self._flush())

    def _flush(self) -> None:
        while self._queue:
            req, outcome = self._queue[0]
            if isinstance(outcome, asyncio.Future):
                if not outcome.done():
                    return
                outcome = outcome.result()
            self._queue.popleft()
            status, body, content_type = outcome
            self._reply(status, body, content_type, not req.keep_alive)

    def _reply(self, status: int, body: bytes, content_type: bytes, close: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(response(status, body, content_type, close))
        if close:
            self._transport.close()
            self._transport = None


async def serve(runtime: Runtime, metrics: CollectorRegistry, host: str, port: int,
                started: Callable[[asyncio.Server], None] | None = None) -> None:
    """Serve until cancelled; `runtime`'s calls run on this loop from now on."""
    loop = asyncio.get_running_loop()
    runtime.serve_on(loop)
    handler = Handler(runtime, metrics)
    settings = runtime.config.settings
    server = await loop.create_server(lambda: HttpProtocol(handler, settings.max_body_bytes), host, port,
                                      reuse_address=True, backlog=settings.listen_backlog)
    if started is not None:
        started(server)
    async with server:
        await server.serve_forever()

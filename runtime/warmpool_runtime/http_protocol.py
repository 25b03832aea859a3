"""HTTP/1.1 connections over httptools: limits enforced as bytes arrive, flow control, timeouts, orderly close."""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from warmpool_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

_REASONS = {100: b"Continue", 200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 413: b"Payload Too Large", 414: b"URI Too Long",
            422: b"Unprocessable Content", 429: b"Too Many Requests",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 502: b"Bad Gateway",
            503: b"Service Unavailable"}
JSON = b"application/json"

Reply = tuple[int, bytes, bytes, bytes]
"""(status, body, content type, extra header lines: b"" or b"Name: value\\r\\n"...)."""
PendingReply = asyncio.Future[Reply]
INTERNAL_ERROR: Reply = (500, b'{"error":{"code":"internal","message":"the runtime failed; see its log"}}', JSON, b"")
WRITE_HIGH_WATER = 64 << 10
"""Unsent answer bytes past which a connection is not read from (its client is not reading)."""
LINGER_SECONDS = 2.0
"""After an error answer the connection is half-closed and its input discarded this long, so that
the client reads the answer rather than a reset caused by the request bytes it was still sending."""
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BIG_BODY = 1 << 20
"""Bodies from this size on count towards `TRIM_AFTER`."""
TRIM_AFTER = 32 << 20
"""Request bytes released since the last heap trim that trigger the next one (at the next sweep)."""


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0), or nothing elsewhere.

    Bodies arrive as many small reads, interleaved across connections: freed, they leave holes in
    the heap that glibc does not return to the system by itself, so a burst of large requests
    would keep the process's memory high after it ends.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


release_memory = _malloc_trim()


def response(status: int, body: bytes, content_type: bytes = JSON, close: bool = False, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status, _REASONS.get(status, b"Unknown"), content_type, len(body), extra,
        b"Connection: close\r\n" if close else b"")
    return head + body


def retry_after(seconds: float) -> bytes:
    """A `Retry-After` header line (whole seconds, rounded up)."""
    return b"Retry-After: %d\r\n" % max(0, math.ceil(seconds))


def error_reply(status: int, code: str, message: str, extra: bytes = b"") -> Reply:
    return status, json.dumps({"error": {"code": code, "message": message}}).encode(), JSON, extra


class Reject(Exception):
    """Raised in a parser callback: the request is answered with this error and the connection closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.reply = error_reply(status, code, message)


class Request:
    __slots__ = ("authorization", "body", "body_size", "content_type", "declared", "expect", "head_bytes", "headers",
                 "keep_alive", "method", "url", "url_parts", "url_size")

    def __init__(self) -> None:
        self.url = b""
        self.url_parts: list[bytes] = []
        self.url_size = 0
        self.method = b""
        self.content_type = b""
        self.authorization = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.declared = -1
        self.head_bytes = 0
        self.headers = 0
        self.expect = False
        self.keep_alive = True


Handle = Callable[[Request], Reply | PendingReply]


@dataclass(frozen=True, slots=True)
class Limits:
    """The settings one connection checks, resolved once."""

    max_url: int
    max_header_bytes: int
    max_headers: int
    max_head_unparsed: int
    max_body: int
    header_timeout: float
    body_timeout: float
    min_body_rate: float
    idle_timeout: float
    max_connections: int
    max_pipelined: int
    linger: float
    tick: float

    @classmethod
    def of(cls, s: RuntimeSettings) -> Limits:
        timeouts = (s.header_timeout_seconds, s.body_timeout_seconds, s.idle_timeout_seconds)
        return cls(
            max_url=s.max_request_line_bytes, max_header_bytes=s.max_header_bytes, max_headers=s.max_header_count,
            # httptools joins a header split over reads by concatenation; this bounds what it joins.
            max_head_unparsed=s.max_request_line_bytes + s.max_header_bytes + 4096,
            max_body=s.max_body_bytes, header_timeout=s.header_timeout_seconds,
            body_timeout=s.body_timeout_seconds, min_body_rate=float(s.min_body_bytes_per_second),
            idle_timeout=s.idle_timeout_seconds, max_connections=s.max_connections,
            max_pipelined=s.max_pipelined_requests, linger=min(LINGER_SECONDS, s.header_timeout_seconds),
            tick=min(1.0, max(0.02, min(timeouts) / 4)),
        )


class Connections:
    """The open connections of one server, their limits, and the coarse clock their timeouts read."""

    def __init__(self, settings: RuntimeSettings, handle: Handle) -> None:
        self.limits = Limits.of(settings)
        self.handle = handle
        self.open: set[HttpProtocol] = set()
        self.lingering: set[HttpProtocol] = set()
        self.now = 0.0
        self.draining = False
        """Answers close their connection once nothing else is owed on it."""
        self.closing = False
        """Idle connections close at once."""
        self.released = 0
        """Bytes of large request bodies dropped since the last heap trim."""

    def sweep(self, now: float) -> None:
        """Advance the clock and apply every timeout (called every `limits.tick` seconds)."""
        self.now = now
        if self.released >= TRIM_AFTER:
            self.released = 0
            release_memory()
        for conn in list(self.open):
            conn.check(now)
        for conn in list(self.lingering):
            conn.check(now)

    def close_idle(self) -> None:
        for conn in list(self.open):
            conn.check(self.now)

    def abort_all(self) -> None:
        for conn in list(self.open) + list(self.lingering):
            conn.abort()


_IDLE, _HEAD, _BODY, _DONE = 0, 1, 2, 3
_WATCHED = frozenset(map(len, (b"content-type", b"content-length", b"expect", b"authorization")))
"""Lengths of the header names read; other headers are only counted."""


class HttpProtocol(asyncio.Protocol):
    """One connection: requests answered in order (pipelining safe), keep-alive by default.

    Reading stops while answers are not being read (the transport's write buffer is over its
    high-water mark) or `max_pipelined` answers are owed; requests already read then wait,
    unhandled, in `_backlog`.
    """

    def __init__(self, connections: Connections) -> None:
        self._conns = connections
        self._limits = connections.limits
        self._max_headers = connections.limits.max_headers
        self._max_header_bytes = connections.limits.max_header_bytes
        self._max_pipelined = connections.limits.max_pipelined
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._req = Request()
        self._queue: deque[tuple[bool, Reply | PendingReply]] = deque()
        self._backlog: deque[Request | Reply] = deque()
        self._phase = _IDLE
        self._since = connections.now
        self._deadline = 0.0
        self._fresh = True
        self._began = False
        self._unparsed = 0
        self._failed = False
        self._peer_done = False
        self._reading = True
        self._paused_at = 0.0
        self._write_paused = False

    @property
    def reading(self) -> bool:
        """The connection is being read from (not held back by flow control)."""
        return self._reading

    @property
    def backlog(self) -> int:
        """Requests read but not yet run."""
        return len(self._backlog)

    # asyncio callbacks -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        conns = self._conns
        conns.now = asyncio.get_running_loop().time()
        self._since = conns.now
        if len(conns.open) >= self._limits.max_connections:
            if len(conns.lingering) >= self._limits.max_connections:
                transport.abort()  # type: ignore[attr-defined]
                return
            self._failed = True
            self._write(error_reply(503, "too_many_connections", "the runtime is at its connection limit",
                                    retry_after(1)), False)
            return
        conns.open.add(self)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._conns.open.discard(self)
        self._conns.lingering.discard(self)
        self._transport = None
        self._drop_request()
        self._phase = _DONE
        # The parser's callbacks refer back to this protocol: dropping it frees buffered request
        # bytes now instead of at the next cycle collection.
        self._parser = None
        held = sum(r.body_size for r in self._backlog if isinstance(r, Request))
        if held >= BIG_BODY:
            self._conns.released += held
        self._backlog.clear()
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._failed or self._parser is None:
            return  # answered with an error: input is discarded until the close
        self._began = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Reject):
                self._fail(cause.reply)
            else:
                log.error("request parsing failed", exc_info=cause or exc)
                self._fail(INTERNAL_ERROR)
        except httptools.HttpParserUpgrade:
            if self._phase != _IDLE:  # CONNECT
                self._fail(error_reply(400, "bad_request", "protocol upgrade not supported"))
                return
            # A whole request asking for an upgrade: answered over HTTP/1.1, then the connection
            # closes since what follows is not HTTP.
            self._failed = self._peer_done = True
            self._pause_reading()
            if not self._owes_more():
                self._close()
        except httptools.HttpParserError as exc:
            self._fail(error_reply(400, "bad_request", f"malformed HTTP: {exc}"))
        else:
            if self._phase == _HEAD:
                # A head split over reads: bound it before httptools joins its pieces.
                self._unparsed = len(data) if self._began else self._unparsed + len(data)
                if self._unparsed > self._limits.max_head_unparsed:
                    self._fail(error_reply(431, "headers_too_large", "request head too large"))

    def eof_received(self) -> bool:
        self._peer_done = True
        self._drop_request()  # a request cut short cannot complete
        return bool(self._queue or self._backlog)  # keep the write side open for answers still owed

    def pause_writing(self) -> None:
        self._write_paused = True
        self._paused_at = self._conns.now
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._drain_backlog()
        self._maybe_resume()

    # httptools callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._req = Request()
        self._phase = _HEAD
        self._since = self._conns.now
        self._began = True

    def on_url(self, url: bytes) -> None:
        req = self._req
        req.url_size += len(url)
        if req.url_size > self._limits.max_url:
            raise Reject(414, "uri_too_long", f"request target over {self._limits.max_url} bytes")
        req.url_parts.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self._req
        req.headers += 1
        req.head_bytes += len(name) + len(value) + 4
        if req.headers > self._max_headers or req.head_bytes > self._max_header_bytes:
            limits = self._limits
            raise Reject(431, "headers_too_large",
                         f"request headers over {limits.max_headers} lines or {limits.max_header_bytes} bytes")
        if len(name) in _WATCHED:
            self._watched(req, name.lower(), value)

    def _watched(self, req: Request, name: bytes, value: bytes) -> None:
        if name == b"content-type":
            req.content_type = value.lower()
        elif name == b"content-length":
            try:
                req.declared = int(value)
            except ValueError:  # the parser refuses it
                return
            if req.declared > self._limits.max_body:
                raise Reject(413, "payload_too_large", f"request body over {self._limits.max_body} bytes")
        elif name == b"expect":
            req.expect = value.lower() == b"100-continue"
        elif name == b"authorization":
            req.authorization = value

    def on_headers_complete(self) -> None:
        req = self._req
        parts = req.url_parts
        req.url = parts[0] if len(parts) == 1 else b"".join(parts)
        self._phase = _BODY
        limits = self._limits
        size = req.declared if req.declared >= 0 else limits.max_body
        self._deadline = self._conns.now + limits.body_timeout + size / limits.min_body_rate
        if req.expect and req.declared > 0 and not self._queue and self._transport is not None:
            self._transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        req = self._req
        req.body_size += len(body)
        if req.body_size > self._limits.max_body:
            raise Reject(413, "payload_too_large", f"request body over {self._limits.max_body} bytes")
        req.body.append(body)

    def on_message_complete(self) -> None:
        req = self._req
        self._phase = _IDLE
        self._since = self._conns.now
        self._fresh = False
        if req.body_size >= BIG_BODY:
            self._conns.released += req.body_size
        parser = self._parser
        if self._transport is None or parser is None:
            return  # closed after an earlier answer in the same read: not run
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        if self._backlog or self._write_paused or len(self._queue) >= self._max_pipelined:
            self._backlog.append(req)
            self._pause_reading()
            return
        self._dispatch(req)

    # answering -------------------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> None:
        try:
            outcome = self._conns.handle(req)
        except Exception:
            log.exception("request handling failed")
            outcome = INTERNAL_ERROR
        if not self._queue and outcome.__class__ is tuple:
            self._write(outcome, req.keep_alive)
            return
        self._queue.append((req.keep_alive, outcome))
        if isinstance(outcome, asyncio.Future):
            outcome.add_done_callback(self._on_done)

    def _on_done(self, _: PendingReply) -> None:
        self._flush()

    def _flush(self) -> None:
        queue = self._queue
        while queue:
            keep_alive, outcome = queue[0]
            if isinstance(outcome, asyncio.Future):
                if not outcome.done():
                    return
                outcome = outcome.result() if not outcome.cancelled() else INTERNAL_ERROR
            queue.popleft()
            self._write(outcome, keep_alive)
        self._drain_backlog()
        self._maybe_resume()

    def _drain_backlog(self) -> None:
        backlog, queue, most = self._backlog, self._queue, self._limits.max_pipelined
        while backlog and not self._write_paused and len(queue) < most and self._transport is not None:
            item = backlog.popleft()
            if isinstance(item, Request):
                self._dispatch(item)
            elif queue:
                queue.append((False, item))
            else:
                self._write(item, False)

    def _owes_more(self) -> bool:
        return bool(self._queue or self._backlog) or self._phase != _IDLE

    def _write(self, reply: Reply, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        close = not keep_alive or ((self._conns.draining or self._peer_done) and not self._owes_more())
        status, body, content_type, extra = reply
        transport.write(response(status, body, content_type, close, extra))
        if close:
            self._close()

    def _fail(self, reply: Reply) -> None:
        """Answer `reply` after the answers owed, then close; the rest of the input is not read."""
        if self._failed:
            return
        self._failed = True
        self._drop_request()
        if self._backlog:
            self._backlog.append(reply)
        elif self._queue:
            self._queue.append((False, reply))
        else:
            self._write(reply, False)

    def _drop_request(self) -> None:
        """Forget the request being received, if any: its bytes are freed now, not at the close."""
        if self._phase in (_HEAD, _BODY):
            if self._req.body_size >= BIG_BODY:
                self._conns.released += self._req.body_size
            self._req = Request()
            self._phase = _IDLE

    def _close(self) -> None:
        transport = self._transport
        if transport is None:
            return
        self._phase = _DONE
        if not self._failed:
            transport.close()
            self._transport = None
            return
        # Linger: half-close, keep reading (and discarding) until the peer closes or the linger ends.
        self._conns.open.discard(self)
        self._conns.lingering.add(self)
        self._deadline = self._conns.now + self._limits.linger
        if transport.can_write_eof():
            transport.write_eof()
        if not self._reading:
            self._reading = True
            transport.resume_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    # flow control and timeouts ---------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._paused_at = self._conns.now
            self._transport.pause_reading()

    def _maybe_resume(self) -> None:
        if (self._reading or self._failed or self._write_paused or self._backlog or self._transport is None
                or len(self._queue) >= self._limits.max_pipelined):
            return
        self._reading = True
        # Time spent not reading is the server's doing: it does not count against the client.
        stalled = self._conns.now - self._paused_at
        self._since += stalled
        self._deadline += stalled
        self._transport.resume_reading()
        if self._phase == _IDLE and not self._queue and (self._peer_done or self._conns.closing):
            self._close()

    def check(self, now: float) -> None:
        """Apply this connection's timeouts at time `now`."""
        if self._transport is None:
            return
        phase, limits = self._phase, self._limits
        if phase == _DONE:
            if now > self._deadline:
                self.abort()
        elif self._write_paused:
            if now - self._paused_at > limits.idle_timeout:
                self.abort()  # the client stopped reading its answers
        elif not self._reading:
            return  # waiting on the server's own work
        elif phase == _HEAD:
            if now - self._since > limits.header_timeout:
                self._fail(error_reply(408, "request_timeout", "request headers not received in time"))
        elif phase == _BODY:
            if now > self._deadline:
                self._fail(error_reply(408, "request_timeout", "request body not received in time"))
        elif not self._queue and not self._backlog:
            limit = limits.header_timeout if self._fresh else limits.idle_timeout
            if self._conns.closing or now - self._since > limit:
                self._close()

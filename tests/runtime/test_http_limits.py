"""HTTP limits on loopback: sizes refused as bytes arrive, timeouts, the connection limit, flow control, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import settle
from tests.runtime.wasm import BYTES, STATEFUL, tuple_entry, write_module
from warmpool_runtime.errors import RuntimeFault
from warmpool_runtime.metrics import build_registry
from warmpool_runtime.server import HttpServer, error_response

pytestmark = pytest.mark.component

GUARD = 30.0
"""Hang guard for every wait: generous, never a measurement."""

LIMITS = {
    "maxRequestLineBytes": 1024, "maxHeaderBytes": 2048, "maxHeaderCount": 20, "maxBodyBytes": 64 << 10,
    "maxConnections": 6, "maxPipelinedRequests": 4,
}
SHORT_TIMEOUTS = {"headerTimeoutSeconds": 0.3, "bodyTimeoutSeconds": 0.3, "minBodyBytesPerSecond": 1 << 30,
                  "idleTimeoutSeconds": 0.3}


class Served:
    def __init__(self, server: HttpServer, port: int, sha: str, bsha: str) -> None:
        self.server, self.port, self.sha, self.bsha = server, port, sha, bsha

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), GUARD)


Start = Callable[..., Awaitable[Served]]


@pytest.fixture
async def start(make_runtime, tmp_path: Path) -> AsyncIterator[Start]:
    servers: list[HttpServer] = []

    async def run(**settings: Any) -> Served:
        path, sha = write_module(tmp_path, STATEFUL)
        bpath, bsha = write_module(tmp_path, BYTES)
        runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 2, timeoutMs=100),
                                           tuple_entry("acme", bpath, bsha, 2)],
                                "settings": {**LIMITS, **settings}})
        server = HttpServer(runtime, build_registry(runtime.registry.pools.values))
        listener = await server.start("127.0.0.1", 0)
        servers.append(server)
        return Served(server, listener.sockets[0].getsockname()[1], sha, bsha)

    yield run
    for server in servers:
        server.abort()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (status, lower-cased headers, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), GUARD)
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (after anything it still sent)."""
    try:
        while await asyncio.wait_for(reader.read(65536), GUARD):
            pass
    except ConnectionResetError:
        pass
    return True


async def request(served: Served, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await served.connect()
    writer.write(raw)
    try:
        return await read_response(reader)
    finally:
        writer.close()


def invoke(sha: str, body: bytes, export: str = "add", content_type: str = "application/json") -> bytes:
    return (b"POST /v1/acme/%s/%s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (sha.encode(), export.encode(), content_type.encode(), len(body), body))


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


# Sizes -------------------------------------------------------------------------------------------
async def test_a_long_request_line_is_414_before_it_ends(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"GET /" + b"a" * 4096)  # no end of line: refused as the bytes arrive
    status, headers, body = await read_response(reader)
    assert (status, error_code(body), headers["connection"]) == (414, "uri_too_long", "close")
    assert await closed(reader)
    writer.close()


async def test_a_huge_request_line_sent_in_pieces_is_refused_at_the_limit(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"GET /")
    answered = asyncio.ensure_future(read_response(reader))
    for _ in range(8192):  # up to 64 MiB in pieces; the answer comes at the limit
        if answered.done():
            break
        writer.write(b"a" * 8192)
        await asyncio.sleep(0.001)
    status, _, body = await answered
    assert (status, error_code(body)) == (414, "uri_too_long")
    writer.close()


@pytest.mark.parametrize("head", [
    b"".join(b"X-H%d: v\r\n" % i for i in range(21)),  # too many lines
    b"X-Big: " + b"v" * 3000 + b"\r\n",  # too many bytes
])
async def test_big_headers_are_431(start: Start, head: bytes) -> None:
    served = await start()
    status, headers, body = await request(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert (status, error_code(body), headers["connection"]) == (431, "headers_too_large", "close")


async def test_an_endless_header_line_is_431_as_it_arrives(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
    answered = asyncio.ensure_future(read_response(reader))
    for _ in range(2000):  # up to 16 MiB, in pieces; the answer comes long before
        if answered.done():
            break
        writer.write(b"v" * 8192)
        await asyncio.sleep(0.001)
    status, _, body = await answered
    assert (status, error_code(body)) == (431, "headers_too_large")
    writer.close()


async def test_a_declared_body_over_the_limit_is_413_before_it_is_sent(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"POST /v1/acme/%s/add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % (served.sha.encode(), 1 << 30))
    status, headers, body = await read_response(reader)  # not one byte of the body was sent
    assert (status, error_code(body), headers["connection"]) == (413, "payload_too_large", "close")
    assert await closed(reader)
    writer.close()


async def test_expect_100_continue_is_answered_for_an_acceptable_body(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"POST /v1/acme/%s/add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Expect: 100-continue\r\nContent-Length: 14\r\n\r\n" % served.sha.encode())
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b'{"args":[1,2]}')
    assert await read_response(reader) == (200, {"content-type": "application/json", "content-length": "15"},
                                           b'{"results":[3]}')
    writer.close()


async def test_a_chunked_body_over_the_limit_is_413(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"POST /v1/acme/%s/upper HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" % served.bsha.encode())
    answered = asyncio.ensure_future(read_response(reader))
    chunk = b"a" * 4096
    for _ in range(1000):  # up to 4 MiB; the limit is 64 KiB
        if answered.done():
            break
        try:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.001)
    status, headers, body = await answered
    assert (status, error_code(body), headers["connection"]) == (413, "payload_too_large", "close")
    writer.close()


# Timeouts ------------------------------------------------------------------------------------------
async def test_headers_that_do_not_arrive_in_time_are_408(start: Start) -> None:
    served = await start(**SHORT_TIMEOUTS)
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    status, headers, body = await read_response(reader)
    assert (status, error_code(body), headers["connection"]) == (408, "request_timeout", "close")
    assert await closed(reader)
    writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_408(start: Start) -> None:
    served = await start(**SHORT_TIMEOUTS)
    reader, writer = await served.connect()
    writer.write(b"POST /v1/acme/%s/add HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"args\"" %
                 served.sha.encode())
    status, _, body = await read_response(reader)
    assert (status, error_code(body)) == (408, "request_timeout")
    assert await closed(reader)
    writer.close()


async def test_idle_connections_are_closed(start: Start) -> None:
    served = await start(**SHORT_TIMEOUTS)
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    assert await closed(reader)  # kept alive, then idle too long
    writer.close()
    silent, silent_writer = await served.connect()  # never sends a byte
    assert await closed(silent)
    silent_writer.close()
    await settle(lambda: not served.server.connections.open, GUARD)


# Connections -----------------------------------------------------------------------------------------
async def test_connections_over_the_limit_are_503_with_retry_after(start: Start) -> None:
    served = await start()
    held = []
    for _ in range(LIMITS["maxConnections"]):
        reader, writer = await served.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        held.append((reader, writer))
    status, headers, body = await request(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, error_code(body), headers["connection"]) == (503, "too_many_connections", "close")
    assert int(headers["retry-after"]) >= 1
    for reader, writer in held:  # the held ones still work
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[0] == 200
    held.pop()[1].close()
    await settle(lambda: len(served.server.connections.open) < LIMITS["maxConnections"], GUARD)
    assert (await request(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
    for _, writer in held:
        writer.close()


async def test_a_client_that_pipelines_and_never_reads_cannot_stall_others(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + invoke(served.sha, b'{"args":[1,2]}')
    flood = one * 20000  # ~2.5 MB of requests, several MB of answers: never read

    async def abuse() -> None:
        while True:
            writer.write(flood)
            await writer.drain()  # blocks for good once the server stops reading

    abuser = asyncio.ensure_future(abuse())
    try:
        await settle(lambda: any(not c.reading for c in served.server.connections.open), GUARD)
        for _ in range(5):
            status, _, body = await request(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (status, body) == (200, b'{"status":"ok"}')
        conn = next(c for c in served.server.connections.open if not c.reading)
        assert conn.backlog <= len(flood) // len(one) + 1  # requests read but not run: at most one read's worth
    finally:
        abuser.cancel()
        writer.transport.abort()
    await settle(lambda: not served.server.connections.open, GUARD)
    del reader


async def test_a_client_that_stops_reading_its_answers_is_disconnected(start: Start) -> None:
    served = await start(**SHORT_TIMEOUTS)
    reader, writer = await served.connect()
    writer.transport.set_write_buffer_limits(high=1 << 30)  # keep writing whatever the server does
    flood = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20000
    writer.write(flood)
    await settle(lambda: any(not c.reading for c in served.server.connections.open), GUARD)
    await settle(lambda: not served.server.connections.open, GUARD)  # closed from the server's side
    writer.transport.abort()
    del reader


async def test_pipelined_answers_keep_their_order_under_flow_control(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    requests = [invoke(served.sha, b'{"args":[%d,1]}' % i) for i in range(200)]
    requests.insert(7, invoke(served.sha, b"{}", "spin"))  # a worker call holds the queue for a while
    writer.write(b"".join(requests))
    statuses, bodies = [], []
    for _ in requests:
        status, _, body = await read_response(reader)
        statuses.append(status)
        bodies.append(body)
    assert statuses.count(408) == 1
    assert statuses[7] == 408
    assert [json.loads(b)["results"][0] for i, b in enumerate(bodies) if i != 7] == list(range(1, 201))
    writer.close()


# Hostile bodies and requests -------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b'{"args":' + b"[" * 100_000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"args":[' + b"7" * 5000 + b",1]}",
    b'{"args":[1,-' + b"9" * 5000 + b"]}",
])
async def test_json_bombs_are_400(start: Start, body: bytes) -> None:
    served = await start(maxBodyBytes=1 << 20)
    status, _, answer = await request(served, invoke(served.sha, body))
    assert (status, error_code(answer)) == (400, "bad_arguments")
    assert b"nested too deeply" in answer or b"too many digits" in answer


MALFORMED = [
    b"\x00\x01\x02\x03\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n: empty-name\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    b"GET /he\x00lthz HTTP/1.1\r\n\r\n",
    b"FOO /healthz HTTP/1.1\r\n\r\n",
    b"GETGETGETGETGETGETGETGETGET /healthz HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
    b"POST /v1/acme/{sha}/add HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET /v1/acme/{sha}/add HTTP/1.1\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"GET http://evil.example/healthz?x HTTP/1.1\r\n\r\n",
    b"GET /nowhere/%00/../.. HTTP/1.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"HEAD /healthz HTTP/1.1\r\n\r\n",
    b"POST /v1/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"POST /v1/acme//add HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"POST /v1/acme/{sha}/add/extra HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"POST /v1/\xff\xfe/{sha}/\xc3(  HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"POST /v1/acme/{sha}/%61dd HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"POST /v1/acme/{sha}/add?x=%zz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
]
BAD_BODIES = [b"\xff\xfe", b"null", b"[]", b'"str"', b"1", b'{"args":null}', b'{"args":{"a":1}}', b'{"args":[true,1]}',
              b'{"args":[1e999,1]}', b'{"args":[NaN,1]}', b'{"args":[[1],[2]]}', b'{"args":[{"a":1},2]}',
              b'{"args":["1","2"]}', b'{"args":[1,2,3]}', b'{"args":[1.5,2]}', b'{"args":[-1e308,1]}',
              b'{"args":[18446744073709551616,1]}', b'{"args":[1,2]' + b" " * 1000, b"\x00" * 100,
              b'{"args":[1,2]}\x00', b'{"args":[' + b"1," * 20000 + b"1]}"]


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_requests_are_4xx(start: Start, raw: bytes) -> None:
    served = await start()
    status, _, body = await request(served, raw.replace(b"{sha}", served.sha.encode()))
    assert 400 <= status < 500, body


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("export", ["add", "upper"])
async def test_hostile_bodies_are_4xx(start: Start, body: bytes, export: str) -> None:
    served = await start()
    sha = served.sha if export == "add" else served.bsha
    for content_type in ("application/json", "application/octet-stream", "text/plain"):
        status, _, answer = await request(served, invoke(sha, body, export, content_type))
        assert status < 500, answer
        if export == "add":
            assert status == 400 or (status == 200 and content_type != "application/octet-stream"), answer


async def test_an_upgrade_request_is_answered_then_the_connection_closes(start: Start) -> None:
    served = await start()
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x00\xffnot http")
    assert (await read_response(reader))[0] == 200
    assert await closed(reader)
    writer.close()


async def test_faults_that_say_when_to_retry_carry_retry_after() -> None:
    class Busy(RuntimeFault):
        code, status, retry_after_seconds = "busy", 503, 1.2

    status, _, _, extra = error_response(Busy("later"))
    assert (status, extra) == (503, b"Retry-After: 2\r\n")
    assert error_response(RuntimeFault("x"))[3] == b""

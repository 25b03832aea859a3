"""The fleet's /readyz reader against a real HTTP server on loopback: a body of a thousand tuples
arriving in many chunks is read whole; a body over the bound is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from warmpool_contract import READYZ_PATH
from warmpool_operator.runtimefleet import reader as reader_module
from warmpool_operator.runtimefleet.reader import ReadyzReader

pytestmark = pytest.mark.component

CHUNK = 8192


def readyz_body(tuples: int) -> bytes:
    return json.dumps({"ready": True, "tuples": [
        {"tenant": f"t{i:05d}", "sha256": f"{i:064x}", "state": "warm", "warm": 1, "ready": True, "error": None}
        for i in range(tuples)]}).encode()


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, dict[str, bytes]]]:
    """Serves `served["body"]` at /readyz in small chunks with pauses, as a busy runtime does."""
    served: dict[str, bytes] = {}

    async def readyz(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(served["body"])
        await response.prepare(request)
        body = served["body"]
        for offset in range(0, len(body), CHUNK):
            await response.write(body[offset:offset + CHUNK])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get(READYZ_PATH, readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, served
    finally:
        await runner.cleanup()


async def test_a_thousand_tuples_in_many_chunks_are_read_whole(server: tuple[int, dict[str, bytes]]) -> None:
    port, served = server
    served["body"] = readyz_body(1000)
    assert len(served["body"]) > 16 * CHUNK
    reader = ReadyzReader()
    try:
        tuples = await reader.tuples("127.0.0.1", port)
    finally:
        await reader.close()
    assert tuples is not None
    assert len(tuples) == 1000
    assert {t.tenant for t in tuples} == {f"t{i:05d}" for i in range(1000)}


async def test_a_body_over_the_bound_is_refused(
    server: tuple[int, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, served = server
    served["body"] = readyz_body(50)
    monkeypatch.setattr(reader_module, "MAX_BODY_BYTES", len(served["body"]) - 1)
    reader = ReadyzReader()
    try:
        assert await reader.tuples("127.0.0.1", port) is None
        monkeypatch.setattr(reader_module, "MAX_BODY_BYTES", len(served["body"]))
        found = await reader.tuples("127.0.0.1", port)
        assert found is not None
        assert len(found) == 50
    finally:
        await reader.close()

"""The node agent's use of the Kubernetes client, against a small API server on loopback: calls answer plain
dicts with statuses kept, merge patches say so, watches stream dicts, report an expired version and stop cleanly."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from warmpool.dev.agent.kubeapi import MERGE_PATCH, ApiError, KubeApi

pytestmark = pytest.mark.component

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                                                      "resourceVersion": "7"},
       "spec": {"nodeName": "n", "x-not-in-the-schema": True}, "status": {"phase": "Pending"}}


class FakeApi:
    """Records requests; pods watches follow `script` (lines to send, then whether to hang)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, dict[str, str], Any]] = []
        self.script: list[dict[str, Any]] = []
        self.hang = False
        self.watching = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read() or b"null")
        self.requests.append((request.method, request.path, request.headers.get("Content-Type", ""),
                              dict(request.query), body))
        if request.path == "/api/v1/namespaces/ns/pods/missing":
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        if request.path == "/api/v1/pods" and request.query.get("watch") == "true":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for event in self.script:
                await response.write(json.dumps(event).encode() + b"\n")
            self.watching.set()
            while self.hang:
                await asyncio.sleep(0.05)
            return response
        if request.path == "/api/v1/pods":
            return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [POD]})
        return web.json_response(POD)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApi, KubeApi]]:
    fake = FakeApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api = KubeApi(client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")), workers=2)
    yield fake, api
    fake.hang = False
    api.close()
    await runner.cleanup()


async def test_calls_answer_plain_dicts_and_keep_the_http_status(fake: tuple[FakeApi, KubeApi]) -> None:
    server, api = fake
    listing = await api.call(api.core.list_pod_for_all_namespaces, field_selector="spec.nodeName=n")
    assert listing is not None
    assert listing["items"] == [POD]  # not the client's models: fields outside its schema stay
    assert await api.call(api.core.read_namespaced_pod, "missing", "ns", allow=(404,)) is None
    with pytest.raises(ApiError) as raised:
        await api.call(api.core.read_namespaced_pod, "missing", "ns")
    assert raised.value.status == 404
    await api.call(api.core.patch_namespaced_pod_status, "p", "ns", {"status": {"phase": "Running"}},
                   _content_type=MERGE_PATCH)
    method, path, content_type, _, body = server.requests[-1]
    assert (method, path, content_type, body) == (
        "PATCH", "/api/v1/namespaces/ns/pods/p/status", MERGE_PATCH, {"status": {"phase": "Running"}})


async def test_a_connection_failure_is_an_api_error_without_status() -> None:
    api = KubeApi(client.ApiClient(client.Configuration(host="http://127.0.0.1:9")), workers=1)
    try:
        with pytest.raises(ApiError) as raised:
            await api.call(api.core.read_namespaced_pod, "p", "ns")
        assert raised.value.status == 0
    finally:
        api.close()


async def test_a_watch_streams_plain_events_from_the_version_asked(fake: tuple[FakeApi, KubeApi]) -> None:
    server, api = fake
    modified = {**POD, "metadata": {**POD["metadata"], "resourceVersion": "9"}}
    server.script = [{"type": "ADDED", "object": POD}, {"type": "MODIFIED", "object": modified},
                     {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "12"}}}]
    events = [event async for event in api.watch(api.core.list_pod_for_all_namespaces, field_selector="x=y",
                                                 resource_version="5", timeout_s=30)]
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "7"), ("MODIFIED", "9"), ("BOOKMARK", "12")]
    assert events[0]["object"] == POD
    query = server.requests[-1][3]
    assert query == {"fieldSelector": "x=y", "resourceVersion": "5", "timeoutSeconds": "30", "watch": "true",
                     "allowWatchBookmarks": "true"}


async def test_an_expired_version_raises_gone(fake: tuple[FakeApi, KubeApi]) -> None:
    server, api = fake
    server.script = [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                  "message": "too old resource version: 5 (9)"}}]
    with pytest.raises(ApiError) as raised:
        async for _ in api.watch(api.core.list_pod_for_all_namespaces, resource_version="5", timeout_s=30):
            pass
    assert raised.value.status == 410


def _watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kubeapi-watch")]


async def test_cancelling_a_silent_watch_ends_its_thread(fake: tuple[FakeApi, KubeApi]) -> None:
    server, api = fake
    server.script, server.hang = [{"type": "ADDED", "object": POD}], True
    seen: list[dict[str, Any]] = []

    async def consume() -> None:
        async for event in api.watch(api.core.list_pod_for_all_namespaces, resource_version="5", timeout_s=300):
            seen.append(event)

    task = asyncio.create_task(consume())
    await server.watching.wait()
    while not seen:
        await asyncio.sleep(0.01)
    assert _watch_threads()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(500):  # a hang guard: the thread is woken by the socket's shutdown, not by a timeout
        if not _watch_threads():
            break
        await asyncio.sleep(0.01)
    assert not _watch_threads()

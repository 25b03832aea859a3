"""The official Kubernetes client for the asyncio node agent: calls on a bounded thread pool, watches in threads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch

MERGE_PATCH = "application/merge-patch+json"
CALL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
WATCH_READ_GRACE_S = 30.0
"""A watch's socket read may stay silent this long past its server-side timeout before the thread gives up."""
MAX_ANSWER_BYTES = 64 * 1024 * 1024
WATCH_BUFFER = 256
"""Events a watch thread may hand to the event loop before it waits for the consumer."""
CALL_WORKERS = 8
CONNECTIONS = CALL_WORKERS + 8
"""Enough for every call worker and the watches, so that no connection is dropped after each use."""

Method = Callable[..., Any]


class ApiError(Exception):
    """A failed API call. status is the HTTP status, or 0 when no HTTP answer came (connection, TLS, timeout)."""

    def __init__(self, status: int, detail: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {detail[:500]}" if status else f"{what}: {detail[:500]}")
        self.status = status


def load_client(kubeconfig: Path, *, connections: int = CONNECTIONS) -> client.ApiClient:
    """An API client for the kubeconfig's current context (server, credentials and CA as kubectl reads them),
    keeping up to `connections` connections open."""
    api_client: client.ApiClient = config.new_client_from_config(
        config_file=str(kubeconfig), persist_config=False,
        client_configuration=client.Configuration(connection_pool_maxsize=connections))
    return api_client


def _error(exc: BaseException, what: str) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, client.ApiException):
        return ApiError(int(exc.status or 0), str(exc.body or exc.reason or ""), what)
    return ApiError(0, f"{type(exc).__name__}: {exc}", what)


def _decode(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_ANSWER_BYTES:
        raise ApiError(0, f"the answer is larger than {MAX_ANSWER_BYTES} bytes", what)
    try:
        decoded = json.loads(body) if body else {}
    except ValueError as exc:
        raise ApiError(0, f"the answer is not JSON: {exc}", what) from exc
    if not isinstance(decoded, dict):
        raise ApiError(0, "the answer is not a JSON object", what)
    return decoded


def call_blocking(method: Method, *args: Any, allow: tuple[int, ...] = (), **kwargs: Any) -> dict[str, Any] | None:
    """Run one generated API method (e.g. CoreV1Api.read_node) and return its answer as a plain dict, without
    building the client's models; None for an allowed error status (e.g. 404), ApiError for any other failure."""
    what = getattr(method, "__name__", "call")
    try:
        response = method(*args, _preload_content=False, _request_timeout=CALL_TIMEOUT_S, **kwargs)
        try:
            body = response.read(MAX_ANSWER_BYTES + 1)
            if len(body) > MAX_ANSWER_BYTES:
                response.close()  # the rest stays unread: the connection must not serve another call
        finally:
            response.release_conn()
    except client.ApiException as exc:
        if exc.status in allow:
            return None
        raise _error(exc, what) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _error(exc, what) from exc
    return _decode(body, what)


def _plain_events(method: Method) -> Method:
    """The list method behind a callable without a return type, so that Watch.stream yields plain dicts."""

    def list_call(*args: Any, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return method(*args, **kwargs)  # type: ignore[no-any-return]

    list_call.__name__ = getattr(method, "__name__", "list")
    return list_call


class KubeApi:
    """The generated API groups the agent uses, called off the event loop; close() stops calls and watches."""

    def __init__(self, api_client: client.ApiClient, *, workers: int = CALL_WORKERS) -> None:
        self._client = api_client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kubeapi")
        self._watches: set[watch.Watch] = set()
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.version = client.VersionApi(api_client)

    async def call(self, method: Method, *args: Any, allow: tuple[int, ...] = (),
                   **kwargs: Any) -> dict[str, Any] | None:
        """call_blocking on the dedicated thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(call_blocking, method, *args, allow=allow, **kwargs))

    async def watch(self, method: Method, *args: Any, resource_version: str, timeout_s: int,
                    **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Events ({"type", "object"} dicts, bookmarks included) of one watch request of a list method, from
        resource_version until the server ends it after timeout_s. An expired version raises ApiError 410."""
        what = f"watch {getattr(method, '__name__', 'list')}"
        loop = asyncio.get_running_loop()
        # Unbounded as a queue; the semaphore keeps at most WATCH_BUFFER events (plus the end marker) in it.
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        slots = threading.Semaphore(WATCH_BUFFER)
        stopped = threading.Event()
        stream = watch.Watch()

        def hand_over(kind: str, item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens any more
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        def pump() -> None:
            events = stream.stream(
                _plain_events(method), *args, resource_version=resource_version, timeout_seconds=timeout_s,
                allow_watch_bookmarks=True, _request_timeout=(CONNECT_TIMEOUT_S, timeout_s + WATCH_READ_GRACE_S),
                **kwargs,
            )
            try:
                for event in events:
                    while not slots.acquire(timeout=1.0):
                        if stopped.is_set():
                            return
                    if stopped.is_set():
                        return
                    hand_over("event", event)
            except Exception as exc:
                if not stopped.is_set():
                    hand_over("error", exc)
                return
            finally:
                events.close()  # closes the response here rather than whenever the generator is collected
            hand_over("end", None)

        self._watches.add(stream)
        threading.Thread(target=pump, name=f"kubeapi-{what}", daemon=True).start()
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise _error(item, what) from item
                slots.release()
                if isinstance(item, Mapping):
                    yield {"type": item.get("type"), "object": item.get("raw_object") or item.get("object") or {}}
        finally:
            stopped.set()
            stream.stop()  # shuts the socket down, so a thread blocked in a read returns at once
            self._watches.discard(stream)

    def close(self) -> None:
        """Stop the watch threads and the pool (calls in flight end within CALL_TIMEOUT_S), close the client."""
        for stream in list(self._watches):
            stream.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

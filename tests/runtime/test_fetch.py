"""Module fetches against real HTTP sources on 127.0.0.1: deadline, retries, truncation, parallel loads, redaction."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runtime.conftest import SMALL_ENGINE, wait_until
from tests.runtime.wasm import STATEFUL, compile_wat, write_module
from warmpool_runtime import errors
from warmpool_runtime.config import parse_config
from warmpool_runtime.engine import build_engine
from warmpool_runtime.fetch import fetch_url
from warmpool_runtime.modules import ModuleSource, ModuleStore
from warmpool_runtime.service import Runtime
from warmpool_runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]

MODULE = compile_wat(STATEFUL)
SIGNATURE = "X-Amz-Signature=5ec2e7516e47a7d0"
SECRETS = ("5ec2e7516e47a7d0", "AKIASECRETKEY", "hunter2")
SIGNED_QUERY = f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIASECRETKEY%2F20260101&{SIGNATURE}"
FAST = RuntimeSettings(fetch_timeout_seconds=30.0, fetch_deadline_seconds=60.0, fetch_retries=3,
                       fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05)
"""Quick retries; the per-read timeout and deadline are hang guards unless a test sets them."""

Handler = http.server.BaseHTTPRequestHandler
Route = Callable[[Handler, int], None]
"""Answers one request; gets the handler and how many times this path was asked for (1 = first)."""


class Sources:
    """A real HTTP server on 127.0.0.1 whose paths behave as the tests say; counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()
        """Set to make dripping answers stop (closing their connection mid-body)."""
        sources = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                sources.hits[path] += 1
                route = sources.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                route(self, sources.hits[path])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def sources() -> Iterator[Sources]:
    server = Sources()
    yield server
    server.close()


def send(handler: Handler, status: int, body: bytes, headers: dict[str, str] | None = None,
         length: int | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def module(handler: Handler, _: int) -> None:
    send(handler, 200, MODULE)


def drip(sources: Sources, total: int = 1000) -> Route:
    """A byte at a time, far slower than any download should take, until released (then closed mid-body)."""
    def route(handler: Handler, _: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        for i in range(total):
            if sources.release.wait(0.1):
                return
            try:
                handler.wfile.write(MODULE[i:i + 1] or b"\0")
                handler.wfile.flush()
            except OSError:
                return
    return route


def truncated(handler: Handler, _: int) -> None:
    send(handler, 200, MODULE[:50], length=100)  # the server closes after this: HTTP/1.0


def unavailable_twice(handler: Handler, hit: int) -> None:
    if hit <= 2:
        send(handler, 503, b"busy")
    else:
        send(handler, 200, MODULE)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one download ------------------------------------------------------------------------------------
def test_a_dripping_source_hits_the_total_deadline(sources) -> None:
    sources.routes["/slow.wasm"] = drip(sources)
    settings = RuntimeSettings(fetch_timeout_seconds=30.0, fetch_deadline_seconds=2.0, fetch_retries=3)
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_url(f"{sources.base}/slow.wasm", 1 << 20, settings)
    message = caught.value.message
    assert "fetch deadline" in message
    assert f"{sources.base}/slow.wasm" in message
    assert "of 1000 bytes" in message
    assert sources.hits["/slow.wasm"] == 1  # the deadline covers the retries too: none is left


def test_a_transient_failure_is_retried_then_succeeds(sources, caplog) -> None:
    sources.routes["/m.wasm"] = unavailable_twice
    with caplog.at_level(logging.WARNING, logger="warmpool_runtime.fetch"):
        assert fetch_url(f"{sources.base}/m.wasm", 1 << 20, FAST) == MODULE
    assert sources.hits["/m.wasm"] == 3
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2
    assert "HTTP 503 Service Unavailable" in retries[0]


def test_retries_end_with_the_last_reason(sources) -> None:
    sources.routes["/m.wasm"] = lambda handler, _: send(handler, 502, b"")
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_url(f"{sources.base}/m.wasm", 1 << 20, FAST)
    assert "HTTP 502 Bad Gateway" in caught.value.message
    assert "after 4 attempts" in caught.value.message
    assert sources.hits["/m.wasm"] == 4


@pytest.mark.parametrize(("status", "phrase"), [(404, "HTTP 404 Not Found"), (403, "HTTP 403 Forbidden")])
def test_a_client_error_is_not_retried(sources, status: int, phrase: str) -> None:
    sources.routes["/m.wasm"] = lambda handler, _: send(handler, status, b"no")
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_url(f"{sources.base}/m.wasm", 1 << 20, FAST)
    assert phrase in caught.value.message
    assert "not retried" in caught.value.message
    assert sources.hits["/m.wasm"] == 1


def test_a_429_retry_after_is_honoured_within_bounds(sources) -> None:
    sources.routes["/m.wasm"] = lambda handler, hit: send(handler, 429, b"", {"Retry-After": "2"}) if hit == 1 \
        else send(handler, 200, MODULE)
    slept: list[float] = []
    settings = RuntimeSettings(fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=5.0)
    assert fetch_url(f"{sources.base}/m.wasm", 1 << 20, settings, sleep=slept.append) == MODULE
    assert slept == [2.0]
    sources.hits.clear()
    slept.clear()
    capped = RuntimeSettings(fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.5)
    assert fetch_url(f"{sources.base}/m.wasm", 1 << 20, capped, sleep=slept.append) == MODULE
    assert slept == [0.5]


def test_a_truncated_download_is_reported_as_truncated(sources) -> None:
    sources.routes["/m.wasm"] = truncated
    settings = RuntimeSettings(fetch_retries=1, fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05)
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_url(f"{sources.base}/m.wasm", 1 << 20, settings)
    assert "truncated: got 50 of 100 bytes" in caught.value.message
    assert "sha256" not in caught.value.message
    assert sources.hits["/m.wasm"] == 2  # a cut connection is transient: retried


def test_a_chunked_body_cut_mid_way_is_reported_as_truncated(sources) -> None:
    def cut(handler: Handler, _: int) -> None:
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.write(b"%x\r\n%s\r\n" % (40, MODULE[:40]))
        handler.wfile.write(b"%x\r\n%s" % (100, MODULE[40:60]))  # a chunk announced longer than sent
        handler.wfile.flush()
        handler.close_connection = True

    sources.routes["/m.wasm"] = cut
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_url(f"{sources.base}/m.wasm", 1 << 20, FAST)
    assert "truncated: got" in caught.value.message
    assert "connection closed mid-body" in caught.value.message
    assert sources.hits["/m.wasm"] == 4


def test_a_refused_connection_is_retried_and_named(sources) -> None:
    url = f"http://127.0.0.1:{closed_port()}/m.wasm"
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_url(url, 1 << 20, FAST)
    assert "cannot connect to 127.0.0.1" in caught.value.message
    assert "after 4 attempts" in caught.value.message


def test_a_module_over_the_cap_is_refused_while_streaming(sources) -> None:
    def no_length(handler: Handler, _: int) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(MODULE)

    sources.routes["/m.wasm"] = no_length
    with pytest.raises(errors.ModuleTooLarge):
        fetch_url(f"{sources.base}/m.wasm", 64, FAST)
    assert sources.hits["/m.wasm"] == 1


def test_wrong_bytes_are_a_hash_mismatch_naming_both_digests(sources) -> None:
    wrong = b"\0asm\x01\0\0\0"
    sources.routes["/m.wasm"] = lambda handler, _: send(handler, 200, wrong)
    engine = build_engine(RuntimeSettings(pool_slots=4, max_memory_bytes=16 << 20))
    expected, actual = hashlib.sha256(MODULE).hexdigest(), hashlib.sha256(wrong).hexdigest()
    with pytest.raises(errors.ModuleHashMismatch) as caught:
        ModuleStore(engine, settings=FAST).load(ModuleSource(url=f"{sources.base}/m.wasm{SIGNED_QUERY}"),
                                                expected, 1 << 20, True)
    assert expected in caught.value.message
    assert actual in caught.value.message
    assert not any(secret in caught.value.message for secret in SECRETS)
    assert sources.hits["/m.wasm"] == 1  # a hash mismatch is never retried


def test_no_error_or_log_line_shows_a_signed_urls_credentials(sources, caplog) -> None:
    sources.routes["/m.wasm"] = lambda handler, hit: send(handler, 503 if hit == 1 else 403, b"")
    sources.routes["/t.wasm"] = truncated
    url = sources.base.replace("http://", "http://reader:hunter2@")
    with caplog.at_level(logging.DEBUG):
        for path in ("/m.wasm", "/t.wasm", "/absent.wasm"):
            with pytest.raises(errors.ModuleUnreachable) as caught:
                fetch_url(f"{url}{path}{SIGNED_QUERY}#token", 1 << 20, FAST)
            assert f"{sources.base}{path}?<redacted>" in caught.value.message
            assert not any(secret in caught.value.message for secret in SECRETS)
    assert caplog.records
    assert not any(secret in caplog.text for secret in SECRETS)


# --- the runtime -------------------------------------------------------------------------------------
def test_a_dripping_source_does_not_delay_another_tuple(sources, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    sources.routes["/slow.wasm"] = drip(sources)
    raw = {
        "maxTotalWarm": 4,
        "tuples": [  # the slow one first: loaded one after another, it would hold the other back
            {"tenant": "slow", "module": {"sha256": sha, "source": {"url": f"{sources.base}/slow.wasm"}},
             "warmInstancesPerTuple": 1},
            {"tenant": "fast", "module": {"sha256": sha, "source": {"path": str(path)}},
             "warmInstancesPerTuple": 1},
        ],
        "settings": {**SMALL_ENGINE, "fetchRetries": 0, "fetchTimeoutSeconds": 120.0, "fetchDeadlineSeconds": 120.0},
    }
    runtime = Runtime(parse_config(raw))
    runtime.start()
    loading = threading.Thread(target=runtime.load_all, daemon=True)
    loading.start()
    try:
        def fast_ready() -> bool:
            return any(s.tenant == "fast" and s.ready for s in runtime.registry.statuses())

        wait_until(fast_ready, timeout=60)
        slow = next(s for s in runtime.registry.statuses() if s.tenant == "slow")
        assert not slow.ready
        assert slow.error is None  # still loading, not failed
        assert loading.is_alive()
        with pytest.raises(errors.NotReady, match="still loading"):
            runtime.registry.pool_for("slow", sha)
    finally:
        sources.release.set()  # the drip closes mid-body: a truncated, failed load ends load_all
        loading.join(timeout=60)
        runtime.close()
    assert not loading.is_alive()
    error = runtime.registry.load_errors[("slow", sha)]
    assert "truncated" in error.message


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], tuple[subprocess.Popen[str], int]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(raw: dict[str, Any]) -> tuple[subprocess.Popen[str], int]:
        config = tmp_path / "runtime.yaml"
        config.write_text(yaml.safe_dump(raw))
        port = closed_port()
        proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config", str(config),
                                 "--host", "127.0.0.1", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=30)


def http_json(url: str, data: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_signed_url_never_shows_in_readyz_error_bodies_or_the_log(sources, serve, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    sources.routes["/m.wasm"] = lambda handler, hit: send(handler, 503 if hit == 1 else 403, b"")
    signed = sources.base.replace("http://", "http://reader:hunter2@") + "/m.wasm" + SIGNED_QUERY
    raw = {
        "maxTotalWarm": 4,
        "tuples": [
            {"tenant": "signed", "module": {"sha256": sha, "source": {"url": signed}}, "warmInstancesPerTuple": 1},
            {"tenant": "plain", "module": {"sha256": sha, "source": {"path": str(path)}}, "warmInstancesPerTuple": 1},
        ],
        "settings": {**SMALL_ENGINE, "fetchBackoffSeconds": 0.01, "fetchBackoffMaxSeconds": 0.05},
    }
    proc, port = serve(raw)
    base = f"http://127.0.0.1:{port}"

    def failed() -> bool:
        try:
            _, body = http_json(f"{base}/readyz")
        except OSError:
            return False
        return any(t["error"] for t in body["tuples"])

    wait_until(failed, timeout=60)
    status, readyz = http_json(f"{base}/readyz")
    assert status == 503
    text = json.dumps(readyz)
    assert not any(secret in text for secret in SECRETS)
    (signed_state,) = [t for t in readyz["tuples"] if t["tenant"] == "signed"]
    assert signed_state["error"]["code"] == "module_unreachable"
    assert f"{sources.base}/m.wasm?<redacted>" in signed_state["error"]["message"]
    assert "HTTP 403 Forbidden" in signed_state["error"]["message"]
    status, body = http_json(f"{base}/v1/signed/{sha}/add", b'{"args":[1,2]}')
    assert status == 503
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["cause"] == "module_unreachable"
    assert not any(secret in json.dumps(body) for secret in SECRETS)
    assert "/m.wasm" not in json.dumps(body)  # a caller gets the cause, not the source
    proc.terminate()
    log, _ = proc.communicate(timeout=30)
    assert "HTTP 503" in log  # the retry was logged ...
    assert "HTTP 403" in log  # ... and so was the failure,
    assert not any(secret in log for secret in SECRETS)  # without the credentials

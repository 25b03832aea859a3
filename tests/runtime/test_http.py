"""HTTP end to end on loopback: invoke (JSON and bytes), errors, probes, metrics, the CLI process."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.runtime.wasm import BYTES, STATEFUL, tuple_entry, write_module
from warmpool_runtime.metrics import build_registry
from warmpool_runtime.server import serve

pytestmark = pytest.mark.component


@pytest.fixture
async def base_url(make_runtime, tmp_path: Path) -> AsyncIterator[tuple[str, str, str]]:
    path, sha = write_module(tmp_path, STATEFUL)
    bpath, bsha = write_module(tmp_path, BYTES)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 2, timeoutMs=100),
                                       tuple_entry("acme", bpath, bsha, 2)]})
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(runtime, build_registry(runtime.registry.pools.values), "127.0.0.1", 0,
                                     lambda s: started.set_result(s.sockets[0].getsockname()[1])))
    port = await started
    yield f"http://127.0.0.1:{port}", sha, bsha
    task.cancel()


async def post(url: str, body: Any, content_type: str = "application/json") -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, \
            session.post(url, data=data, headers={"Content-Type": content_type}) as resp:
        raw = await resp.read()
        return resp.status, (raw if resp.content_type == "application/octet-stream" else json.loads(raw))


async def test_json_and_bytes_invocations(base_url) -> None:
    base, sha, bsha = base_url
    assert await post(f"{base}/v1/acme/{sha}/add", {"args": [40, 2]}) == (200, {"results": [42]})
    assert await post(f"{base}/v1/acme/{sha}/counter", {}) == (200, {"results": [1]})
    status, body = await post(f"{base}/v1/acme/{bsha}/upper", b"hello, wasm!", "application/octet-stream")
    assert (status, body) == (200, b"HELLO, WASM!")
    big = bytes(range(97, 123)) * 1000
    assert await post(f"{base}/v1/acme/{bsha}/upper", big, "application/octet-stream") == (200, big.upper())


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/v1/acme/{sha}/nope", {"args": []}, 404, "unknown_export"),
    ("/v1/nobody/{sha}/add", {"args": [1, 2]}, 404, "unknown_tenant"),
    ("/v1/acme/" + "b" * 64 + "/add", {"args": [1, 2]}, 404, "unknown_module"),
    ("/v1/acme/{sha}/add", {"args": [1]}, 400, "bad_arguments"),
    ("/v1/acme/{sha}/add", {"args": "1,2"}, 400, "bad_arguments"),
    ("/v1/acme/{sha}/trap", {"args": []}, 422, "guest_trap"),
    ("/v1/acme/{sha}/spin", {"args": []}, 408, "deadline_exceeded"),
    ("/v1/acme/{bsha}/bad_output", b"x", 422, "bad_guest_output"),
    ("/v1/acme/{sha}/add", b"x", 400, "bad_arguments"),
])
async def test_errors_carry_a_stable_code(base_url, path: str, body: Any, status: int, code: str) -> None:
    base, sha, bsha = base_url
    content_type = "application/octet-stream" if path.endswith("bad_output") else "application/json"
    got_status, got = await post(base + path.format(sha=sha, bsha=bsha), body, content_type)
    assert got_status == status
    assert got["error"]["code"] == code
    assert got["error"]["message"]


@pytest.mark.parametrize(("body", "status", "expected"), [
    (b'{"args":[40,2]}', 200, {"results": [42]}),  # compact integers: the parser's fast path
    (b'{"args": [40, 2]}', 200, {"results": [42]}),
    (b'{"args":[-1,-2]}', 200, {"results": [-3]}),
    (b'{"args":[0,0]}', 200, {"results": [0]}),
    (b'{"args":[4294967295,1]}', 200, {"results": [0]}),  # unsigned i32 input wraps
    (b'{"args":[4294967296,1]}', 400, "bad_arguments"),  # out of i32 range
    (b'{"args":[012,1]}', 400, "bad_arguments"),  # not JSON: leading zero
    (b'{"args":[1.0,1]}', 400, "bad_arguments"),  # a float for an i32
    (b'{"args":[1]}', 400, "bad_arguments"),
    (b'{"args":[1,2],"x":1}', 200, {"results": [3]}),
    (b"", 400, "bad_arguments"),  # add takes two arguments; no body means none
])
async def test_argument_bodies_parse_alike_on_every_path(base_url, body: bytes, status: int, expected: Any) -> None:
    base, sha, _ = base_url
    for _ in range(2):  # the first request resolves the route, the second finds it cached
        got_status, got = await post(f"{base}/v1/acme/{sha}/add", body)
        assert got_status == status
        assert got == expected if status == 200 else got["error"]["code"] == expected


async def test_a_cached_route_still_checks_the_method(base_url) -> None:
    base, sha, _ = base_url
    assert await post(f"{base}/v1/acme/{sha}/add", {"args": [1, 2]}) == (200, {"results": [3]})
    async with aiohttp.ClientSession() as session, session.get(f"{base}/v1/acme/{sha}/add") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert await post(f"{base}/v1/acme/{sha}/add?trace=1", {"args": [2, 2]}) == (200, {"results": [4]})


async def test_probes_and_metrics(base_url) -> None:
    base, sha, _ = base_url
    await post(f"{base}/v1/acme/{sha}/add", {"args": [1, 2]})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        # The used instance is reset after the response, so the warm count may lag the answer a little:
        # readiness holds meanwhile, and the count comes back to the floor (the loop is only a hang guard).
        for _ in range(500):
            async with session.get(f"{base}/readyz") as resp:
                ready = await resp.json()
                assert resp.status == 200
                assert ready["ready"]
            if {t["warm"] for t in ready["tuples"]} == {2}:
                break
            await asyncio.sleep(0.01)
        assert {t["warm"] for t in ready["tuples"]} == {2}
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
        async with session.get(f"{base}/nowhere") as resp:
            assert resp.status == 404
    short = sha[:12]
    assert f'tensor_wasm_pool_draws_total{{module="{short}",result="hit",tenant="acme"}} 1.0' in text
    for name in ("tensor_wasm_pool_warm_instances", "tensor_wasm_pool_reset_failed_total",
                 "tensor_wasm_pool_in_flight", "tensor_wasm_invocation_duration_seconds_bucket",
                 "tensor_wasm_instantiation_duration_seconds_count"):
        assert name in text


async def test_pipelined_requests_are_answered_in_order(base_url) -> None:
    base, sha, _ = base_url
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    requests = b""
    for export, args in (("spin", []), ("add", [1, 1]), ("add", [2, 2])):
        body = json.dumps({"args": args}).encode()
        requests += (b"POST /v1/acme/%s/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (sha.encode(), export.encode(), len(body), body))
    writer.write(requests)
    raw = b""
    while raw.count(b"HTTP/1.1") < 3 or not raw.endswith(b"}"):
        raw += await reader.read(65536)
    writer.close()
    statuses = re.findall(rb"HTTP/1.1 (\d+)", raw)
    assert statuses == [b"408", b"200", b"200"]
    assert raw.index(b"deadline_exceeded") < raw.index(b'{"results":[2]}') < raw.index(b'{"results":[4]}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", *args,
                                 "--host", "127.0.0.1", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc, port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def get_json(url: str, timeout: float = 15.0) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_cli_serves_a_module_given_by_flags(cli_server, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    _, port = cli_server("--tenant", "acme", "--module", str(path), "--sha256", sha, "--warm", "2")
    deadline = time.monotonic() + 15
    while get_json(f"http://127.0.0.1:{port}/readyz")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/acme/{sha}/add", data=b'{"args":[20,22]}',
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.loads(resp.read()) == {"results": [42]}


def test_cli_refuses_a_module_whose_hash_does_not_match(cli_server, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    wrong = "f" * 64
    proc, port = cli_server("--tenant", "acme", "--module", str(path), "--sha256", wrong)
    status, body = get_json(f"http://127.0.0.1:{port}/readyz")
    deadline = time.monotonic() + 15
    while body["tuples"][0]["error"] is None:
        assert time.monotonic() < deadline
        status, body = get_json(f"http://127.0.0.1:{port}/readyz")
    assert status == 503
    assert not body["ready"]
    error = body["tuples"][0]["error"]
    assert error["code"] == "module_hash_mismatch"
    assert sha in error["message"]
    assert wrong in error["message"]
    assert proc.poll() is None  # alive, never ready


def test_cli_rejects_a_bad_config_with_exit_code_2(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("tuples: {}\n")
    result = subprocess.run([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config",
                             str(tmp_path / "c.yaml")], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "tuples must be a list" in result.stderr

"""Graceful shutdown of a real `warmpool runtime serve`: readiness first, a drain window, calls finish, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.wasm import SLEEPY, STATEFUL, tuple_entry, write_module

pytestmark = pytest.mark.component

GUARD = 60.0
"""Hang guard for every wait: generous, never a measurement."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), GUARD)

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await self.connect()
        writer.write(raw)
        try:
            return await read_response(reader)
        finally:
            writer.close()

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return await self.request(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())

    async def until(self, path: str, status: int) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + GUARD
        while True:
            try:
                got, headers, body = await self.get(path)
                if got == status:
                    return headers, body
            except OSError:
                pass
            assert self.proc.poll() is None, "the runtime exited"
            assert time.monotonic() < deadline, f"{path} never answered {status}"
            await asyncio.sleep(0.02)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any]) -> Process:
        (tmp_path / "runtime.json").write_text(json.dumps(config))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config",
                                 str(tmp_path / "runtime.json"), "--host", "127.0.0.1", "--port", str(port),
                                 "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return Process(proc, port)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), GUARD)
    return int(lines[0].split()[1]), headers, body


def invoke(sha: str, export: str, args: list[int]) -> bytes:
    body = json.dumps({"args": args}).encode()
    return (b"POST /v1/acme/%s/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (sha.encode(), export.encode(), len(body), body))


def small(tuples: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    return {"tuples": tuples, "limits": {"memoryBytes": 1 << 20, "timeoutMs": 300_000},
            "settings": {"poolSlots": 16, "maxMemoryBytes": 1 << 20, **settings}}


async def running(process: Process, calls: int) -> None:
    """Wait until `calls` invocations are in flight (per the runtime's own gauge)."""
    deadline = time.monotonic() + GUARD
    while True:
        _, _, text = await process.get("/metrics")
        in_flight = sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
                        if line.startswith("tensor_wasm_pool_in_flight{"))
        if in_flight >= calls:
            return
        assert time.monotonic() < deadline, "the call never started"
        await asyncio.sleep(0.02)


async def test_sigterm_fails_readiness_drains_finishes_calls_and_exits_0(spawn, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    spath, ssha = write_module(tmp_path, SLEEPY)
    process = spawn(small([tuple_entry("acme", path, sha, 1), tuple_entry("acme", spath, ssha, 1)],
                          drainSeconds=2.0, shutdownTimeoutSeconds=40.0))
    await process.until("/readyz", 200)
    kept, kept_writer = await process.connect()  # a keep-alive connection from before the signal
    kept_writer.write(invoke(sha, "add", [1, 2]))
    assert (await read_response(kept))[2] == b'{"results":[3]}'
    slow, slow_writer = await process.connect()
    slow_writer.write(invoke(ssha, "sleep_ms", [5000]))  # in flight across the whole drain window
    await running(process, 1)

    process.proc.send_signal(signal.SIGTERM)
    headers, body = await process.until("/readyz", 503)
    assert (json.loads(body)["draining"], json.loads(body)["reason"]) == (True, "draining")
    assert int(headers["retry-after"]) >= 1
    assert (await process.get("/healthz"))[0] == 200
    # Requests sent during the drain window are answered, on old and new connections alike.
    kept_writer.write(invoke(sha, "add", [2, 2]))
    status, headers, body = await read_response(kept)
    assert (status, body, headers.get("connection")) == (200, b'{"results":[4]}', "close")
    status, _, body = await process.request(invoke(sha, "add", [3, 3]))
    assert (status, body) == (200, b'{"results":[6]}')

    async def refused() -> None:  # after the window, the listener closes
        while True:
            try:
                await process.get("/healthz")
            except (OSError, asyncio.IncompleteReadError):  # refused, or reset while in the closing listener's queue
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(refused(), GUARD)
    assert process.proc.poll() is None  # still finishing the call in flight
    status, _, body = await read_response(slow)
    assert (status, body) == (200, b'{"results":[1007]}')
    assert await asyncio.wait_for(asyncio.to_thread(process.proc.wait), GUARD) == 0
    kept_writer.close()
    slow_writer.close()


async def test_a_call_stuck_past_the_shutdown_deadline_does_not_hold_the_exit(spawn, tmp_path: Path) -> None:
    spath, ssha = write_module(tmp_path, SLEEPY)
    process = spawn(small([tuple_entry("acme", spath, ssha, 1)], drainSeconds=0.2, shutdownTimeoutSeconds=1.0))
    await process.until("/readyz", 200)
    _, writer = await process.connect()
    writer.write(invoke(ssha, "sleep_ms", [240_000]))  # far beyond the hang guard
    await running(process, 1)
    process.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(asyncio.to_thread(process.proc.wait), GUARD) == 0
    writer.close()


async def test_a_module_download_in_progress_does_not_delay_the_exit(spawn, tmp_path: Path) -> None:
    silent = socket.socket()  # accepts connections (in its backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/module.wasm"
    try:
        tuple_config = {"tenant": "acme", "module": {"sha256": "a" * 64, "source": {"url": url}},
                        "warmInstancesPerTuple": 1}
        process = spawn(small([tuple_config], drainSeconds=0.2, shutdownTimeoutSeconds=2.0,
                              fetchTimeoutSeconds=240.0, fetchDeadlineSeconds=480.0))
        await process.until("/healthz", 200)
        status, _, body = await process.get("/readyz")
        assert status == 503
        assert json.loads(body)["tuples"][0]["error"] is None  # still downloading
        process.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(process.proc.wait), GUARD) == 0
    finally:
        silent.close()


async def test_sigint_skips_the_drain_window(spawn, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    process = spawn(small([tuple_entry("acme", path, sha, 1)], drainSeconds=240.0, shutdownTimeoutSeconds=480.0))
    await process.until("/readyz", 200)
    process.proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(asyncio.to_thread(process.proc.wait), GUARD) == 0

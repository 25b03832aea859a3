"""HTTP limits on a real `warmpool runtime serve` process: memory held by abusive clients is returned."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.wasm import STATEFUL, tuple_entry, write_module

pytestmark = pytest.mark.component

GUARD = 60.0
"""Hang guard for every wait: generous, never a measurement."""
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + GUARD
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def runtime_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    path, sha = write_module(tmp_path, STATEFUL)
    config = {"tuples": [tuple_entry("acme", path, sha, 2)], "limits": {"memoryBytes": MIB},
              "settings": {"poolSlots": 16, "maxMemoryBytes": MIB, "drainSeconds": 0}}
    (tmp_path / "runtime.json").write_text(json.dumps(config))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config",
                             str(tmp_path / "runtime.json"), "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc, port, sha
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def healthz(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def test_memory_of_half_sent_bodies_returns_when_their_clients_leave(runtime_process) -> None:
    proc, port, sha = runtime_process

    def listening() -> bool:
        try:
            return healthz(port).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    wait_for(listening, "the runtime did not start")
    for _ in range(50):  # warm the server's own allocations up before the baseline
        healthz(port)
    baseline = rss_mib(proc.pid)
    abusers = []
    for _ in range(20):  # each declares 16 MiB (the default limit) and stops 1 MiB short of it
        conn = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
        conn.sendall(b"POST /v1/acme/%s/add HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % (sha.encode(), 16 * MIB))
        abusers.append(conn)
    piece = b"7" * 3000
    for _ in range(15 * MIB // len(piece)):  # small pieces, interleaved: the server's reads interleave too
        for conn in abusers:
            conn.sendall(piece)
    assert healthz(port).startswith(b"HTTP/1.1 200")
    # The abuse is real: the server reads what the kernel still buffers, 300 MiB of bodies in all.
    wait_for(lambda: rss_mib(proc.pid) > baseline + 200, "the bodies were not read")
    for conn in abusers:
        conn.close()
    wait_for(lambda: rss_mib(proc.pid) < baseline + 48,
             f"memory did not return near its baseline of {baseline:.0f} MiB (held {rss_mib(proc.pid):.0f} MiB)")

"""The runtime alone: serve the example module from a real runtime on loopback and invoke it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from warmpool_runtime.examples import build_example


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"runtime exited with code {proc.returncode}")
        try:
            status, body = _request(f"{base}/readyz")
            if status == 200:
                ready: dict[str, Any] = json.loads(body)
                return ready
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("runtime did not become ready in time")


def runtime_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="warmpool-demo-") as tmp:
        path, sha = build_example(Path(tmp))
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        print(f"example module {path.name} ({path.stat().st_size} bytes)")
        proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--tenant", "demo",
                                 "--module", str(path), "--sha256", sha, "--warm", "4",
                                 "--host", "127.0.0.1", "--port", str(port)])
        try:
            ready = _wait_ready(base, proc)
            print(f"ready: {ready['tuples'][0]['warm']} warm instances of tenant demo")
            _, body = _request(f"{base}/v1/demo/{sha}/score", json.dumps({"args": [2.0, 0.5]}).encode())
            print(f"score(2.0, 0.5) -> {json.loads(body)['results'][0]:.4f}")
            for text in (b"a good, good movie", b"a bad, bad day"):
                _, out = _request(f"{base}/v1/demo/{sha}/classify", text, "application/octet-stream")
                print(f"classify({text.decode()!r}) -> {out.decode()}")
            status, body = _request(f"{base}/v1/demo/{'0' * 64}/score", b'{"args":[1,1]}')
            print(f"unknown module -> {status} {json.loads(body)['error']['code']}")
            for _ in range(200):
                _request(f"{base}/v1/demo/{sha}/add", b'{"args":[1,2]}')
            _, metrics = _request(f"{base}/metrics")
            print("metrics:")
            for line in metrics.decode().splitlines():
                if line.startswith(("tensor_wasm_pool_draws_total", "tensor_wasm_pool_warm_instances")):
                    print(f"  {line}")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


"""Helpers for tests of a real `warmpool runtime serve` process whose config and token files change while it runs."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

GUARD = 60.0
"""Hang guard for every wait: generous, never a measurement."""

SETTINGS = {"poolSlots": 64, "maxMemoryBytes": 16 << 20, "configPollSeconds": 0.1, "fetchRetries": 0,
            "drainSeconds": 0}
"""Small engine, a fast config poll (the default is 1 s), no retry of a source that cannot be reached, and
no drain window at the end of a test."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def until(predicate: Callable[[], Any], what: str, timeout: float = GUARD) -> Any:
    """Poll until `predicate` returns something truthy (a liveness bound, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


class MountedDir:
    """A directory updated as the kubelet updates a mounted ConfigMap or Secret: each version is a new
    `..<timestamp>` directory, `..data` is swapped to it with one rename, and each file is a symlink
    through `..data`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def write(self, files: dict[str, str]) -> None:
        self._n += 1
        version = self.root / f"..2026_12_01_00_00_00.{self._n:09d}"
        version.mkdir()
        for name, text in files.items():
            (version / name).write_text(text)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if old is not None:
            for child in (self.root / old).iterdir():
                child.unlink()
            (self.root / old).rmdir()


class Client:
    """Plain HTTP/1.1 on one keep-alive connection per call site (http.client, loopback only)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=GUARD)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def call(self, tenant: str, sha: str, export: str, args: list[int],
             token: str | None = None) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, got, body = self.request("POST", f"/v1/{tenant}/{sha}/{export}",
                                         json.dumps({"args": args}).encode(), headers)
        return status, got, json.loads(body)

    def readyz(self) -> tuple[int, Any]:
        return self.get_json("/readyz")

    def tuple_state(self, tenant: str, sha: str) -> dict[str, Any] | None:
        _, body = self.readyz()
        return next((t for t in body["tuples"] if (t["tenant"], t["sha256"]) == (tenant, sha)), None)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 when there is none)."""
        _, _, text = self.request("GET", "/metrics")
        total = 0.0
        for line in text.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


class SteadyLoad:
    """Sequential calls to one tuple on a background thread, on one keep-alive connection, counted by status.

    A short pause between calls leaves the pool time to reset the instance a call used (after its
    response), as on any pod not driven past its warm set: a closed loop with no pause on a busy machine
    can outrun the resets and miss without any config change.
    """

    def __init__(self, port: int, tenant: str, sha: str, export: str, args: list[int], *,
                 pause: float = 0.005) -> None:
        self.statuses: Counter[int] = Counter()
        self.wrong: list[bytes] = []
        self._stop = threading.Event()
        body = json.dumps({"args": args}).encode()
        expected = None

        def run() -> None:
            nonlocal expected
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
            try:
                while not self._stop.is_set():
                    conn.request("POST", f"/v1/{tenant}/{sha}/{export}", body=body,
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    answer = resp.read()
                    self.statuses[resp.status] += 1
                    expected = expected or answer
                    if answer != expected:
                        self.wrong.append(answer)
                    self._stop.wait(pause)
            finally:
                conn.close()

        self._thread = threading.Thread(target=run, name="steady-load", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        until(lambda: sum(self.statuses.values()) > 0, "the steady load got its first answer")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(GUARD)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


@contextmanager
def serve(config_path: Path, *extra: str,
          command: Sequence[str] = (sys.executable, "-m", "warmpool.cli"),
          ) -> Iterator[tuple[subprocess.Popen[bytes], Client]]:
    """`warmpool runtime serve --config config_path [extra...]` on a free loopback port, until the block ends.

    `command` is how `warmpool` is run; the log is `runtime-<port>.log` beside the config's directory.
    """
    port = free_port()
    log = config_path.parent.parent / f"runtime-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "runtime", "serve", "--config",
                                 str(config_path), "--host", "127.0.0.1", "--port", str(port), *extra],
                                stdout=out, stderr=subprocess.STDOUT)
    client = Client(port)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return client.request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        until(healthy, "the runtime answers /healthz")
        yield proc, client
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

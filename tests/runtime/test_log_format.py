"""`warmpool runtime serve --log-format`: a real runtime process logs text lines or one JSON object per line."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.wasm import STATEFUL, tuple_entry, write_module
from warmpool.cli import build_parser

pytestmark = pytest.mark.component

GUARD_S = 60.0
"""Hang guard for the process: generous, never a measurement."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + GUARD_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=GUARD_S) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, "the runtime never became Ready"
        time.sleep(0.05)


def served_log(tmp_path: Path, *flags: str) -> Iterator[str]:
    """Run the runtime until it logs that it listens and is Ready, stop it with SIGINT, yield its log lines."""
    path, sha = write_module(tmp_path, STATEFUL)
    config = tmp_path / "runtime.json"
    config.write_text(json.dumps({"tuples": [tuple_entry("acme", path, sha, 1)]}))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config", str(config), "--host", "127.0.0.1",
         "--port", str(port), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "listening on" in line:
                break
        wait_ready(port)  # its signal handlers are installed by then
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=GUARD_S)
        lines.extend(rest.splitlines())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, lines
    yield from (line for line in lines if line)


def test_json_format_writes_one_object_per_line(tmp_path: Path) -> None:
    records = [json.loads(line) for line in served_log(tmp_path, "--log-format", "json")]
    listening = next(r for r in records if r["message"].startswith("listening on http://127.0.0.1:"))
    assert (listening["severity"], listening["name"]) == ("INFO", "warmpool.runtime")
    assert "timestamp" in listening
    assert any(r["message"] == "stopped" for r in records)


def test_text_is_the_default(tmp_path: Path) -> None:
    lines = list(served_log(tmp_path))
    listening = next(line for line in lines if "listening on" in line)
    assert " INFO warmpool.runtime listening on http://127.0.0.1:" in listening
    with pytest.raises(json.JSONDecodeError):
        json.loads(listening)


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["runtime", "serve", "--log-format", "xml"])

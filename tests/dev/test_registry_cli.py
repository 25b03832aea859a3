"""`warmpool dev registry` and `warmpool dev down` with a real registry recorded in a dev state directory."""

from __future__ import annotations

import base64
import json
import stat
import urllib.request
from pathlib import Path

import pytest

from tests.gobuilds import ensure_registry
from warmpool.cli import main
from warmpool.dev import procs
from warmpool.dev.commands import registry_files
from warmpool.dev.layout import Identity, Layout, kubeconfig
from warmpool.dev.registry import running, start_registry

pytestmark = pytest.mark.component


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A state directory as `warmpool dev up` leaves it, recorded in its kubeconfig (no control plane needed)."""
    layout = Layout(state_dir=tmp_path / "state", kubeconfig=tmp_path / "kubeconfig")
    layout.state_dir.mkdir()
    layout.kubeconfig.write_text(kubeconfig(server="https://127.0.0.1:1", ca_data_b64="",
                                            identity=Identity("admin", "t", ()), state_dir=layout.state_dir))
    return layout


def _status_with(url: str, username: str, password: str) -> int:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(f"{url}/v2/", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        status: int = response.status
        return status


def test_dev_registry_prints_the_login_as_json_and_down_stops_it(
    layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    files = registry_files(layout)
    access = start_registry(binary=ensure_registry(), files=files)
    assert files.pid == layout.pid("registry")
    assert stat.S_IMODE(files.credentials.stat().st_mode) == 0o600

    assert main(["dev", "registry", "--kubeconfig", str(layout.kubeconfig), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"url", "username", "password"}
    assert document["url"] == access.url
    assert document["url"].startswith("http://127.0.0.1:")
    assert _status_with(document["url"], document["username"], document["password"]) == 200

    assert main(["dev", "registry", "--kubeconfig", str(layout.kubeconfig)]) == 0
    human = capsys.readouterr().out
    assert access.url in human
    assert access.password not in human

    record = procs.read_pid_file(files.pid)
    assert record is not None
    assert main(["dev", "down", "--kubeconfig", str(layout.kubeconfig)]) == 0
    assert "stopped registry" in capsys.readouterr().err
    assert not procs.recorded_alive(record)
    assert not running(files)
    assert not layout.registry.exists()  # the login goes with the state


def test_dev_registry_says_when_there_is_none(layout: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "registry", "--kubeconfig", str(layout.kubeconfig), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no registry recorded" in captured.err
    assert "warmpool dev up" in captured.err


def test_dev_registry_says_when_it_stopped(layout: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    files = registry_files(layout)
    start_registry(binary=ensure_registry(), files=files)
    procs.stop_pid_file(files.pid)
    assert main(["dev", "registry", "--kubeconfig", str(layout.kubeconfig), "--json"]) == 1
    assert "is not running" in capsys.readouterr().err

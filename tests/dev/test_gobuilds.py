"""The session's background builds of the Go tools: verdicts, failures surfaced without a rebuild, tier order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gobuilds import (
    Background,
    BackgroundBuildFailed,
    Verdict,
    ensure_through,
    read_verdicts,
)
from tests.packaging.gotools import ToolUnavailable
from warmpool.dev.build import BuildError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_verdicts_fold_per_tool_and_skip_a_torn_last_line(tmp_path: Path) -> None:
    status = tmp_path / "status.jsonl"
    assert read_verdicts(status) == {}
    events = [{"tool": "helm", "event": "start"}, {"tool": "helm", "event": "built", "path": "/c/helm"},
              {"tool": "registry", "event": "start"}, {"tool": "registry", "event": "failed", "error": "exit 1"},
              {"tool": "kcluster", "event": "start"}]
    status.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"tool": "prometh')
    assert read_verdicts(status) == {
        "helm": Verdict(started=True, path="/c/helm"),
        "registry": Verdict(started=True, error="exit 1"),
        "kcluster": Verdict(started=True),
    }


@pytest.mark.component
def test_a_failed_background_build_fails_the_test_that_needs_it_with_its_message(tmp_path: Path) -> None:
    # An empty cache and no `go` on PATH: the background build of helm fails at once.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    background = Background(["helm"], tmp_path, env=env)
    assert background.process.wait(60) == 1
    with pytest.raises(BackgroundBuildFailed) as caught:
        ensure_through(background, "helm")
    message = str(caught.value)
    assert message.startswith("the background build of helm (started with the test session) failed:")
    assert "`go` is not on PATH" in message
    assert str(background.log) in message
    # Whoever handles their own failed builds handles this one.
    assert isinstance(caught.value, BuildError)
    assert isinstance(caught.value, ToolUnavailable)
    background.stop()
    assert "`go` is not on PATH" in background.log.read_text() + background.status.read_text()


@pytest.mark.component
def test_a_test_waits_for_the_tool_the_background_is_building_and_gets_gos_own_error(tmp_path: Path) -> None:
    # Go itself fails: nothing cached, and the module proxy is off (nothing may download here anyway).
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "GOMODCACHE": str(tmp_path / "mod"),
           "GOPROXY": "off"}
    background = Background(["helm"], tmp_path / "background", env=env)
    deadline = time.monotonic() + 60
    while not read_verdicts(background.status).get("helm", Verdict()).started:
        assert time.monotonic() < deadline, background.log.read_text()
        time.sleep(0.05)
    with pytest.raises(BackgroundBuildFailed) as caught:
        ensure_through(background, "helm")
    assert "go install helm.sh/helm/v3/cmd/helm@" in str(caught.value)
    assert "GOPROXY=off" in str(caught.value)
    background.stop()


@pytest.mark.component
def test_a_built_tool_is_the_one_the_background_reported(tmp_path: Path) -> None:
    background = Background(["helm"], tmp_path / "background")
    assert background.process.wait(1800) == 0
    path = ensure_through(background, "helm")
    assert read_verdicts(background.status)["helm"] == Verdict(started=True, path=str(path))
    assert path.is_file()
    assert os.access(path, os.X_OK)
    background.stop()
    assert not background.status.parent.exists(), "nothing failed: nothing to keep"


@pytest.mark.component
def test_a_tool_the_background_does_not_build_is_built_here(tmp_path: Path) -> None:
    background = Background([], tmp_path)
    background.stop()
    assert ensure_through(background, "helm").is_file()


@pytest.mark.component
def test_the_tiers_run_in_order_unit_component_e2e() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/dev/test_registry.py", "tests/e2e/test_cluster.py", "tests/contract/test_redact_url.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    files = [line.split("::")[0] for line in listed.splitlines() if "::" in line]
    # The mixed module's unit tests run with the unit tier, its component tests with theirs, e2e last.
    first_e2e = files.index("tests/e2e/test_cluster.py")
    assert set(files[first_e2e:]) == {"tests/e2e/test_cluster.py"}
    registry = [i for i, f in enumerate(files) if f == "tests/dev/test_registry.py"]
    contract = [i for i, f in enumerate(files) if f == "tests/contract/test_redact_url.py"]
    assert max(contract) < first_e2e
    assert registry[0] < min(contract) < registry[-1], "the mixed module is split across the tiers"

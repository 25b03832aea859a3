"""The runtime image's packages suffice: `warmpool runtime serve` fetches a module over HTTP and answers a call
with every package the runtime image leaves out (kopf, kubernetes, pydantic, ...) and the operator's code
unimportable."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.blocked import OPERATOR_ONLY, blocked_command, refused, target_rules
from tests.runtime.live import GUARD, SETTINGS, serve, until
from tests.runtime.wasm import STATEFUL, write_module
from tools.image_prune import Rule, pruned
from warmpool.demo import loopback

pytestmark = pytest.mark.component


@pytest.fixture
def module_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, sha256) of a Wasm module served over HTTP on loopback."""
    path, sha = write_module(tmp_path, STATEFUL)
    with loopback.module_server({"echo.wasm": path.read_bytes()}) as base:
        yield f"{base}/echo.wasm", sha


def write_config(directory: Path, url: str, sha: str) -> Path:
    etc = directory / "etc"
    etc.mkdir()
    config = etc / "runtime.json"
    config.write_text(json.dumps({"tuples": [{"tenant": "acme", "module": {"sha256": sha, "source": {"url": url}},
                                              "warmInstancesPerTuple": 1}], "settings": SETTINGS}))
    return config


def test_the_runtime_serves_with_only_the_runtime_images_packages(
    tmp_path: Path, module_server: tuple[str, str]
) -> None:
    url, sha = module_server
    rules = target_rules("runtime", *OPERATOR_ONLY)
    for absent in ("kopf/__init__.py", "kubernetes/__init__.py", "pydantic/__init__.py", "warmpool_operator/app.py",
                   "requests/__init__.py"):
        assert pruned(absent, rules), absent
    assert not pruned("wasmtime/__init__.py", rules)
    config = write_config(tmp_path, url, sha)
    with serve(config, command=blocked_command(rules, tmp_path)) as (proc, client):
        until(lambda: (client.tuple_state("acme", sha) or {}).get("state") == "warm", "the fetched module is warm")
        status, _, body = client.call("acme", sha, "add", [2, 3])
        assert status == 200, body
        assert body == {"results": [5]}
        proc.terminate()
        assert proc.wait(GUARD) == 0
    (log,) = tmp_path.glob("runtime-*.log")
    text = log.read_text()
    assert "Traceback" not in text
    # What it looked for and went without are optional probes (yarl asks whether pydantic_core is there).
    assert set(refused(text)) <= {"pydantic_core"}, refused(text)


def test_the_blocker_bites_when_the_runtime_lacks_a_module_it_needs(
    tmp_path: Path, module_server: tuple[str, str]
) -> None:
    """The negative control: yarl (what the module fetcher builds URLs with) hidden too, serving fails."""
    url, sha = module_server
    rules = target_rules("runtime", *OPERATOR_ONLY, Rule("yarl", keep=False))
    config = write_config(tmp_path, url, sha)
    result = subprocess.run([*blocked_command(rules, tmp_path), "runtime", "serve", "--config", str(config),
                             "--host", "127.0.0.1", "--port", "0"],
                            capture_output=True, text=True, timeout=GUARD, check=False)
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'yarl'" in result.stderr
    assert "yarl" in refused(result.stderr)


def test_the_operator_command_in_the_runtime_image_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run([*blocked_command(target_rules("runtime"), tmp_path), "operator", "run", "-A"],
                            capture_output=True, text=True, timeout=GUARD, check=False)
    assert result.returncode == 2
    assert "warmpool operator: needs kopf, which this installation lacks" in result.stderr
    assert "Traceback" not in result.stderr

"""`warmpool dev up --prometheus` on the real local control plane: Prometheus scraping the operator, `dev down`."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmpool.cli import main
from warmpool.dev import procs
from warmpool.dev.commands import resolve_layout
from warmpool.dev.prometheus import REPO_RULES, files_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}", timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def eventually(what: str, check: Any, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"never happened: {what} (last seen: {last!r})")


def test_dev_up_runs_prometheus_with_the_charts_rules_scraping_the_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    try:
        assert main(["dev", "up", "--kubeconfig", str(kubeconfig), "--no-registry", "--prometheus"]) == 0
        said = capsys.readouterr().err
        found = re.search(r"Prometheus: (http://127\.0\.0\.1:\d+)", said)
        assert found is not None, said
        url = found.group(1)
        layout = resolve_layout(kubeconfig, None)

        rules = {r["name"] for g in api(url, "/api/v1/rules")["groups"] for r in g["rules"]}
        wanted = {r.get("alert") or r["record"] for g in yaml.safe_load(REPO_RULES.read_text())["groups"]
                  for r in g["rules"]}
        assert rules == wanted
        assert "WarmPoolNotReady" in rules
        assert "warmpool:tensor_wasm_pool_draws:rate5m" in rules

        def operator_up() -> list[dict[str, Any]]:
            targets = api(url, "/api/v1/targets")["activeTargets"]
            return [t for t in targets if t["labels"]["job"] == "warmpool-operator" and t["health"] == "up"]

        up = eventually("the operator scraped", operator_up)
        assert up[0]["scrapeUrl"].startswith("http://127.0.0.1:")
        process = api(url, '/api/v1/query?query=process_resident_memory_bytes%7Bjob%3D%22warmpool-operator%22%7D')
        assert process["result"], "the operator exports the standard process series"
    finally:
        assert main(["dev", "down", "--kubeconfig", str(kubeconfig)]) == 0
    stopped = capsys.readouterr().err
    assert "stopped prometheus" in stopped
    assert "stopped prometheus-targets" in stopped
    for component in ("prometheus", "prometheus-targets"):
        assert procs.read_pid_file(layout.pid(component)) is None
    assert not files_of(layout).root.exists()

"""The dev Prometheus: its build plan (tags, no SD but file/static), scrape config and targets by pod IP."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmpool.dev.build import PROMETHEUS, REGISTRY, GoToolchain, plan_go_build
from warmpool.dev.prometheus import (
    PrometheusFiles,
    operator_target,
    pod_relabelings,
    runtime_targets,
    scrape_config,
    write_if_changed,
)

pytestmark = pytest.mark.unit

TOOLCHAIN = GoToolchain(go="/usr/local/go/bin/go", version="go1.26.8", platform="linux/amd64")
CHART_PODMONITOR = Path(__file__).resolve().parents[2] / "charts" / "warmpool-operator" / "templates" / (
    "monitoring-podmonitor.yaml"
)


def pod(name: str, ip: str | None, *, phase: str = "Running", port: str = "http", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name, "namespace": "team-a",
            "labels": {"app.kubernetes.io/instance": "classify", "tensorwasm.dev/tenant": "acme"}, **meta,
        },
        "spec": {"containers": [{"name": "runtime", "ports": [{"name": port, "containerPort": 8080}]}]},
        "status": {"phase": phase, **({"podIP": ip} if ip else {})},
    }


def test_prometheus_is_built_without_service_discovery_but_file_and_static(tmp_path: Path) -> None:
    plan = plan_go_build(PROMETHEUS, toolchain=TOOLCHAIN, cache_root=tmp_path, build_date="2026-01-01T00:00:00Z")
    command = list(plan.command)
    assert command[command.index("-tags") + 1] == "remove_all_sd"
    assert command[-1] == "github.com/prometheus/prometheus/cmd/prometheus"
    assert plan.version.startswith("v0.")
    assert "-X github.com/prometheus/common/version.Version=" + plan.version in command[command.index("-ldflags") + 1]


def test_build_tags_are_part_of_the_cache_key_only_where_set(tmp_path: Path) -> None:
    tagged = plan_go_build(PROMETHEUS, toolchain=TOOLCHAIN, cache_root=tmp_path, build_date="d")
    untagged = plan_go_build(replace(PROMETHEUS, tags=()), toolchain=TOOLCHAIN, cache_root=tmp_path, build_date="d")
    assert tagged.key != untagged.key
    assert "-tags" not in plan_go_build(REGISTRY, toolchain=TOOLCHAIN, cache_root=tmp_path, build_date="d").command


def test_runtime_targets_are_running_pods_by_ip_with_kubernetes_sd_labels() -> None:
    pods = [
        pod("b", "127.1.0.3"),
        pod("a", "127.1.0.2"),
        pod("pending", None, phase="Pending"),
        pod("leaving", "127.1.0.4", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("other-port", "127.1.0.5", port="debug"),
    ]
    targets = runtime_targets(pods)
    assert [t["targets"] for t in targets] == [["127.1.0.2:8080"], ["127.1.0.3:8080"]]
    labels = targets[0]["labels"]
    assert labels["__meta_kubernetes_namespace"] == "team-a"
    assert labels["__meta_kubernetes_pod_name"] == "a"
    assert labels["__meta_kubernetes_pod_label_app_kubernetes_io_instance"] == "classify"
    assert labels["__meta_kubernetes_pod_label_tensorwasm_dev_tenant"] == "acme"


def test_operator_target_comes_from_its_metrics_flags() -> None:
    argv = ["python", "-m", "warmpool", "operator", "run", "--metrics-host=127.0.0.1", "--metrics-port=40123"]
    assert operator_target(argv) == [{"targets": ["127.0.0.1:40123"], "labels": {}}]
    assert operator_target(["warmpool", "operator", "run", "--metrics-port=0"]) == []
    assert operator_target([]) == []


def test_scrape_config_keeps_the_operators_pool_labels_and_relabels_pods_as_the_podmonitor(tmp_path: Path) -> None:
    files = PrometheusFiles(root=tmp_path)
    config = scrape_config(files, interval="1s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["warmpool-operator"]["honor_labels"] is True
    assert config["rule_files"] == [str(files.rules)]
    relabel = {r["target_label"]: r["source_labels"] for r in jobs["warmpool-runtime"]["relabel_configs"]}
    assert relabel["warmpool"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    # The chart's PodMonitor gives the runtime series the same `warmpool` label from the same pod label.
    monitor = CHART_PODMONITOR.read_text()
    assert "sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]\n" \
           "          targetLabel: warmpool" in monitor
    assert {r["target_label"] for r in pod_relabelings()} == {"namespace", "pod", "warmpool"}
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_target_files_are_replaced_only_when_they_change(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    assert write_if_changed(path, [{"targets": ["127.0.0.1:1"], "labels": {}}])
    assert not write_if_changed(path, [{"targets": ["127.0.0.1:1"], "labels": {}}])
    assert write_if_changed(path, [])
    assert path.read_text() == "[]\n"
    assert list(tmp_path.iterdir()) == [path]

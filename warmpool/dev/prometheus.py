"""A local Prometheus for `warmpool dev up --prometheus`: its config, its targets by pod IP, start and stop."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from warmpool.dev import procs
from warmpool.dev.layout import HOST, Layout

if TYPE_CHECKING:
    from kubernetes import client

REPO_RULES = Path(__file__).resolve().parents[2] / "tools" / "prometheus" / "rules.yaml"
"""The chart's alerting rules (`spec.groups` of its PrometheusRule, default values), kept by tools.prometheus_rules."""
RUNTIME_SELECTOR = "app.kubernetes.io/name=warmpool-runtime,app.kubernetes.io/managed-by=warmpool-operator"
"""The runtime pods the operator creates (the chart's PodMonitor selects the same labels)."""
RUNTIME_PORT_NAME = "http"
RUNTIME_JOB = "warmpool-runtime"
OPERATOR_JOB = "warmpool-operator"
COMPONENTS = ("prometheus-targets", "prometheus")
"""Start order of the processes `dev up --prometheus` adds; stopping goes the other way."""

Log = Callable[[str], None]


class PrometheusError(RuntimeError):
    """Prometheus or its target writer failed to start; the message says which and shows its log tail."""


@dataclass(frozen=True)
class PrometheusFiles:
    """Everything the dev Prometheus keeps, under one directory of the state dir."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def rules(self) -> Path:
        return self.root / "rules.yaml"

    @property
    def runtime_targets(self) -> Path:
        return self.root / "runtime-targets.json"

    @property
    def operator_targets(self) -> Path:
        return self.root / "operator-targets.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url_file(self) -> Path:
        return self.root / "url"


def files_of(layout: Layout) -> PrometheusFiles:
    return PrometheusFiles(root=layout.state_dir / "prometheus")


def label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus' kubernetes_sd names it (`__meta_kubernetes_pod_label_<key>`)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in key)


def pod_relabelings() -> list[dict[str, Any]]:
    """The target labels the chart's PodMonitor gives runtime series: namespace, pod, warmpool."""
    return [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"], "target_label": "warmpool"},
    ]


def scrape_config(files: PrometheusFiles, *, interval: str) -> dict[str, Any]:
    """prometheus.yml: the operator (keeping its per-pool `namespace`) and the runtime pods, from file_sd."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(files.rules)],
        "scrape_configs": [
            {
                "job_name": OPERATOR_JOB,
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(files.operator_targets)]}],
            },
            {
                "job_name": RUNTIME_JOB,
                "file_sd_configs": [{"files": [str(files.runtime_targets)]}],
                "relabel_configs": pod_relabelings(),
            },
        ],
    }


def runtime_targets(pods: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """file_sd entries for pods that have an IP and a port named `http`, with kubernetes_sd's meta labels."""
    out: list[dict[str, Any]] = []
    for pod in pods:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        ip = status.get("podIP")
        if not ip or status.get("phase") != "Running" or meta.get("deletionTimestamp"):
            continue
        ports = [
            port.get("containerPort") for container in spec.get("containers") or ()
            for port in container.get("ports") or () if port.get("name") == RUNTIME_PORT_NAME
        ]
        if not ports or not isinstance(ports[0], int):
            continue
        labels = {
            "__meta_kubernetes_namespace": str(meta.get("namespace", "")),
            "__meta_kubernetes_pod_name": str(meta.get("name", "")),
            **{f"__meta_kubernetes_pod_label_{label_name(k)}": str(v) for k, v in (meta.get("labels") or {}).items()},
        }
        out.append({"targets": [f"{ip}:{ports[0]}"], "labels": labels})
    return sorted(out, key=lambda entry: entry["targets"][0])


def operator_target(cmdline: Sequence[str]) -> list[dict[str, Any]]:
    """The file_sd entry of a running `warmpool operator run` from its command line (none without metrics)."""
    flags = dict(arg[2:].split("=", 1) for arg in cmdline if arg.startswith("--") and "=" in arg)
    port = flags.get("metrics-port", "")
    if not port.isdigit() or int(port) == 0:
        return []
    return [{"targets": [f"{flags.get('metrics-host', HOST)}:{port}"], "labels": {}}]


def write_if_changed(path: Path, document: Any) -> bool:
    """Replace the file atomically when its content changes (Prometheus watches it)."""
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)
    return True


def list_runtime_pods(core: client.CoreV1Api) -> list[dict[str, Any]]:
    from warmpool.dev.agent.kubeapi import call_blocking

    listing = call_blocking(core.list_pod_for_all_namespaces, label_selector=RUNTIME_SELECTOR) or {}
    items = listing.get("items") or []
    return [item for item in items if isinstance(item, dict)]


def _cmdline(pid_file: Path) -> list[str]:
    record = procs.read_pid_file(pid_file)
    if record is None or not procs.recorded_alive(record):
        return []
    try:
        return Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def sync_targets(core: client.CoreV1Api, files: PrometheusFiles, operator_pid: Path) -> None:
    """One pass: the runtime pods by pod IP and the operator's metrics port, written where file_sd reads."""
    write_if_changed(files.runtime_targets, runtime_targets(list_runtime_pods(core)))
    write_if_changed(files.operator_targets, operator_target(_cmdline(operator_pid)))


def run_target_writer(*, kubeconfig: Path, files: PrometheusFiles, operator_pid: Path, period_s: float) -> int:
    """`warmpool dev prometheus-targets`: keep the target files current until stopped."""
    # Imported here: the Kubernetes client takes seconds to import, which `dev up`/`dev down` need not pay.
    from kubernetes import client

    from warmpool.dev.agent.kubeapi import ApiError, load_client

    core = client.CoreV1Api(load_client(kubeconfig))
    while True:
        try:
            sync_targets(core, files, operator_pid)
        except (OSError, ApiError) as exc:
            print(f"prometheus-targets: listing pods failed (kept the last targets): {exc}", file=sys.stderr,
                  flush=True)
        time.sleep(period_s)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _wait(what: str, check: Callable[[], bool], *, record: procs.Recorded, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not procs.recorded_alive(record):
            raise PrometheusError(f"{what} exited; its log ends:\n{procs.tail(log_path)}")
        time.sleep(0.2)
    raise PrometheusError(f"{what} not ready after {timeout_s:.0f}s; its log ends:\n{procs.tail(log_path)}")


def start_prometheus(
    *, binary: Path, layout: Layout, warmpool_command: Sequence[str], rules: Path = REPO_RULES,
    interval: str = "5s", log: Log,
) -> str:
    """Start the target writer and Prometheus on 127.0.0.1; return Prometheus' URL once it is ready."""
    files = files_of(layout)
    files.root.mkdir(parents=True, exist_ok=True)
    files.rules.write_text(rules.read_text())
    for stale in (files.runtime_targets, files.operator_targets):
        stale.unlink(missing_ok=True)
    files.config.write_text(yaml.safe_dump(scrape_config(files, interval=interval), sort_keys=False))
    writer_log = layout.log("prometheus-targets")
    writer = procs.start_detached(
        [*warmpool_command, "dev", "prometheus-targets", f"--kubeconfig={layout.kubeconfig}",
         f"--state-dir={layout.state_dir}"],
        log=writer_log, pid_file=layout.pid("prometheus-targets"),
    )
    # Its first pass follows the Kubernetes client's import, which can take seconds on a busy machine.
    _wait("the Prometheus target writer", files.operator_targets.exists, record=writer,
          log_path=writer_log, timeout_s=60)
    port = procs.free_port(HOST)
    url = f"http://{HOST}:{port}"
    log(f"starting Prometheus on {url} (rules from {rules}, scrape and evaluation every {interval})")
    prom_log = layout.log("prometheus")
    record = procs.start_detached(
        [str(binary), f"--config.file={files.config}", f"--storage.tsdb.path={files.data}",
         f"--web.listen-address={HOST}:{port}", "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d"],
        log=prom_log, pid_file=layout.pid("prometheus"), env=dict(os.environ),
    )
    _wait("Prometheus", lambda: _ready(url), record=record, log_path=prom_log, timeout_s=60)
    files.url_file.write_text(url + "\n")
    return url


def stop_prometheus(layout: Layout, *, log: Log) -> list[str]:
    """Stop what start_prometheus started; return the ones that were running."""
    stopped = []
    for component in reversed(COMPONENTS):
        if procs.stop_pid_file(layout.pid(component), grace_s=15.0):
            log(f"stopped {component}")
            stopped.append(component)
    return stopped


def prometheus_url(layout: Layout) -> str | None:
    try:
        return files_of(layout).url_file.read_text().strip() or None
    except OSError:
        return None

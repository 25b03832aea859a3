"""Session fixtures of the e2e tier: the real local control plane (kcluster), its node agent, the operator.

- `cluster`: etcd, kube-apiserver, controller-manager, scheduler and the node agent, started once per
  session from the cached kcluster build (compiled on first use) and stopped by PID at the end.
- `crds`: the cluster with every manifest in crds/ applied and Established.
- `operator`: the cluster with the CRDs and `warmpool operator run -A` running (tests may restart it).
- `namespace`: a fresh namespace per test, deleted afterwards.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local_cluster import credentials, running_control_plane, wait_for
from warmpool.dev import controlplane, procs
from warmpool.dev.build import SOURCE_DIR as CLUSTER_SOURCE
from warmpool.dev.build import kube_version_from_go_mod
from warmpool.dev.commands import REPO_CRDS
from warmpool.dev.controlplane import Cluster, ClusterError
from warmpool.dev.layout import Layout


def _say(line: str) -> None:
    print(f"[e2e cluster] {line}", file=sys.stderr, flush=True)


class LocalCluster:
    """A running local cluster, as e2e tests use it."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._crds: list[str] | None = None
        self.kube_version = kube_version_from_go_mod((CLUSTER_SOURCE / "go.mod").read_text())
        """The pinned Kubernetes version, e.g. v1.34.4."""

    @property
    def kubeconfig(self) -> Path:
        return self._cluster.kubeconfig

    @property
    def server(self) -> str:
        return self._cluster.server

    @property
    def binary(self) -> Path:
        return self._cluster.binary

    @property
    def layout(self) -> Layout:
        return self._cluster.layout

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the cluster's kubectl; with check, a non-zero exit fails the test showing stderr."""
        result = subprocess.run(
            [str(self.binary), "kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "--output=json").stdout)

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl("apply", "--filename=-", stdin=text)

    def wait_for(self, what: str, check: Callable[[], Any], timeout_s: float = 120,
                 interval_s: float = 0.5) -> Any:
        """Poll check until it returns something truthy; a failure shows the node agent's log."""
        return wait_for(what, check, timeout_s, interval_s,
                        detail=lambda: f"--- node agent log ---\n{self.log_tail('node-agent')}")

    def log_tail(self, component: str, lines: int = 40) -> str:
        """Last lines of a component's log (etcd, kube-apiserver, ..., node-agent, operator)."""
        return procs.tail(self.layout.log(component), lines)

    def pod_log(self, uid: str, container: str) -> str:
        """Output of a pod's container process, as the node agent captured it."""
        path = self.layout.pods / uid / "logs" / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port and etcd (every client's watch breaks)."""
        try:
            controlplane.restart_apiserver(self._cluster, token=credentials(self.kubeconfig).token)
        except ClusterError as exc:
            pytest.fail(str(exc))

    def install_crds(self) -> list[str]:
        if self._crds is None:
            self._crds = controlplane.install_crds(binary=self.binary, layout=self.layout, crds_dir=REPO_CRDS,
                                                   log=_say)
        return self._crds

    def operator_running(self) -> bool:
        record = procs.read_pid_file(self.layout.pid("operator"))
        return record is not None and procs.recorded_alive(record)

    def start_operator(self, env: dict[str, str] | None = None) -> None:
        """Run `warmpool operator run -A` (no-op if it runs); returns once its liveness endpoint answers."""
        if self.operator_running():
            return
        if not controlplane.operator_available():
            pytest.fail("`warmpool operator run` is not available in this installation")
        try:
            controlplane.start_operator(layout=self.layout, log=_say, extra_env=env)
        except ClusterError as exc:
            pytest.fail(str(exc))

    def stop_operator(self, grace_s: float = 10.0) -> None:
        procs.stop_pid_file(self.layout.pid("operator"), grace_s=grace_s)

    def restart_operator(self, env: dict[str, str] | None = None) -> None:
        self.stop_operator()
        self.start_operator(env)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[LocalCluster]:
    with running_control_plane(tmp_path_factory.mktemp("cluster"), _say, pytestconfig) as running:
        yield LocalCluster(running)


@pytest.fixture(scope="session")
def crds(cluster: LocalCluster) -> LocalCluster:
    cluster.install_crds()
    return cluster


@pytest.fixture
def operator(crds: LocalCluster) -> LocalCluster:
    """The operator is running when the test starts (started once, again only if a test stopped it)."""
    crds.start_operator()
    return crds


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

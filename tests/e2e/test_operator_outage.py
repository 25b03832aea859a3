"""The API server down for 60 s on the real control plane: the operator lives through it and converges after."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import EXAMPLE
from tests.e2e.test_operator_ha import LEASE, Replica, start_replica
from warmpool.dev import procs
from warmpool.dev.layout import Ports, apiserver_args

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

OUTAGE_SECONDS = 60.0


def healthz(replica: Replica) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{replica.health}/healthz", timeout=5) as response:
            assert json.loads(response.read())["alive"] is True
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def stop_apiserver(cluster: LocalCluster) -> None:
    assert procs.stop_pid_file(cluster.layout.pid("kube-apiserver"), grace_s=15.0)


def start_apiserver(cluster: LocalCluster) -> None:
    """Start kube-apiserver again on its port and etcd (the arguments the control plane started it with)."""
    ports = Ports(**yaml.safe_load(cluster.layout.ports_file.read_text()))
    procs.start_detached([str(cluster.binary), *apiserver_args(cluster.layout, ports)],
                         log=cluster.layout.log("kube-apiserver"), pid_file=cluster.layout.pid("kube-apiserver"))
    cluster.wait_for("the API server ready again",
                     lambda: cluster.kubectl("get", "--raw=/readyz", check=False, timeout_s=10).returncode == 0,
                     timeout_s=180)


@pytest.fixture
def solo(crds: LocalCluster, namespace: str) -> Iterator[Replica]:
    crds.stop_operator()  # the session's operator would act on the same pool
    replica = start_replica(crds, namespace, "solo")
    try:
        yield replica
    finally:
        procs.stop_pid_file(crds.layout.pid("operator-solo"), grace_s=10)


def test_the_operator_lives_through_a_60s_api_outage_and_converges_after(
    crds: LocalCluster, namespace: str, solo: Replica
) -> None:
    ns = f"--namespace={namespace}"
    crds.wait_for("the replica leading", solo.leading)
    crds.kubectl("apply", ns, f"--filename={EXAMPLE}")
    crds.wait_for("the pool's Deployment", lambda: crds.kubectl("get", "deployment", "classify", ns,
                                                                  check=False).returncode == 0)

    stop_apiserver(crds)
    try:
        ends = time.monotonic() + OUTAGE_SECONDS
        answers = []
        while time.monotonic() < ends:
            answers.append(healthz(solo))
            time.sleep(3)
    finally:
        start_apiserver(crds)
    # Liveness never depended on the API: the kubelet would not have restarted it.
    assert set(answers) == {200}, answers
    assert procs.recorded_alive(solo.record), "the operator process exited during the outage"

    # Converged after: it leads again and acts on a change made once the API is back (its watches
    # were broken and re-established; a resourceVersion from before the restart may be 410 Gone).
    crds.wait_for("the replica leading again", solo.leading, timeout_s=60)
    assert crds.kubectl_json("get", "lease", LEASE, ns)["spec"]["holderIdentity"] == "solo"
    crds.kubectl("patch", "warmpool", "classify", ns, "--type=merge", "--patch", '{"spec": {"replicas": 1}}')
    crds.wait_for("the Deployment scaled after the outage",
                  lambda: crds.kubectl_json("get", "deployment", "classify", ns)["spec"]["replicas"] == 1,
                  timeout_s=120)
    assert procs.recorded_alive(solo.record)
    assert "Traceback" not in solo.log.read_text(errors="replace")

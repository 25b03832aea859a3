"""Two operator replicas on the real control plane: one Lease, exactly one acting, a takeover after a kill."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import EXAMPLE
from warmpool.dev import procs
from warmpool.dev.controlplane import warmpool_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LEASE = "warmpool-operator-ha"
TAKEOVER_BOUND_SECONDS = 30.0
"""The stated requirement: a standby acts within 30 s of the leader's death."""


@dataclass
class Replica:
    name: str
    health: int
    log: Path
    record: procs.Recorded

    def state(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readyz", timeout=5) as response:
                found: dict[str, Any] = json.loads(response.read())
                return found
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def leading(self) -> bool:
        return bool((self.state() or {}).get("leading"))

    def writes(self) -> list[str]:
        """The child writes this replica logged ("create Deployment classify", ...)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if " create " in line or " patch " in line]


def start_replica(cluster: LocalCluster, namespace: str, name: str, *, kubeconfig: Path | None = None,
                  env: dict[str, str] | None = None, verbose: bool = False) -> Replica:
    """`warmpool operator run` for `namespace` as its own process (leader election on unless `env` says)."""
    health, metrics = procs.free_port(), procs.free_port()
    log = cluster.layout.log(f"operator-{name}")
    environment = {
        **os.environ, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
        "WARMPOOL_OPERATOR_LEADER_ELECTION": "true", "WARMPOOL_OPERATOR_LEASE_NAME": LEASE,
        "WARMPOOL_OPERATOR_LEASE_NAMESPACE": namespace, "WARMPOOL_OPERATOR_IDENTITY": name, **(env or {}),
    }
    argv = [*warmpool_command(), "operator", "run", f"--namespace={namespace}", "--log-format=plain",
            "--health-host=127.0.0.1", f"--health-port={health}",
            "--metrics-host=127.0.0.1", f"--metrics-port={metrics}", *(["--verbose"] if verbose else [])]
    record = procs.start_detached(argv, log=log, pid_file=cluster.layout.pid(f"operator-{name}"), env=environment)
    replica = Replica(name, health, log, record)
    cluster.wait_for(f"replica {name} live", replica.state, timeout_s=90)
    return replica


@pytest.fixture
def replicas(crds: LocalCluster, namespace: str) -> Iterator[tuple[Replica, Replica]]:
    crds.stop_operator()  # the session's cluster-wide operator would act on the same pools
    started: list[Replica] = []
    try:
        started.append(start_replica(crds, namespace, "a"))
        started.append(start_replica(crds, namespace, "b"))
        yield started[0], started[1]
    finally:
        for replica in started:
            procs.stop_pid_file(crds.layout.pid(f"operator-{replica.name}"), grace_s=10)


def test_one_replica_acts_and_the_other_takes_over_when_it_is_killed(
    crds: LocalCluster, namespace: str, replicas: tuple[Replica, Replica]
) -> None:
    ns = f"--namespace={namespace}"
    leader = crds.wait_for("one replica holding the Lease", lambda: [r for r in replicas if r.leading()])
    assert len(leader) == 1, "both replicas lead"
    (first,) = leader
    (standby,) = [r for r in replicas if r is not first]
    lease = crds.kubectl_json("get", "lease", LEASE, ns)
    assert lease["spec"]["holderIdentity"] == first.name
    state = standby.state()
    assert state is not None
    assert state["leading"] is False  # live and ready, not acting

    crds.kubectl("apply", ns, f"--filename={EXAMPLE}")
    crds.wait_for("the pool's Deployment", lambda: crds.kubectl("get", "deployment", "classify", ns,
                                                                  check=False).returncode == 0)
    crds.wait_for("the leader's status on the pool", lambda: (crds.kubectl_json("get", "warmpool", "classify", ns)
                                                               .get("status") or {}).get("conditions"))
    assert [w for w in first.writes() if "create Deployment classify" in w]
    assert standby.writes() == []

    os.kill(first.record.pid, signal.SIGKILL)
    killed = time.monotonic()
    crds.wait_for("the standby holding the Lease", standby.leading, timeout_s=TAKEOVER_BOUND_SECONDS + 30)
    took = time.monotonic() - killed
    assert took <= TAKEOVER_BOUND_SECONDS + 5, f"the standby took over after {took:.1f}s"
    assert crds.kubectl_json("get", "lease", LEASE, ns)["spec"]["holderIdentity"] == standby.name

    # The new leader acts on changes, and re-creates nothing the first one made.
    crds.kubectl("patch", "warmpool", "classify", ns, "--type=merge", "--patch", '{"spec": {"replicas": 1}}')
    crds.wait_for("the new leader scaling the Deployment",
                  lambda: crds.kubectl_json("get", "deployment", "classify", ns)["spec"]["replicas"] == 1)
    assert not [w for w in standby.writes() if " create " in w]

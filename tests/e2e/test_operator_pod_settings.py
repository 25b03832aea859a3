"""Runtime pod settings and cluster defaults on the real cluster: what reaches the Deployment and the
running process, the PodDisruptionBudget's life, what the API refuses, and what `kubectl get` shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import container_pid, example_documents, get_pool, ready_pods, wait_pool_ready
from warmpool_operator.render import ANNOTATION_BUDGET, selector_labels

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "classify"
SECRET_VALUE = "s3cret-value"


def pool_manifest(**runtime: Any) -> dict[str, Any]:
    _, pool = example_documents()
    pool["spec"]["replicas"] = 1
    pool["spec"]["runtime"] = {**pool["spec"]["runtime"], **runtime}
    return pool


def apply_example(cluster: LocalCluster, namespace: str, pool: dict[str, Any]) -> None:
    config_map, _ = example_documents()
    for doc in (config_map, pool):
        cluster.kubectl("apply", f"--namespace={namespace}", "--filename=-", stdin=json.dumps(doc))


def process_env(pod: dict[str, Any]) -> dict[str, str]:
    """The environment of the runtime process the node agent started for the pod."""
    (status,) = pod["status"]["containerStatuses"]
    pid = container_pid(status)
    assert pid is not None, status
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


def get_budget(cluster: LocalCluster, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "poddisruptionbudget", POOL, f"--namespace={namespace}", "--output=json",
                             check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_pod_settings_reach_the_pods_and_the_budget_follows_the_spec(operator: LocalCluster, namespace: str) -> None:
    ns = f"--namespace={namespace}"
    operator.kubectl("create", "secret", "generic", "runtime-env", ns, f"--from-literal=token={SECRET_VALUE}")
    operator.kubectl("create", "serviceaccount", "runner", ns)
    spread = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
    env = [
        {"name": "MODE", "value": "fast"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "runtime-env", "key": "token"}}},
    ]
    apply_example(operator, namespace, pool_manifest(
        serviceAccountName="runner",
        imagePullSecrets=[{"name": "registry"}],
        env=env,
        topologySpreadConstraints=[spread],
        podDisruptionBudget={"maxUnavailable": 1},
    ))
    pool = wait_pool_ready(operator, namespace, POOL, replicas=1)

    deployment = operator.kubectl_json("get", "deployment", POOL, ns)
    template = deployment["spec"]["template"]["spec"]
    assert template["serviceAccountName"] == "runner"
    assert template["automountServiceAccountToken"] is False
    assert template["imagePullSecrets"] == [{"name": "registry"}]
    assert template["containers"][0]["env"] == env
    assert template["topologySpreadConstraints"] == [
        {**spread, "labelSelector": {"matchLabels": selector_labels(POOL)}}]
    (pod,) = ready_pods(operator, namespace, POOL)
    assert pod["spec"]["serviceAccountName"] == "runner"
    seen = process_env(pod)
    assert (seen.get("MODE"), seen.get("TOKEN")) == ("fast", SECRET_VALUE)

    budget = operator.wait_for("the disruption controller counting the pool's pod",
                               lambda: (b := get_budget(operator, namespace)) and
                               (b.get("status") or {}).get("expectedPods") == 1 and b)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == {"matchLabels": selector_labels(POOL)}
    (owner,) = budget["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("WarmPool", pool["metadata"]["uid"], True)

    # `kubectl get` shows the effective warm count and why the pool is (not) Ready.
    table = operator.kubectl("get", "warmpool", POOL, ns).stdout
    header, row = table.splitlines()[:2]
    assert "REASON" in header.split(), table
    assert "PoolWarm" in row.split(), table

    operator.kubectl("patch", "warmpool", POOL, ns, "--type=json",
                     '--patch=[{"op": "remove", "path": "/spec/runtime/podDisruptionBudget"}]')
    operator.wait_for("the PodDisruptionBudget deleted", lambda: get_budget(operator, namespace) is None)
    operator.wait_for("the Deployment no longer marking a budget", lambda: ANNOTATION_BUDGET not in (
        operator.kubectl_json("get", "deployment", POOL, ns)["metadata"].get("annotations") or {}))
    wait_pool_ready(operator, namespace, POOL, generation=2, replicas=1)


@pytest.mark.parametrize(("runtime", "said"), [
    ({"env": [{"name": "LD_PRELOAD", "value": "/x.so"}]}, "reserved by the runtime"),
    ({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, "exactly one of minAvailable"),
    ({"podDisruptionBudget": {"minAvailable": "150%"}}, "a percentage like 50%"),
    ({"imagePullSecrets": [{"name": "a"}, {"name": "a"}]}, "may not list a Secret twice"),
])
def test_the_api_refuses_bad_pod_settings_with_the_message(
    operator: LocalCluster, namespace: str, runtime: dict[str, Any], said: str
) -> None:
    result = operator.kubectl("apply", f"--namespace={namespace}", "--dry-run=server", "--filename=-",
                              stdin=json.dumps(pool_manifest(**runtime)), check=False)
    assert result.returncode != 0
    assert said in result.stderr, result.stderr


def test_scale_to_zero_is_refused_with_the_reason(operator: LocalCluster, namespace: str) -> None:
    pool = pool_manifest()
    pool["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 0, "maxReplicas": 3}
    result = operator.kubectl("apply", f"--namespace={namespace}", "--dry-run=server", "--filename=-",
                              stdin=json.dumps(pool), check=False)
    assert result.returncode != 0
    assert "scale to zero is not supported" in result.stderr, result.stderr
    assert "activator" in result.stderr


def test_cluster_defaults_fill_what_the_pool_leaves_out(operator: LocalCluster, namespace: str) -> None:
    defaults = "defaults: {warmInstancesPerTuple: 3, maxTotalWarm: 12, runtime: {env: [{name: SITE, value: lab}]}}"
    operator.restart_operator({"WARMPOOL_OPERATOR_DEFAULTS": defaults})
    try:
        pool = pool_manifest()
        for field in ("warmInstancesPerTuple", "maxTotalWarm"):
            del pool["spec"][field]
        apply_example(operator, namespace, pool)
        stored = wait_pool_ready(operator, namespace, POOL, replicas=1)
        # Nothing filled in server-side: the manifest as written, the effective values in status.
        assert "warmInstancesPerTuple" not in stored["spec"]
        assert "maxTotalWarm" not in stored["spec"]
        assert (stored["status"]["warmInstancesPerTuple"], stored["status"]["maxTotalWarm"]) == (3, 12)
        assert stored["status"]["warmInstances"] == 3
        (pod,) = ready_pods(operator, namespace, POOL)
        assert process_env(pod).get("SITE") == "lab"
        table = operator.kubectl("get", "warmpool", POOL, f"--namespace={namespace}").stdout
        header, row = (line.split() for line in table.splitlines()[:2])
        assert row[header.index("WARM/POD")] == "3", table
        # The pool's own value wins over the cluster default.
        operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                         '--patch={"spec": {"warmInstancesPerTuple": 2}}')
        wait_pool_ready(operator, namespace, POOL, generation=2, replicas=1)
        assert get_pool(operator, namespace, POOL)["status"]["warmInstancesPerTuple"] == 2
    finally:
        operator.restart_operator()

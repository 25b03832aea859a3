"""examples/classify.yaml on the real cluster: warm pods serving by pod IP, status, printer columns, scale."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import (
    EXAMPLE,
    RUNTIME_PORT,
    conditions,
    draws,
    example_module,
    expected_score,
    get_text,
    invoke,
    ready_pods,
    wait_pool_ready,
)
from warmpool_operator.render import LABEL_MODULE, LABEL_TENANT, selector_string

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "classify"


def apply_example(cluster: LocalCluster, namespace: str) -> None:
    applied = cluster.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}").stdout
    assert "configmap/classify-module created" in applied
    assert "warmpool.tensorwasm.dev/classify created" in applied


def printed_columns(output: str) -> list[dict[str, str]]:
    """`kubectl get` table output as one dict per row, split at the header's column starts."""
    header, *rows = output.splitlines()
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)*", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [{name: row[a:b].strip() for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
            for row in rows]


def test_the_example_pool_serves_invocations_from_warm_pods_at_their_pod_ips(
    operator: LocalCluster, namespace: str
) -> None:
    _, sha = example_module()
    apply_example(operator, namespace)
    pool = wait_pool_ready(operator, namespace, POOL, replicas=2)

    pods = ready_pods(operator, namespace, POOL)
    ips = {pod["status"]["podIP"] for pod in pods}
    assert len(ips) == 2
    assert all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert (labels[LABEL_TENANT], labels[LABEL_MODULE], labels["team"]) == ("acme", sha[:12], "payments")
        ip = pod["status"]["podIP"]
        status, body = get_text(f"http://{ip}:{RUNTIME_PORT}/readyz")
        (tuple_state,) = json.loads(body)["tuples"]
        assert (status, tuple_state["ready"], tuple_state["warm"]) == (200, True, 4)

        before = draws(ip, sha)
        assert (before.misses, before.warm) == (0, 4)
        status, answer = invoke(ip, sha, "score", [2.0, 0.5])
        assert status == 200, answer
        (score,) = answer["results"]
        assert score == pytest.approx(expected_score(2.0, 0.5), abs=1e-6)
        after = draws(ip, sha)
        assert (after.hits, after.misses) == (before.hits + 1, 0)  # drawn from the warm pool
        assert invoke(ip, sha, "add", [40, 2]) == (200, {"results": [42]})

    assert pool["status"]["observedGeneration"] == pool["metadata"]["generation"] == 1
    found = conditions(pool)
    assert {kind: (c["status"], c["reason"]) for kind, c in found.items()} == {
        "Ready": ("True", "PoolWarm"), "Reconciling": ("False", "RolledOut"), "Stalled": ("False", "NoProblem"),
    }
    assert all(c["observedGeneration"] == 1 and c["message"] and c["lastTransitionTime"] for c in found.values())
    status = pool["status"]
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (2, 2, 2)
    assert (status["warmInstances"], status["module"], status["readiness"]) == (8, sha[:12], "2/2")
    assert status["selector"] == selector_string(POOL)

    (row,) = printed_columns(operator.kubectl("get", "wp", f"--namespace={namespace}").stdout)
    assert list(row) == ["NAME", "TENANT", "MODULE", "WARM/POD", "READY", "REASON", "MISS RATIO", "AGE"]
    assert {k: v for k, v in row.items() if k != "AGE"} == {
        "NAME": "classify", "TENANT": "acme", "MODULE": sha[:12], "WARM/POD": "4", "READY": "2/2",
        "REASON": "PoolWarm",
        "MISS RATIO": "",  # the autoscaler measures it; this pool's autoscaling is off
    }
    assert re.fullmatch(r"\d+[sm]", row["AGE"])
    events = operator.kubectl_json("get", "events", f"--namespace={namespace}",
                                   f"--field-selector=involvedObject.name={POOL},involvedObject.kind=WarmPool")
    assert "PoolWarm" in {event["reason"] for event in events["items"]}


def test_kubectl_scale_drives_the_pool_through_the_scale_subresource(operator: LocalCluster, namespace: str) -> None:
    apply_example(operator, namespace)
    wait_pool_ready(operator, namespace, POOL, replicas=2)

    scaled = operator.kubectl("scale", f"--namespace={namespace}", f"wp/{POOL}", "--replicas=3").stdout
    assert "warmpool.tensorwasm.dev/classify scaled" in scaled
    pool = wait_pool_ready(operator, namespace, POOL, generation=2, replicas=3)
    assert pool["spec"]["replicas"] == 3
    assert (pool["status"]["replicas"], pool["status"]["readiness"], pool["status"]["warmInstances"]) == (3, "3/3", 12)
    deployment = operator.kubectl_json("get", "deployment", f"--namespace={namespace}", POOL)
    assert deployment["spec"]["replicas"] == 3

    path = f"/apis/tensorwasm.dev/v1alpha1/namespaces/{namespace}/warmpools/{POOL}/scale"
    scale = json.loads(operator.kubectl("get", "--raw", path).stdout)
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 3, "selector": selector_string(POOL)}
    # The selector the scale subresource publishes finds exactly the pool's Ready pods.
    selector = f"--selector={scale['status']['selector']}"
    selected = operator.kubectl_json("get", "pods", f"--namespace={namespace}", selector)
    assert sorted(p["metadata"]["name"] for p in selected["items"]) == sorted(
        p["metadata"]["name"] for p in ready_pods(operator, namespace, POOL))

"""A shared RuntimeFleet on the real control plane: members from two namespaces, one refused by the
fleet's namespace policy; tuples added and removed live with no fleet pod restarted; the fleet
deleted under its members. Runtime pods are real processes run by the node agent on loopback; the
module is served over HTTP on 127.0.0.1 by the test."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import RUNTIME_PORT, conditions, example_module, expected_score
from warmpool.demo.loopback import module_server
from warmpool_operator.health import pod_is_ready
from warmpool_operator.runtimefleet.render import selector_string

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FLEET = "shared"
PATIENCE_S = 240.0


@pytest.fixture
def module_url() -> Iterator[str]:
    """The example module served over plain HTTP on loopback."""
    wasm, _ = example_module()
    with module_server({"classify.wasm": wasm}) as base:
        yield f"{base}/classify.wasm"


@pytest.fixture
def team_namespaces(cluster: LocalCluster) -> Iterator[tuple[str, str]]:
    """Two namespaces, labelled team=a and team=b."""
    names = (f"e2e-a-{secrets.token_hex(3)}", f"e2e-b-{secrets.token_hex(3)}")
    for name, team in zip(names, ("a", "b"), strict=True):
        cluster.kubectl("create", "namespace", name)
        cluster.kubectl("label", "namespace", name, f"team={team}")
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pool(name: str, namespace: str, tenant: str, url: str, fleet_ns: str, **extra: Any) -> dict[str, Any]:
    _, sha = example_module()
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1",
        "kind": "WarmPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tenant": tenant, "module": {"sha256": sha, "source": {"url": url}}, "warmInstancesPerTuple": 2,
                 "limits": {"memoryBytes": 16777216, "timeoutMs": 500},
                 "fleetRef": {"name": FLEET, "namespace": fleet_ns}, **extra},
    }


def get(local: LocalCluster, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    result = local.kubectl("get", kind, name, f"--namespace={namespace}", "--output=json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def condition_is(local: LocalCluster, namespace: str, name: str, kind: str, status: str) -> dict[str, Any] | None:
    body = get(local, "warmpool", namespace, name)
    cond = conditions(body or {}).get(kind) or {}
    return cond if cond.get("status") == status else None


def fleet_pods(local: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    found = local.kubectl_json("get", "pods", f"--namespace={namespace}", f"--selector={selector_string(FLEET)}")
    return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]


def call(ip: str, tenant: str, token: str | None = None) -> tuple[int, Any]:
    _, sha = example_module()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://{ip}:{RUNTIME_PORT}/v1/{tenant}/{sha}/score",
                                     data=json.dumps({"args": [2.0, 0.5]}).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def identities(pods: list[dict[str, Any]]) -> dict[str, int]:
    """Pod UID -> restarts of its runtime container."""
    return {p["metadata"]["uid"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or [])
            for p in pods}


def test_a_fleet_hosts_pools_of_two_namespaces_live(
    operator: LocalCluster, namespace: str, team_namespaces: tuple[str, str], module_url: str
) -> None:
    fleet_ns = namespace
    ns_a, ns_b = team_namespaces
    operator.kubectl("label", "namespace", fleet_ns, "team=a")
    operator.apply({
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
        "metadata": {"name": FLEET, "namespace": fleet_ns},
        "spec": {"replicas": {"min": 2, "max": 4}, "maxTotalWarm": 32,
                 "runtime": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
                 "allowedPools": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}}},
    })
    operator.apply(pool("local", fleet_ns, "gamma", module_url, fleet_ns))
    operator.apply(pool("alpha", ns_a, "acme", module_url, fleet_ns))
    operator.apply(pool("beta", ns_b, "beta", module_url, fleet_ns))

    # The namespace the policy refuses: Stalled, naming the policy and the namespace.
    refused = operator.wait_for("the pool of team b Stalled",
                                lambda: condition_is(operator, ns_b, "beta", "Stalled", "True"), timeout_s=PATIENCE_S)
    assert refused["reason"] == "NotAdmitted"
    assert refused["message"] == (f"RuntimeFleet {fleet_ns}/{FLEET} admits WarmPools from namespaces matching "
                                  f"{{team: a}}; namespace {ns_b} does not match")

    def fleet_ready() -> dict[str, Any] | None:
        fleet = get(operator, "runtimefleet", fleet_ns, FLEET) or {}
        ready = conditions(fleet).get("Ready") or {}
        return fleet if ready.get("status") == "True" and fleet["status"].get("readyReplicas") == 2 else None

    operator.wait_for("the fleet's two pods Ready", fleet_ready, timeout_s=PATIENCE_S)
    everywhere = f"warm on 2/2 Ready pods of RuntimeFleet {fleet_ns}/{FLEET}"
    for ns, name in ((fleet_ns, "local"), (ns_a, "alpha")):
        # Ready as soon as warm on the Ready pods: on both, once both are Ready.
        operator.wait_for(f"WarmPool {ns}/{name} warm on both fleet pods",
                          lambda ns=ns, name=name: (condition_is(operator, ns, name, "Ready", "True") or {}).get(
                              "message") == everywhere, timeout_s=PATIENCE_S)
    fleet = get(operator, "runtimefleet", fleet_ns, FLEET)
    assert fleet is not None
    assert (fleet["status"]["tuples"], fleet["status"]["refused"]) == (2, 1)
    assert get(operator, "deployment", ns_a, "alpha") is None  # a member has no Deployment of its own

    pods = [p for p in fleet_pods(operator, fleet_ns) if pod_is_ready(p)]
    assert len(pods) == 2
    before = identities(pods)
    for pod in pods:
        ip = pod["status"]["podIP"]
        for tenant in ("gamma", "acme"):
            status, body = call(ip, tenant)
            assert status == 200, body
            assert body["results"][0] == pytest.approx(expected_score(2.0, 0.5), rel=1e-6)
        assert call(ip, "beta")[0] == 404  # the refused pool's tuple is not there

    # Live add of a member with bearer tokens: no pod restarted, the token required.
    token = secrets.token_urlsafe(24)
    operator.kubectl("create", "secret", "generic", "callers", f"--namespace={ns_a}", f"--from-literal=ci={token}")
    operator.apply(pool("delta", ns_a, "delta", module_url, fleet_ns, auth={"secretRef": {"name": "callers"}}))
    operator.wait_for("the new member Ready", lambda: condition_is(operator, ns_a, "delta", "Ready", "True"),
                      timeout_s=PATIENCE_S)
    digests = get(operator, "secret", fleet_ns, f"{FLEET}-tokens")
    assert digests is not None
    assert token not in base64.b64decode(digests["data"]["delta"]).decode()
    pods = [p for p in fleet_pods(operator, fleet_ns) if pod_is_ready(p)]
    assert identities(pods) == before
    assert set(before.values()) == {0}
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert call(ip, "delta", token)[0] == 200
        assert call(ip, "delta")[0] == 401
        assert call(ip, "delta", "wrong")[0] == 401

    # Rotation: the Secret's value replaced; the new token is accepted and the old one refused on every
    # pod (the operator watches the Secret; the pods re-read the mounted digests), no pod restarted.
    rotated = secrets.token_urlsafe(24)
    operator.kubectl("patch", "secret", "callers", f"--namespace={ns_a}", "--type=merge",
                     f"--patch={json.dumps({'stringData': {'ci': rotated}})}")

    def rotation_applied() -> bool:
        return all(call(p["status"]["podIP"], "delta", rotated)[0] == 200
                   and call(p["status"]["podIP"], "delta", token)[0] == 401 for p in pods)

    operator.wait_for("the rotated token accepted and the old one refused", rotation_applied, timeout_s=PATIENCE_S)
    assert identities([p for p in fleet_pods(operator, fleet_ns) if pod_is_ready(p)]) == before
    token = rotated

    # Removal: the tuple goes from every pod, the pods stay.
    operator.kubectl("delete", "warmpool", "delta", f"--namespace={ns_a}")

    def gone() -> bool:
        return all(call(p["status"]["podIP"], "delta", token)[0] == 404 for p in pods)

    operator.wait_for("the removed member's tuple gone from the fleet's pods", gone, timeout_s=PATIENCE_S)
    assert identities([p for p in fleet_pods(operator, fleet_ns) if pod_is_ready(p)]) == before
    assert call(pods[0]["status"]["podIP"], "acme")[0] == 200

    # The fleet deleted under its members: each Stalled naming it, the fleet's children collected.
    operator.kubectl("delete", "runtimefleet", FLEET, f"--namespace={fleet_ns}")
    for ns, name in ((fleet_ns, "local"), (ns_a, "alpha")):
        stalled = operator.wait_for(f"{ns}/{name} Stalled without its fleet",
                                    lambda ns=ns, name=name: condition_is(operator, ns, name, "Stalled", "True"),
                                    timeout_s=PATIENCE_S)
        assert stalled["message"] == f"RuntimeFleet {fleet_ns}/{FLEET} (spec.fleetRef) does not exist"
    operator.wait_for("the fleet's Deployment collected",
                      lambda: get(operator, "deployment", fleet_ns, f"{FLEET}-runtime") is None, timeout_s=PATIENCE_S)


def config_tuples(local: LocalCluster, namespace: str) -> dict[str, int]:
    config_map = get(local, "configmap", namespace, f"{FLEET}-runtime-config")
    assert config_map is not None
    doc = yaml.safe_load(config_map["data"]["config.yaml"])
    return {t["tenant"]: t["warmInstancesPerTuple"] for t in doc["tuples"]}


def test_an_autoscaled_fleet_sets_warm_counts_from_its_pods_metrics(
    operator: LocalCluster, namespace: str, module_url: str
) -> None:
    operator.apply({
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
        "metadata": {"name": FLEET, "namespace": namespace},
        "spec": {"replicas": {"min": 1, "max": 3}, "maxTotalWarm": 32,
                 "autoscaling": {"enabled": True, "tickSeconds": 1}},
    })
    operator.apply(pool("local", namespace, "gamma", module_url, namespace, warmInstancesPerTuple=6))
    operator.wait_for("the member Ready", lambda: condition_is(operator, namespace, "local", "Ready", "True"),
                      timeout_s=PATIENCE_S)
    (pod,) = [p for p in fleet_pods(operator, namespace) if pod_is_ready(p)]
    before = identities([pod])
    # Idle, the decision keeps the tuple at the floor, not at the member's own six.
    operator.wait_for("the autoscaler's warm count in the fleet's config",
                      lambda: config_tuples(operator, namespace) == {"gamma": 1}, timeout_s=PATIENCE_S)
    for _ in range(20):
        assert call(pod["status"]["podIP"], "gamma")[0] == 200

    def measured() -> dict[str, Any] | None:
        # Traffic continues while waiting: calls made before the autoscaler's first (baseline) scrape
        # are not a rate it can measure.
        assert call(pod["status"]["podIP"], "gamma")[0] == 200
        status: dict[str, Any] = (get(operator, "runtimefleet", namespace, FLEET) or {}).get("status") or {}
        return status if status.get("missRatio") is not None else None

    status = operator.wait_for("a miss ratio measured from the pod's metrics", measured, timeout_s=PATIENCE_S)
    assert 0.0 <= float(status["missRatio"]) <= 1.0
    deployment = get(operator, "deployment", namespace, f"{FLEET}-runtime")
    assert deployment is not None
    assert 1 <= deployment["spec"]["replicas"] <= 3
    assert identities([p for p in fleet_pods(operator, namespace) if p["metadata"]["uid"] in before]) == before


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"allowedPools": {"namespaces": {"from": "Selector"}}},
         "allowedPools.namespaces.selector is required with from: Selector and allowed only with it"),
        ({"replicas": {"min": 5, "max": 2}}, "replicas.min must be <= replicas.max"),
        ({"memoryBudget": "lots"}, "memoryBudget must be a positive quantity such as 512Mi or 2Gi"),
    ],
)
def test_the_api_server_refuses_an_invalid_fleet_saying_why(
    crds: LocalCluster, namespace: str, spec: dict[str, Any], message: str
) -> None:
    result = crds.kubectl("apply", f"--namespace={namespace}", "--filename=-", check=False, stdin=json.dumps({
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet", "metadata": {"name": FLEET}, "spec": spec}))
    assert result.returncode != 0
    assert message in result.stderr

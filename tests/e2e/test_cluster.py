"""The local control plane itself: pinned version, a Ready node, runtime pods run as real processes."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest
import wasmtime

from tests.e2e.conftest import LocalCluster
from warmpool.dev import procs
from warmpool.dev.controlplane import warmpool_command
from warmpool.dev.layout import NODE_NAME

pytestmark = pytest.mark.e2e

ADD_WAT = '(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'


def _get_json(url: str, context: ssl.SSLContext | None = None) -> Any:
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        return json.loads(response.read())


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _alive(pid: int) -> bool:
    return procs.alive(pid)


def _pid(pod: dict[str, Any]) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    scheme, _, pid = container_id.partition("://")
    assert scheme == "warmpool-local"
    return int(pid)


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"].get("conditions") or ()}


def test_the_api_server_and_kubectl_report_the_pinned_version(cluster: LocalCluster) -> None:
    context = ssl.create_default_context(cafile=str(cluster.layout.pki / "ca.crt"))
    server = _get_json(f"{cluster.server}/version", context)
    assert server["gitVersion"] == cluster.kube_version
    assert (server["major"], server["minor"]) == tuple(cluster.kube_version.lstrip("v").split(".")[:2])
    client = cluster.kubectl_json("version")
    assert client["clientVersion"]["gitVersion"] == cluster.kube_version
    assert client["serverVersion"]["gitVersion"] == cluster.kube_version


def test_the_node_is_ready_untainted_and_renews_its_lease(cluster: LocalCluster) -> None:
    node = cluster.kubectl_json("get", "node", NODE_NAME)
    assert _conditions(node)["Ready"] == "True"
    assert not node["spec"].get("taints")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == cluster.kube_version
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}

    def lease_renewal() -> str:
        lease = cluster.kubectl_json("get", "lease", "--namespace=kube-node-lease", NODE_NAME)
        assert lease["spec"]["holderIdentity"] == NODE_NAME
        return str(lease["spec"]["renewTime"])

    first = lease_renewal()
    cluster.wait_for("the node lease to be renewed", lambda: lease_renewal() != first, timeout_s=60)


def _runtime_manifests(namespace: str, wasm: bytes, sha: str, *, name: str = "add", replicas: int = 2,
                       liveness_path: str | None = None) -> list[dict[str, Any]]:
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-modules", "namespace": namespace},
        "binaryData": {"add.wasm": base64.b64encode(wasm).decode()},
    }
    container = {
        "name": "runtime",
        "image": "warmpool:dev",
        "command": ["warmpool", "runtime", "serve"],
        "args": ["--tenant", "t", "--module", "/modules/add.wasm", "--sha256", sha, "--warm", "2",
                 "--port", "8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
        "volumeMounts": [{"name": "modules", "mountPath": "/modules", "readOnly": True}],
    }
    if liveness_path is not None:
        container["livenessProbe"] = {"httpGet": {"path": liveness_path, "port": 8080}, "periodSeconds": 1,
                                      "failureThreshold": 2}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container],
                    "volumes": [{"name": "modules", "configMap": {"name": f"{name}-modules"}}],
                },
            },
        },
    }
    return [config_map, deployment]


def test_a_runtime_deployment_becomes_ready_serves_at_its_pod_ips_and_is_garbage_collected(
    cluster: LocalCluster, namespace: str
) -> None:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    sha = hashlib.sha256(wasm).hexdigest()
    for manifest in _runtime_manifests(namespace, wasm, sha):
        cluster.apply(manifest)
    cluster.kubectl("wait", f"--namespace={namespace}", "--for=condition=Available", "deployment/add",
                    "--timeout=180s")

    pods = cluster.kubectl_json("get", "pods", f"--namespace={namespace}", "--selector=app=add")["items"]
    assert len(pods) == 2
    ips = {pod["status"]["podIP"] for pod in pods}
    assert len(ips) == 2
    assert all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    pids = []
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert _conditions(pod) | {"Ready": "True", "ContainersReady": "True", "PodScheduled": "True",
                                   "Initialized": "True"} == _conditions(pod)
        status = pod["status"]["containerStatuses"][0]
        assert (status["ready"], status["restartCount"], "running" in status["state"]) == (True, 0, True)
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet"
        assert _post_json(f"http://{pod['status']['podIP']}:8080/v1/t/{sha}/add", {"args": [40, 2]}) == (
            200, {"results": [42]})
        readyz = _get_json(f"http://{pod['status']['podIP']}:8080/readyz")
        assert readyz["ready"] is True
        pids.append(_pid(pod))
    assert all(_alive(pid) for pid in pids)

    cluster.kubectl("delete", f"--namespace={namespace}", "deployment/add")

    def all_gone() -> bool:
        left = cluster.kubectl_json("get", "pods,replicasets", f"--namespace={namespace}", "--selector=app=add")
        return not left["items"] and not any(_alive(pid) for pid in pids)

    cluster.wait_for("the Deployment's ReplicaSet, pods and processes to be gone", all_gone, timeout_s=120)
    for ip in ips:
        with pytest.raises(urllib.error.URLError):
            _get_json(f"http://{ip}:8080/healthz")


def _pod(namespace: str, name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", **container}], **spec},
    }


def test_pods_the_node_cannot_run_are_refused_with_a_clear_reason(cluster: LocalCluster, namespace: str) -> None:
    cluster.apply(_pod(namespace, "not-warmpool", {"image": "busybox", "command": ["sleep", "3600"]}))
    cluster.apply(_pod(namespace, "csi", {"image": "warmpool:dev", "command": ["warmpool", "runtime", "serve"]},
                       restartPolicy="Never", volumes=[{"name": "data", "csi": {"driver": "inline.example.dev"}}]))

    def waiting(name: str) -> dict[str, Any] | None:
        pod = cluster.kubectl_json("get", "pod", f"--namespace={namespace}", name)
        statuses = pod["status"].get("containerStatuses") or [{}]
        state = statuses[0].get("state", {}).get("waiting")
        return {"phase": pod["status"].get("phase"), **state} if state and state.get("message") else None

    refused = cluster.wait_for("the busybox pod to be refused", lambda: waiting("not-warmpool"))
    assert refused["phase"] == "Pending"
    assert refused["reason"] == "CreateContainerError"
    assert "'sleep' is not `warmpool`" in refused["message"]
    failed = cluster.wait_for("the pod with a CSI volume to be refused",
                              lambda: (w := waiting("csi")) and w["phase"] == "Failed" and w)
    assert failed["reason"] == "CreateContainerConfigError"
    assert "volume type csi is not supported" in failed["message"]


def test_exit_codes_and_restarts_follow_the_restart_policy(cluster: LocalCluster, namespace: str) -> None:
    args = ["runtime", "serve", "--tenant", "t"]  # no module: the runtime refuses to start
    expected = subprocess.run([*warmpool_command(), *args], capture_output=True, check=False).returncode
    assert expected != 0
    container = {"image": "warmpool:dev", "command": ["warmpool"], "args": args}
    cluster.apply(_pod(namespace, "always", container, restartPolicy="Always"))
    cluster.apply(_pod(namespace, "never", container, restartPolicy="Never"))

    def status(name: str) -> dict[str, Any]:
        pod = cluster.kubectl_json("get", "pod", f"--namespace={namespace}", name)
        return dict(pod["status"])

    restarted = cluster.wait_for(
        "the failing container to be restarted",
        lambda: (s := status("always")) and (s.get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1 and s,
    )
    container_status = restarted["containerStatuses"][0]
    assert restarted["phase"] == "Running"
    assert container_status["lastState"]["terminated"]["exitCode"] == expected
    # Between crashes it is either backing off (not ready) or briefly running again; with no
    # readiness probe a running container counts as ready, as the kubelet has it.
    assert container_status["ready"] is ("running" in container_status["state"])

    failed = cluster.wait_for("the Never pod to fail", lambda: (s := status("never"))["phase"] == "Failed" and s)
    terminated = failed["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (expected, "Error")
    assert failed["containerStatuses"][0]["restartCount"] == 0


def test_pods_keep_running_and_new_pods_start_across_an_api_server_restart(
    cluster: LocalCluster, namespace: str
) -> None:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    sha = hashlib.sha256(wasm).hexdigest()
    for manifest in _runtime_manifests(namespace, wasm, sha, name="before", replicas=1):
        cluster.apply(manifest)
    cluster.kubectl("wait", f"--namespace={namespace}", "--for=condition=Available", "deployment/before",
                    "--timeout=180s")
    (before,) = cluster.kubectl_json("get", "pods", f"--namespace={namespace}", "--selector=app=before")["items"]

    cluster.restart_apiserver()

    # Only a node agent whose watch came back notices the new pods.
    for manifest in _runtime_manifests(namespace, wasm, sha, name="after", replicas=1):
        cluster.apply(manifest)
    cluster.kubectl("wait", f"--namespace={namespace}", "--for=condition=Available", "deployment/after",
                    "--timeout=180s")
    (after,) = cluster.kubectl_json("get", "pods", f"--namespace={namespace}", "--selector=app=after")["items"]
    assert _post_json(f"http://{after['status']['podIP']}:8080/v1/t/{sha}/add", {"args": [1, 2]}) == (
        200, {"results": [3]})
    (still,) = cluster.kubectl_json("get", "pods", f"--namespace={namespace}", "--selector=app=before")["items"]
    assert still["metadata"]["uid"] == before["metadata"]["uid"]
    assert _pid(still) == _pid(before)
    assert _alive(_pid(still))
    assert _conditions(still)["Ready"] == "True"
    assert _conditions(cluster.kubectl_json("get", "node", NODE_NAME))["Ready"] == "True"


def test_a_failing_liveness_probe_restarts_the_container(cluster: LocalCluster, namespace: str) -> None:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    sha = hashlib.sha256(wasm).hexdigest()
    for manifest in _runtime_manifests(namespace, wasm, sha, name="unlive", replicas=1,
                                       liveness_path="/no-such-endpoint"):
        cluster.apply(manifest)

    def restarted() -> dict[str, Any] | None:
        pods = cluster.kubectl_json("get", "pods", f"--namespace={namespace}", "--selector=app=unlive")["items"]
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = cluster.wait_for("the container failing its liveness probe to be restarted", restarted)
    assert "terminated" in status["lastState"]

"""`helm install`, `upgrade`, `uninstall` on the real local control plane; the installed identity readies a WarmPool."""

# The node agent runs pods as local processes and cannot hand the operator pod a service-account
# token, so the test scales the chart's Deployment to zero and runs the very command, arguments and
# environment the chart put in it (read back from the API server) as a local process, logged in with
# a token of the chart's ServiceAccount: every API call the operator makes is checked against the
# RBAC the chart installed.

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.local_cluster import running_control_plane, wait_for
from tests.packaging.gitops_checks import argo_health, kstatus
from tests.packaging.helm import CHART, Helm

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NAMESPACE = "wp", "warmpool-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}-warmpool-operator"


class Kube:
    """kubectl of the local cluster, as the admin (or as `as_user`)."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.binary), "kubectl", f"--kubeconfig={self.kubeconfig}", *args],
                                input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.run(*args, "--output=json", stdin=stdin).stdout)

    def can(self, verb: str, resource: str) -> bool:
        answer = self.run("auth", "can-i", verb, resource, f"--as={SERVICE_ACCOUNT}", "--all-namespaces",
                          check=False).stdout.strip()
        return answer == "yes"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A fresh local control plane with its node agent and no CRDs (the chart brings them)."""
    def say(line: str) -> None:
        print(f"[helm e2e] {line}", file=sys.stderr, flush=True)

    with running_control_plane(tmp_path_factory.mktemp("helm-cluster"), say) as running:
        yield Kube(running.binary, running.kubeconfig)


@pytest.fixture(scope="module")
def installed(cluster: Kube, helm: Helm) -> dict[str, Any]:
    """The chart installed with `helm install`; returns the operator Deployment as the API server stored it."""
    result = helm.run_with_kubeconfig(
        cluster.kubeconfig, "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
    )
    assert "STATUS: deployed" in result.stdout
    for crd in ("warmpools.tensorwasm.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cluster.run("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    deployment: dict[str, Any] = cluster.json("-n", RELEASE_NAMESPACE, "get", "deployment",
                                              f"{RELEASE}-warmpool-operator")
    return deployment


def test_the_api_server_stored_every_object_of_the_chart(cluster: Kube, installed: dict[str, Any]) -> None:
    assert cluster.json("get", "clusterrole", f"{RELEASE}-warmpool-operator")["rules"]
    for crd in ("warmpools.tensorwasm.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        metadata = cluster.json("get", "crd", crd)["metadata"]
        # Rendered by the chart (crds.install), owned by the release, kept on uninstall (crds.keep).
        assert metadata["annotations"]["meta.helm.sh/release-name"] == RELEASE
        assert metadata["annotations"]["helm.sh/resource-policy"] == "keep"
    for suffix in ("edit", "view"):
        assert cluster.json("get", "clusterrole", f"{RELEASE}-warmpool-operator-{suffix}")["rules"]
    pod = installed["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("verb", "resource"), [
    ("watch", "warmpools.tensorwasm.dev"), ("patch", "warmpools.tensorwasm.dev/status"),
    ("create", "deployments.apps"), ("patch", "deployments.apps"), ("create", "services"),
    ("patch", "configmaps"), ("list", "pods"), ("create", "events"), ("patch", "clusterkopfpeerings.kopf.dev"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("get", "secrets"),  # only to check that a Secret a module source names exists, and its type
    # rbac.watchTokenSecrets (default on): token rotation in fleets; only named Secrets' digests are kept
    ("list", "secrets"), ("watch", "secrets"),
    ("watch", "poddisruptionbudgets.policy"),
    ("delete", "poddisruptionbudgets.policy"),  # the one a pool no longer asks for
])
def test_the_installed_rbac_grants_what_the_operator_does(
    cluster: Kube, installed: dict[str, Any], verb: str, resource: str
) -> None:
    assert cluster.can(verb, resource)


@pytest.mark.parametrize(("verb", "resource"), [
    ("delete", "secrets"), ("update", "secrets"),
    ("delete", "deployments.apps"), ("delete", "warmpools.tensorwasm.dev"),
    ("create", "pods"), ("create", "pods/exec"), ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("patch", "nodes"),
])
def test_the_installed_rbac_refuses_everything_else(
    cluster: Kube, installed: dict[str, Any], verb: str, resource: str
) -> None:
    assert not cluster.can(verb, resource)


def test_a_user_bound_to_the_built_in_edit_role_manages_warmpools(cluster: Kube, installed: dict[str, Any]) -> None:
    """The chart's -edit and -view ClusterRoles are aggregated into `edit` and `view` by the controller manager."""
    cluster.run("create", "namespace", "team-rbac")
    cluster.run("-n", "team-rbac", "create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice")
    cluster.run("-n", "team-rbac", "create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob")

    def aggregated() -> bool:
        granted = [cluster.json("get", "clusterrole", role).get("rules") or [] for role in ("edit", "view")]
        return all(any("warmpools" in (rule.get("resources") or []) for rule in rules) for rules in granted)

    wait_for("the edit and view ClusterRoles to aggregate the WarmPool rules", aggregated, timeout_s=60)
    pool = {
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool", "metadata": {"name": "by-alice"},
        "spec": {"tenant": "acme", "replicas": 0,
                 "module": {"sha256": "a" * 64, "source": {"configMapRef": {"name": "m", "key": "m.wasm"}}}},
    }
    as_alice = ("--as=alice", "-n", "team-rbac")
    created = cluster.run(*as_alice, "create", "--filename=-", stdin=json.dumps(pool))
    assert "warmpool.tensorwasm.dev/by-alice created" in created.stdout
    # RuntimeFleets have no CRD here yet: ask the authorizer directly (kubectl auth can-i needs discovery).
    review = cluster.json("create", "--filename=-", stdin=json.dumps({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": {
            "group": "tensorwasm.dev", "resource": "runtimefleets", "verb": "delete", "namespace": "team-rbac"}},
    }))
    assert review["status"]["allowed"] is True
    assert cluster.json("--as=bob", "-n", "team-rbac", "get", "warmpool", "by-alice")["spec"]["tenant"] == "acme"
    refused = cluster.run("--as=bob", "-n", "team-rbac", "delete", "warmpool", "by-alice", check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr
    cluster.run(*as_alice, "delete", "warmpool", "by-alice", "--wait=false")
    # Elsewhere alice has no role at all.
    assert cluster.run("--as=alice", "-n", "default", "auth", "can-i", "create", "warmpools.tensorwasm.dev",
                       check=False).stdout.strip() == "no"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The example module served over HTTP on loopback; yields (url, sha256)."""
    docs = list(yaml.safe_load_all((ROOT / "examples" / "classify.yaml").read_text()))
    data = base64.b64decode(next(d for d in docs if d["kind"] == "ConfigMap")["binaryData"]["classify.wasm"])
    root = tmp_path_factory.mktemp("modules")
    (root / "classify.wasm").write_bytes(data)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/classify.wasm", hashlib.sha256(data).hexdigest()
    finally:
        server.shutdown()
        thread.join(timeout=10)


@dataclass(frozen=True)
class LocalOperator:
    log: Path
    health_url: str


@pytest.fixture(scope="module")
def operator(
    cluster: Kube, installed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalOperator]:
    """The chart's operator container run as a local process with the chart's ServiceAccount token."""
    cluster.run("-n", RELEASE_NAMESPACE, "scale", "deployment", f"{RELEASE}-warmpool-operator", "--replicas=0")
    token = cluster.run("-n", RELEASE_NAMESPACE, "create", "token", f"{RELEASE}-warmpool-operator",
                        "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    home = tmp_path_factory.mktemp("operator")
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "operator",
    }))
    (container,) = installed["spec"]["template"]["spec"]["containers"]
    argv = [*container["command"], *container["args"]]
    assert argv[0] == "warmpool"
    metrics_port, health_port = free_port(), free_port()
    # Same flags, but ports free on this machine instead of the pod's own.
    args = [a for a in argv[1:] if not a.startswith(("--metrics-port=", "--health-port="))]
    args += [f"--metrics-port={metrics_port}", f"--health-port={health_port}"]
    # The API server stores an empty value as no value at all.
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    # In its pod the operator takes the Lease's namespace from its service account: here, say it.
    env["WARMPOOL_OPERATOR_LEASE_NAMESPACE"] = env.get("WARMPOOL_OPERATOR_LEASE_NAMESPACE") or RELEASE_NAMESPACE
    env.update({"KUBECONFIG": str(kubeconfig), "WARMPOOL_OPERATOR_METRICS_HOST": "127.0.0.1",
                "WARMPOOL_OPERATOR_HEALTH_HOST": "127.0.0.1", "PATH": os.environ.get("PATH", ""), "HOME": str(home)})
    log = home / "operator.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "warmpool.cli", *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        health_url = f"http://127.0.0.1:{health_port}/healthz"
        wait_for("the operator's liveness endpoint", lambda: _answers(health_url), timeout_s=60)
        yield LocalOperator(log=log, health_url=health_url)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_the_installed_operator_brings_a_warmpool_to_ready(
    cluster: Kube, operator: LocalOperator, module_server: tuple[str, str]
) -> None:
    url, sha256 = module_server
    cluster.run("create", "namespace", "helm-e2e")
    cluster.run("-n", "helm-e2e", "apply", "--filename=-", stdin=json.dumps({
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool", "metadata": {"name": "classify"},
        "spec": {"tenant": "acme", "module": {"sha256": sha256, "source": {"url": url}}, "replicas": 2},
    }))

    def ready() -> dict[str, Any] | None:
        body: dict[str, Any] = cluster.json("-n", "helm-e2e", "get", "warmpool", "classify")
        conditions = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}
        ok = conditions.get("Ready", {}).get("status") == "True"
        return body if ok else None

    body = wait_for("WarmPool helm-e2e/classify to be Ready", ready, timeout_s=180)
    assert body["status"]["readyReplicas"] == 2
    assert argo_health(body)["status"] == "Healthy"
    assert kstatus(body)[0] == "Current"
    events = cluster.json("-n", "helm-e2e", "get", "events", "--field-selector", "involvedObject.name=classify")
    assert "PoolWarm" in {event["reason"] for event in events["items"]}
    assert "forbidden" not in operator.log.read_text().lower()


def pool_ready(cluster: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    body: dict[str, Any] = cluster.json("-n", namespace, "get", "warmpool", name)
    conditions = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}
    return body if conditions.get("Ready", {}).get("status") == "True" else None


def test_the_examples_bring_their_own_module_and_get_ready(
    cluster: Kube, operator: LocalOperator, kustomize: Path
) -> None:
    """examples/classify-autoscaled.yaml and the Kustomize staging overlay, applied as they are: nothing else
    (no module server) has to be deployed first."""
    cluster.run("create", "namespace", "examples")
    cluster.run("-n", "examples", "apply", f"--filename={ROOT / 'examples' / 'classify-autoscaled.yaml'}")
    built = subprocess.run([str(kustomize), "build", str(ROOT / "examples" / "kustomize" / "overlays" / "staging")],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    cluster.run("create", "namespace", "acme-staging")
    cluster.run("apply", "--filename=-", stdin=built)
    for namespace, name in (("examples", "classify-autoscaled"), ("acme-staging", "classify")):
        body = wait_for(f"WarmPool {namespace}/{name} to be Ready",
                        functools.partial(pool_ready, cluster, namespace, name), timeout_s=180)
        assert body["status"]["readyReplicas"] >= 1
    # The README's invoke step (its path and body), sent to a staging pod at its IP (port 8080, as the
    # Service's): the local node agent runs pods on loopback addresses and has no port-forward.
    quickstart = (ROOT / "README.md").read_text().split("### Quickstart on a cluster", 1)[1]
    (path,) = re.findall(r"localhost:8080(/v1/\S+)", quickstart)
    (data,) = re.findall(r"-d '([^']+)'", quickstart)
    pods = cluster.json("-n", "acme-staging", "get", "pods", "--selector=app.kubernetes.io/instance=classify")
    ip = next(pod["status"]["podIP"] for pod in pods["items"] if pod["status"].get("podIP"))
    request = urllib.request.Request(f"http://{ip}:8080{path}", data=data.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        (score,) = json.loads(response.read())["results"]
    assert f'{{"results": [{score}]}}' in quickstart
    for namespace in ("examples", "acme-staging"):
        cluster.run("delete", "namespace", namespace, "--wait=false")


def pool_pod_uids(cluster: Kube) -> set[str]:
    pods = cluster.json("-n", "helm-e2e", "get", "pods", "--selector=app.kubernetes.io/instance=classify")
    assert all(s["restartCount"] == 0 for pod in pods["items"] for s in pod["status"]["containerStatuses"])
    return {pod["metadata"]["uid"] for pod in pods["items"] if not pod["metadata"].get("deletionTimestamp")}


def test_the_helm_test_hook_passes_against_the_running_operator(
    cluster: Kube, helm: Helm, operator: LocalOperator
) -> None:
    """The `helm test` pod's command, as the release stored it, run here against the operator's /healthz.

    Not `helm test` itself: the local node agent runs only the `warmpool` CLI, and the test pod runs the
    image's `python -c`; nor does a local process resolve the Service's cluster DNS name.
    """
    hooks = helm.run_with_kubeconfig(cluster.kubeconfig, "get", "hooks", RELEASE, "--namespace",
                                     RELEASE_NAMESPACE).stdout
    (pod,) = [doc for doc in yaml.safe_load_all(hooks) if doc and doc["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["HEALTH_URL"] == f"http://{RELEASE}-warmpool-operator-metrics.{RELEASE_NAMESPACE}.svc:8081/healthz"
    assert container["command"][:2] == ["python", "-c"]
    result = subprocess.run([sys.executable, *container["command"][1:]], capture_output=True, text=True, timeout=120,
                            env={"PATH": os.environ.get("PATH", ""), "HEALTH_URL": operator.health_url},
                            check=False)
    assert result.returncode == 0, result.stderr
    assert f"healthy: {operator.health_url}" in result.stdout


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", "") for item in container["env"]}


def test_helm_upgrade_and_a_crd_upgrade_keep_warmpools_and_running_pods(
    cluster: Kube, helm: Helm, operator: LocalOperator, tmp_path: Path
) -> None:
    """`helm upgrade` to a chart with a changed value and a newer CRD: both land, the operator stays up."""
    before = cluster.json("-n", "helm-e2e", "get", "warmpool", "classify")
    pods = pool_pod_uids(cluster)
    assert len(pods) == 2
    old = cluster.json("-n", RELEASE_NAMESPACE, "get", "deployment", f"{RELEASE}-warmpool-operator")
    assert env_of(old)["WARMPOOL_OPERATOR_RESYNC_SECONDS"] == "30"
    # The next chart version: its WarmPool CRD has one more optional field.
    chart = tmp_path / "warmpool-operator"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "crds" / "warmpools.tensorwasm.dev.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["note"] = {"type": "string", "description": "A field a later version adds."}
    crd_file.write_text(yaml.safe_dump(crd))
    result = helm.run_with_kubeconfig(cluster.kubeconfig, "upgrade", RELEASE, str(chart), "--namespace",
                                      RELEASE_NAMESPACE, "--reuse-values", "--set", "settings.resyncSeconds=15",
                                      "--set", "podDisruptionBudget.enabled=true")
    assert "STATUS: deployed" in result.stdout
    assert "REVISION: 2" in result.stdout
    # The changed values landed: the Deployment's environment and a new PodDisruptionBudget.
    new = cluster.json("-n", RELEASE_NAMESPACE, "get", "deployment", f"{RELEASE}-warmpool-operator")
    assert env_of(new)["WARMPOOL_OPERATOR_RESYNC_SECONDS"] == "15"
    assert new["metadata"]["generation"] > old["metadata"]["generation"]
    budget = cluster.json("-n", RELEASE_NAMESPACE, "get", "poddisruptionbudget", f"{RELEASE}-warmpool-operator")
    assert budget["spec"]["minAvailable"] == 1
    # The operator keeps running as the local process: its Deployment goes back to zero replicas.
    cluster.run("-n", RELEASE_NAMESPACE, "scale", "deployment", f"{RELEASE}-warmpool-operator", "--replicas=0")
    assert _answers(operator.health_url)

    # `helm upgrade` upgraded the CRD (templates/crds.yaml); the stored v1alpha1 objects read back unchanged.
    cluster.run("wait", "--for=condition=Established", "crd/warmpools.tensorwasm.dev", "--timeout=60s")
    stored = cluster.json("get", "crd", "warmpools.tensorwasm.dev")["spec"]["versions"][0]["schema"]
    assert "note" in stored["openAPIV3Schema"]["properties"]["spec"]["properties"]
    after = cluster.json("-n", "helm-e2e", "get", "warmpool", "classify")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    cluster.run("-n", "helm-e2e", "replace", "--dry-run=server", "--filename=-", stdin=json.dumps(after))

    def still_ready() -> dict[str, Any] | None:
        body: dict[str, Any] = cluster.json("-n", "helm-e2e", "get", "warmpool", "classify")
        conditions = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}
        ready = conditions.get("Ready", {})
        current = ready.get("observedGeneration") == body["metadata"]["generation"]
        return body if current and ready.get("status") == "True" else None

    wait_for("WarmPool helm-e2e/classify still Ready", still_ready, timeout_s=120)
    assert pool_pod_uids(cluster) == pods  # the same pods: nothing restarted or replaced
    assert _answers(operator.health_url)
    assert "forbidden" not in operator.log.read_text().lower()


def test_helm_uninstall_removes_the_release_and_keeps_the_crds(
    cluster: Kube, helm: Helm, operator: LocalOperator
) -> None:
    helm.run_with_kubeconfig(cluster.kubeconfig, "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait")
    gone = cluster.run("get", "clusterrole", f"{RELEASE}-warmpool-operator", check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    # crds.keep: Helm leaves the CRDs it installed, so the WarmPools (and their pods) survive.
    assert cluster.json("get", "crd", "warmpools.tensorwasm.dev")["metadata"]["name"] == "warmpools.tensorwasm.dev"
    assert cluster.json("-n", "helm-e2e", "get", "warmpool", "classify")["spec"]["tenant"] == "acme"

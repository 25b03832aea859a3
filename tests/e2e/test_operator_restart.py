"""The operator killed mid-reconcile on the real cluster (held by a test admission webhook), then restarted."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import signal
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import EXAMPLE, example_module, get_pool, invoke, ready_pods, wait_pool_ready
from warmpool.dev import procs
from warmpool_operator.render import selector_string

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "classify"
HOLD_SECONDS = 25.0
"""Longest the webhook keeps a request (the API server gives up on it after 30 s)."""


@dataclass
class Gate:
    """Admission answers for Service creations: every one allowed, the pool's first one only late."""

    hold: str
    seen: list[str] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def admit(self, review: dict[str, Any]) -> dict[str, Any]:
        request = review["request"]
        name = request.get("name") or request["object"]["metadata"].get("name", "")
        self.seen.append(name)
        if name == self.hold and not self.held.is_set():
            self.held.set()
            self.release.wait(HOLD_SECONDS)
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": request["uid"], "allowed": True}}


@contextlib.contextmanager
def admission_webhook(cluster: LocalCluster, namespace: str, gate: Gate, pki: Path) -> Iterator[None]:
    """A validating webhook on 127.0.0.1 for Service creations in `namespace` only."""
    made = subprocess.run([str(cluster.binary), "pki", f"--dir={pki}", "--hosts=127.0.0.1"],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps(gate.admit(review)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"hold-services-{namespace}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "hold.services.e2e.tensorwasm.dev",
            "clientConfig": {"url": f"https://127.0.0.1:{server.server_address[1]}/admit",
                             "caBundle": base64.b64encode((pki / "ca.crt").read_bytes()).decode()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["services"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 30,
            "failurePolicy": "Fail",
        }],
    }
    cluster.apply(config)
    try:
        yield
    finally:
        gate.release.set()
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        server.shutdown()
        server.server_close()


def webhook_in_effect(cluster: LocalCluster, namespace: str, gate: Gate) -> None:
    """The API server picks up a webhook configuration asynchronously: wait until it calls ours."""
    attempt = 0

    def called() -> bool:
        nonlocal attempt
        attempt += 1
        probe = f"probe-{attempt}"
        cluster.kubectl("create", "service", "clusterip", probe, "--tcp=80", f"--namespace={namespace}")
        return probe in gate.seen

    cluster.wait_for("the API server calling the test's admission webhook", called, timeout_s=60)


def kill_operator(cluster: LocalCluster) -> None:
    """SIGKILL the operator process this session started: no cleanup, no graceful shutdown."""
    record = procs.read_pid_file(cluster.layout.pid("operator"))
    assert record is not None
    assert procs.recorded_alive(record)
    os.kill(record.pid, signal.SIGKILL)
    cluster.wait_for("the operator process gone", lambda: not procs.alive(record.pid), timeout_s=30)
    cluster.stop_operator()  # forgets the PID file


# The test's admission webhook holds the operator's creation of the pool's Service, so that the
# kill lands while children are being created: ConfigMap written, Service in flight, no Deployment.
def test_an_operator_killed_while_creating_children_converges_after_a_restart(
    operator: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    gate = Gate(hold=POOL)
    ns = f"--namespace={namespace}"
    with admission_webhook(operator, namespace, gate, tmp_path / "pki"):
        webhook_in_effect(operator, namespace, gate)
        operator.kubectl("apply", ns, f"--filename={EXAMPLE}")
        assert gate.held.wait(120), "the operator never tried to create the pool's Service"

        # Mid-reconcile: the runtime ConfigMap is written, the Service is in flight, no Deployment yet.
        assert operator.kubectl("get", "configmap", "classify-runtime", ns, check=False).returncode == 0
        assert "NotFound" in operator.kubectl("get", "deployment", POOL, ns, check=False).stderr
        kill_operator(operator)
        gate.release.set()
    half_done = get_pool(operator, namespace, POOL)
    assert "conditions" not in (half_done.get("status") or {})

    operator.start_operator()
    pool = wait_pool_ready(operator, namespace, POOL, replicas=2)
    uid = pool["metadata"]["uid"]
    selector = f"--selector={selector_string(POOL)}"
    found = operator.kubectl_json("get", "configmaps,services,deployments,replicasets,pods", ns, selector)["items"]
    # One of each child (no duplicate from the first attempt), one ReplicaSet, the wanted pods.
    assert Counter(obj["kind"] for obj in found) == {"ConfigMap": 1, "Service": 1, "Deployment": 1,
                                                     "ReplicaSet": 1, "Pod": 2}
    for obj in found:
        if obj["kind"] in ("ConfigMap", "Service", "Deployment"):
            (owner,) = obj["metadata"]["ownerReferences"]
            assert (owner["uid"], owner["controller"]) == (uid, True)
    _, sha = example_module()
    for pod in ready_pods(operator, namespace, POOL):
        assert invoke(pod["status"]["podIP"], sha, "add", [20, 22]) == (200, {"results": [42]})

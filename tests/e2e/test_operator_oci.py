"""Modules from an OCI registry and from an authenticated https URL on the real control plane: a real
registry with htpasswd auth and a real https server with a private CA on loopback, runtime pods that fetch
with the Secrets and ConfigMap the operator mounts, and a pool that says why when they cannot."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import (
    ROLLOUT_PATIENCE_SECONDS,
    conditions,
    example_module,
    get_pool,
    invoke,
    pool_pods,
    ready_pods,
    wait_pool_ready,
)
from tests.oci_registry import OciRegistry
from tests.operator.harness import warmpool_manifest
from tests.runtime.test_sources_http import make_ca, server_context

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"


def _request(registry: OciRegistry, method: str, url: str, body: bytes = b"",
             content_type: str = "application/octet-stream") -> tuple[int, dict[str, str]]:
    credentials = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    request = urllib.request.Request(url, data=body if method != "GET" else None, method=method, headers={
        "Authorization": f"Basic {credentials}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status), dict(response.headers)


def _blob(registry: OciRegistry, name: str, data: bytes) -> dict[str, Any]:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    _, headers = _request(registry, "POST", f"{registry.url}/v2/{name}/blobs/uploads/")
    location = headers["Location"]
    location = location if location.startswith("http") else registry.url + location
    joiner = "&" if "?" in location else "?"
    status, _ = _request(registry, "PUT", f"{location}{joiner}digest={digest}", data)
    assert status == 201
    return {"digest": digest, "size": len(data)}


def push_wasm(registry: OciRegistry, name: str, tag: str, wasm: bytes) -> str:
    """Store `wasm` as the one `application/wasm` layer of an OCI artifact `name:tag` (the layout
    `warmpool module push` writes, by the distribution API directly); returns the manifest digest."""
    config = {"mediaType": EMPTY_CONFIG_TYPE, **_blob(registry, name, EMPTY_CONFIG)}
    layer = {"mediaType": "application/wasm", **_blob(registry, name, wasm)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/wasm",
                           "config": config, "layers": [layer]}).encode()
    status, _ = _request(registry, "PUT", f"{registry.url}/v2/{name}/manifests/{tag}", manifest, OCI_MANIFEST)
    assert status == 201
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}"


def pull_secret(name: str, config: dict[str, object], kind: str = "kubernetes.io/dockerconfigjson") -> dict[str, Any]:
    key = ".dockerconfigjson" if kind == "kubernetes.io/dockerconfigjson" else "config.json"
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": kind,
            "data": {key: base64.b64encode(json.dumps(config).encode()).decode()}}


def oci_pool(name: str, sha: str, repository: str, *, reference: str | None = "v1",
             secret: str | None = "regcred") -> dict[str, Any]:
    oci: dict[str, Any] = {"repository": repository, "insecure": True}
    if reference is not None:
        oci["reference"] = reference
    if secret is not None:
        oci["pullSecretRef"] = {"name": secret}
    return warmpool_manifest(name, module={"sha256": sha, "source": {"oci": oci}}, replicas=1)


def apply_in(cluster: LocalCluster, namespace: str, *objects: dict[str, Any]) -> None:
    for obj in objects:
        cluster.kubectl("apply", f"--namespace={namespace}", "--filename=-", stdin=json.dumps(obj))


def stalled_with(cluster: LocalCluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        cond = conditions(get_pool(cluster, namespace, name)).get("Stalled") or {}
        return cond if (cond.get("status"), cond.get("reason")) == ("True", reason) else None

    cond: dict[str, Any] = cluster.wait_for(f"WarmPool {name} Stalled={reason}", found,
                                            timeout_s=ROLLOUT_PATIENCE_SECONDS)
    return cond


def test_a_pool_from_an_authenticated_registry_becomes_ready_and_serves(
    operator: LocalCluster, namespace: str, oci_registry: OciRegistry
) -> None:
    wasm, sha = example_module()
    repository = f"{oci_registry.host}/{namespace}/classify"
    push_wasm(oci_registry, f"{namespace}/classify", "v1", wasm)
    apply_in(operator, namespace, pull_secret("regcred", oci_registry.docker_config()),
             oci_pool("classify", sha, repository))

    pool = wait_pool_ready(operator, namespace, "classify", replicas=1)
    assert conditions(pool)["Stalled"]["status"] == "False"
    (pod,) = ready_pods(operator, namespace, "classify")
    assert invoke(pod["status"]["podIP"], sha, "add", [2, 3]) == (200, {"results": [5]})
    # The pod mounts the Secret; the operator wrote only its name and the path into the config.
    config = operator.kubectl_json("get", "configmap", "classify-runtime", f"--namespace={namespace}")
    runtime_yaml = config["data"]["runtime.yaml"]
    assert "dockerConfig: /var/run/warmpool/pull-secrets/regcred/.dockerconfigjson" in runtime_yaml
    assert oci_registry.password not in runtime_yaml
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["pull-secret"]["secret"]["secretName"] == "regcred"


def test_a_module_pushed_with_warmpool_module_push_serves_from_its_printed_manifest(
    operator: LocalCluster, namespace: str, oci_registry: OciRegistry, tmp_path: Path
) -> None:
    wasm, sha = example_module()
    module = tmp_path / "classify.wasm"
    module.write_bytes(wasm)
    warmpool = Path(sys.executable).with_name("warmpool")
    pushed = subprocess.run(
        [str(warmpool), "module", "push", str(module), f"{oci_registry.host}/{namespace}/classify:v1",
         "--insecure", "--tenant", "acme", "--name", "pushed", "--pull-secret", "regcred",
         "--username", oci_registry.username, "--password-stdin"],
        input=oci_registry.password, capture_output=True, text=True, timeout=120, check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert oci_registry.password not in pushed.stdout + pushed.stderr
    apply_in(operator, namespace, pull_secret("regcred", oci_registry.docker_config()))
    # The printed manifest, applied as it is.
    operator.kubectl("apply", f"--namespace={namespace}", "--filename=-", stdin=pushed.stdout)

    pool = wait_pool_ready(operator, namespace, "pushed", replicas=1)
    oci = pool["spec"]["module"]["source"]["oci"]
    assert (pool["spec"]["module"]["sha256"], oci["repository"]) == (sha, f"{oci_registry.host}/{namespace}/classify")
    assert oci["reference"].startswith("sha256:")  # pinned to the manifest digest, not the tag
    (pod,) = ready_pods(operator, namespace, "pushed")
    assert invoke(pod["status"]["podIP"], sha, "add", [2, 3]) == (200, {"results": [5]})


def test_a_wrong_pull_secret_stalls_naming_the_registry_and_the_401(
    operator: LocalCluster, namespace: str, oci_registry: OciRegistry
) -> None:
    wasm, sha = example_module()
    repository = f"{oci_registry.host}/{namespace}/classify"
    push_wasm(oci_registry, f"{namespace}/classify", "v1", wasm)
    wrong = "not-the-password-0f1e2d"
    apply_in(operator, namespace, pull_secret("regcred", oci_registry.docker_config(password=wrong)),
             oci_pool("classify", sha, repository))

    cond = stalled_with(operator, namespace, "classify", "ModuleUnreachable")
    message = cond["message"]
    assert f"401 from registry {oci_registry.host} for {namespace}/classify" in message, message
    assert wrong not in message
    assert oci_registry.password not in message
    assert not ready_pods(operator, namespace, "classify")

    # The right credentials: the pods fetched on their next start, and the pool recovers.
    apply_in(operator, namespace, pull_secret("regcred", oci_registry.docker_config()))
    for pod in pool_pods(operator, namespace, "classify"):
        operator.kubectl("delete", "pod", pod["metadata"]["name"], f"--namespace={namespace}", "--wait=false")
    recovered = wait_pool_ready(operator, namespace, "classify", replicas=1)
    assert conditions(recovered)["Stalled"]["status"] == "False"


def test_a_missing_or_mistyped_pull_secret_stalls_before_any_pod_exists(
    operator: LocalCluster, namespace: str, oci_registry: OciRegistry
) -> None:
    _, sha = example_module()
    apply_in(operator, namespace, oci_pool("classify", sha, f"{oci_registry.host}/{namespace}/classify"))
    cond = stalled_with(operator, namespace, "classify", "SecretMissing")
    assert cond["message"] == "Secret regcred (spec.module.source.oci.pullSecretRef) does not exist"

    apply_in(operator, namespace, pull_secret("regcred", oci_registry.docker_config(), kind="Opaque"))
    cond = stalled_with(operator, namespace, "classify", "PullSecretWrongType")
    assert "is of type Opaque" in cond["message"]
    assert "must be of type kubernetes.io/dockerconfigjson" in cond["message"]
    assert oci_registry.password not in cond["message"]
    # Nothing was rolled out to pods that could not start.
    deployments = operator.kubectl_json("get", "deployments", f"--namespace={namespace}")["items"]
    assert deployments == []


def test_a_reference_whose_layer_is_another_module_names_both_digests(
    operator: LocalCluster, namespace: str, oci_registry: OciRegistry
) -> None:
    wasm, sha = example_module()
    other = wasm + b"\x00\x03\x02v2"  # a custom section: valid, other bytes, another digest
    other_sha = hashlib.sha256(other).hexdigest()
    push_wasm(oci_registry, f"{namespace}/classify", "v2", other)
    apply_in(operator, namespace, pull_secret("regcred", oci_registry.docker_config()),
             oci_pool("classify", sha, f"{oci_registry.host}/{namespace}/classify", reference="v2"))

    def failed() -> dict[str, Any] | None:
        cond = conditions(get_pool(operator, namespace, "classify")).get("Stalled") or {}
        return cond if cond.get("status") == "True" and other_sha in str(cond.get("message")) else None

    cond = operator.wait_for("Stalled naming the layer digest", failed, timeout_s=ROLLOUT_PATIENCE_SECONDS)
    assert f"sha256:{other_sha}" in cond["message"]
    assert f"sha256:{sha}" in cond["message"]
    assert oci_registry.host in cond["message"]


REFUSED = [
    pytest.param({"oci": {"repository": "https://r.example/acme/m"}},
                 "module.source.oci.repository must be host[:port]/path without a scheme", id="scheme"),
    pytest.param({"oci": {"repository": "registry/acme/m"}},
                 "module.source.oci.repository must be host[:port]/path", id="bare-host"),
    pytest.param({"oci": {"repository": "r.example/acme/m", "reference": "sha256:abc"}},
                 "module.source.oci.reference must be a tag or sha256:<64 lowercase hex>", id="short-digest"),
    pytest.param({"oci": {"repository": "r.example/acme/m"}, "path": "/m.wasm"},
                 "module.source must set exactly one of url, configMapRef, path, oci", id="two-sources"),
    pytest.param({"oci": {"repository": "r.example/acme/m"}, "headersFrom": {"secretRef": {"name": "h"}}},
                 "module.source.headersFrom is only allowed with url", id="headers-with-oci"),
    pytest.param({"path": "/m.wasm", "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}},
                 "module.source.caBundle is only allowed with url", id="ca-with-path"),
    pytest.param({"url": "http://r.example/m.wasm", "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}},
                 "module.source.caBundle needs an https:// url", id="ca-with-http"),
]


@pytest.mark.parametrize(("source", "message"), REFUSED)
def test_the_api_server_refuses_bad_sources_with_the_rules_message(
    crds: LocalCluster, namespace: str, source: dict[str, Any], message: str
) -> None:
    manifest = warmpool_manifest("refused", module={"sha256": "a" * 64, "source": source})
    result = crds.kubectl("create", f"--namespace={namespace}", "--dry-run=server", "--filename=-",
                          stdin=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_api_server_accepts_every_new_source_field(crds: LocalCluster, namespace: str) -> None:
    for name, source in (
        ("oci", {"oci": {"repository": "127.0.0.1:5000/acme/classify", "reference": "sha256:" + "c" * 64,
                         "insecure": True, "pullSecretRef": {"name": "regcred"}}}),
        ("url", {"url": "https://modules.internal/m.wasm", "headersFrom": {"secretRef": {"name": "token"}},
                 "caBundle": {"configMapRef": {"name": "internal-ca", "key": "ca.pem"}}}),
    ):
        manifest = warmpool_manifest(f"accepted-{name}", module={"sha256": "a" * 64, "source": source})
        created = json.loads(crds.kubectl("create", f"--namespace={namespace}", "--dry-run=server", "--output=json",
                                          "--filename=-", stdin=json.dumps(manifest)).stdout)
        assert created["spec"]["module"]["source"] == source  # nothing pruned


TOKEN = "Bearer s3cr3t-t0ken-for-modules"


@dataclass
class ModuleHost:
    """An https server on 127.0.0.1 (certificate from a private CA) serving one module to callers that send
    TOKEN in Authorization; it records the Authorization headers it was sent."""

    url: str
    ca_pem: str
    sha256: str
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def module_host(tmp_path: Path) -> Iterator[ModuleHost]:
    wasm, sha = example_module()
    ca_key, ca_cert, _ = make_ca(tmp_path, "warmpool-e2e-ca")
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            ok = self.path == "/classify.wasm" and self.headers.get("Authorization") == TOKEN
            body = wasm if ok else b""
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(tmp_path, ca_key, ca_cert).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    try:
        yield ModuleHost(url=f"https://127.0.0.1:{server.server_address[1]}/classify.wasm", ca_pem=pem,
                         sha256=sha, seen=seen)
    finally:
        server.shutdown()
        server.server_close()


def header_secret(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "stringData": {"Authorization": value}}


def url_pool(name: str, host: ModuleHost, secret: str) -> dict[str, Any]:
    source = {"url": host.url, "headersFrom": {"secretRef": {"name": secret}},
              "caBundle": {"configMapRef": {"name": "internal-ca", "key": "ca.pem"}}}
    return warmpool_manifest(name, module={"sha256": host.sha256, "source": source}, replicas=1)


def test_a_url_behind_a_private_ca_and_a_token_header_serves_and_a_wrong_token_stalls(
    operator: LocalCluster, namespace: str, module_host: ModuleHost
) -> None:
    ca = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "internal-ca"},
          "data": {"ca.pem": module_host.ca_pem}}
    apply_in(operator, namespace, ca, header_secret("module-token", TOKEN), url_pool("classify", module_host,
                                                                                      "module-token"))
    wait_pool_ready(operator, namespace, "classify", replicas=1)
    (pod,) = ready_pods(operator, namespace, "classify")
    assert invoke(pod["status"]["podIP"], module_host.sha256, "add", [2, 3]) == (200, {"results": [5]})
    assert TOKEN in module_host.seen  # the header came from the mounted Secret; TLS trusted the mounted CA

    wrong = "Bearer expired-t0ken-0000"
    apply_in(operator, namespace, header_secret("old-token", wrong), url_pool("denied", module_host, "old-token"))
    cond = stalled_with(operator, namespace, "denied", "ModuleUnreachable")
    assert module_host.url in cond["message"]
    assert "401" in cond["message"]
    assert "expired-t0ken" not in cond["message"]
    assert wrong in module_host.seen

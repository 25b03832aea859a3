"""Server-side apply on the real API server: what another field manager adds to a pool's Deployment stays."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.operator.harness import warmpool_manifest
from warmpool_operator.render import ANNOTATION_CONFIG_HASH

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

POOL = "applied"
INJECTOR = "mesh-injector"
SIDECAR = "mesh-proxy"
VOLUME = "mesh-certs"
ANNOTATION = "mesh.example.com/inject"


def deployment(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.kubectl_json("get", "deployment", POOL, f"--namespace={namespace}")
    return found


def injected(found: dict[str, Any]) -> bool:
    template = found["spec"]["template"]
    return (
        SIDECAR in [c["name"] for c in template["spec"]["containers"]]
        and VOLUME in [v["name"] for v in template["spec"].get("volumes") or ()]
        and (template["metadata"].get("annotations") or {}).get(ANNOTATION) == "true"
    )


def runtime_container(found: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in found["spec"]["template"]["spec"]["containers"] if c["name"] == "runtime"]
    return dict(container)


def test_another_managers_sidecar_volume_and_annotation_survive(operator: LocalCluster, namespace: str) -> None:
    # No pods: only the Deployment object matters here (the local node runs no sidecar images).
    pool = warmpool_manifest(POOL, replicas=0)
    operator.apply({**pool, "metadata": {**pool["metadata"], "namespace": namespace}})
    first = operator.wait_for("the Deployment", lambda: operator.kubectl_json(
        "get", "deployments", f"--namespace={namespace}")["items"])[0]
    image = runtime_container(first)["image"]
    digest = first["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]

    injection = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": POOL, "namespace": namespace},
        "spec": {"template": {
            "metadata": {"annotations": {ANNOTATION: "true"}},
            "spec": {
                "containers": [{"name": SIDECAR, "image": "registry.example/mesh-proxy:1",
                                "volumeMounts": [{"name": VOLUME, "mountPath": "/certs"}]}],
                "volumes": [{"name": VOLUME, "emptyDir": {}}],
            },
        }},
    }
    operator.kubectl("apply", "--server-side", f"--field-manager={INJECTOR}", "--filename=-",
                     stdin=json.dumps(injection))
    assert injected(deployment(operator, namespace))

    # A spec change: the operator applies a new template (new config hash); the injection stays.
    operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                     "--patch=" + json.dumps({"spec": {"warmInstancesPerTuple": 2}}))

    def reapplied() -> dict[str, Any] | None:
        found = deployment(operator, namespace)
        return found if found["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] != digest else None

    after_change = operator.wait_for("the changed spec applied", reapplied)
    assert injected(after_change), after_change["spec"]["template"]

    # A hand edit of a field the operator owns is restored; the injection still stays.
    edit = {"spec": {"template": {"spec": {"containers": [{"name": "runtime", "image": "evil:latest"}]}}}}
    operator.kubectl("patch", "deployment", POOL, f"--namespace={namespace}", "--type=strategic",
                     f"--patch={json.dumps(edit)}")

    def restored() -> dict[str, Any] | None:
        found = deployment(operator, namespace)
        return found if runtime_container(found)["image"] == image else None

    fixed = operator.wait_for("the runtime image restored", restored)
    assert injected(fixed), fixed["spec"]["template"]
    shown = operator.kubectl_json("get", "deployment", POOL, f"--namespace={namespace}", "--show-managed-fields")
    applied = {entry["manager"] for entry in shown["metadata"]["managedFields"] if entry["operation"] == "Apply"}
    assert {"warmpool-operator", INJECTOR} <= applied

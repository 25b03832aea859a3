"""The runtime pods the operator renders meet Pod Security "restricted" and mount no service-account token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.packaging.podsecurity import read_only_root_violations, restricted_violations
from warmpool_operator.render import RUN_AS_USER, RenderOptions, render_children
from warmpool_operator.spec import parse_warmpool

pytestmark = pytest.mark.unit

SHA = "c" * 64
SPECS: dict[str, dict[str, Any]] = {
    "url source": {"tenant": "acme", "module": {"sha256": SHA, "source": {"url": "https://m.example/echo.wasm"}}},
    "configmap source": {
        "tenant": "acme",
        "module": {"sha256": SHA, "source": {"configMapRef": {"name": "modules", "key": "echo.wasm"}}},
    },
    "every runtime field": {
        "tenant": "globex",
        "module": {"sha256": SHA, "source": {"path": "/modules/echo.wasm"}},
        "runtime": {
            "image": "registry.example/warmpool:1.0",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}],
            "podLabels": {"team": "a"},
            "podAnnotations": {"note": "x"},
        },
        "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 5},
    },
}


def pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    pool = parse_warmpool({"metadata": {"name": "echo", "namespace": "team-a", "uid": "u-1", "generation": 3},
                           "spec": spec})
    children = render_children(pool.meta, pool.spec, options=RenderOptions(default_image="warmpool:0.1.0"), replicas=2)
    template: dict[str, Any] = children.deployment["spec"]["template"]["spec"]
    return template


@pytest.mark.parametrize("case", sorted(SPECS))
def test_runtime_pod_meets_pod_security_restricted(case: str) -> None:
    pod = pod_spec(SPECS[case])
    assert restricted_violations(pod) == []
    assert read_only_root_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] == RUN_AS_USER != 0


@pytest.mark.parametrize("case", sorted(SPECS))
def test_runtime_pod_mounts_no_service_account_token(case: str) -> None:
    pod = pod_spec(SPECS[case])
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod or pod["serviceAccountName"] == "default"
    for volume in pod["volumes"]:
        assert "projected" not in volume, "no projected (token) volume"
        assert "secret" not in volume


def test_module_from_a_configmap_is_mounted_read_only() -> None:
    pod = pod_spec(SPECS["configmap source"])
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["modules"]["readOnly"] is True
    assert mounts["config"]["readOnly"] is True
    # The only writable place is a size-capped scratch directory.
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == ["/tmp"]
    (tmp,) = [v for v in pod["volumes"] if v["name"] == writable[0]["name"]]
    assert tmp["emptyDir"]["sizeLimit"]

"""Rendering of every child object from a parsed spec (pure), checked field by field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.operator.harness import SHA_A, SHA_B, warmpool_manifest
from warmpool_operator.ownership import deployment_replicas
from warmpool_operator.render import (
    ANNOTATION_CONFIG_HASH,
    Children,
    RenderOptions,
    forget_dropped_pod_metadata,
    render_children,
    selector_string,
)
from warmpool_operator.spec import PoolMeta, WarmPoolSpec, parse_spec
from warmpool_runtime.config import parse_config

pytestmark = pytest.mark.unit

META = PoolMeta(name="echo", namespace="pools", uid="uid-1", generation=1)
OPTIONS = RenderOptions(default_image="warmpool:0.1.0")


def spec(**changes: Any) -> WarmPoolSpec:
    raw: dict[str, Any] = copy.deepcopy(warmpool_manifest()["spec"])
    raw.update(changes)
    return parse_spec(raw)


def render(pool: WarmPoolSpec, replicas: int | None = 2) -> Children:
    return render_children(META, pool, options=OPTIONS, replicas=replicas)


def pod_spec(children: Children) -> dict[str, Any]:
    result: dict[str, Any] = children.deployment["spec"]["template"]["spec"]
    return result


def config(children: Children) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(children.config_map["data"]["runtime.yaml"])
    return loaded


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    for obj in render(spec()).all():
        meta = obj["metadata"]
        assert meta["namespace"] == "pools"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "tensorwasm.dev/v1alpha1",
                "kind": "WarmPool",
                "name": "echo",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"] == {
            "app.kubernetes.io/name": "warmpool-runtime",
            "app.kubernetes.io/instance": "echo",
            "app.kubernetes.io/component": "runtime",
            "app.kubernetes.io/part-of": "warmpool",
            "app.kubernetes.io/managed-by": "warmpool-operator",
            "tensorwasm.dev/tenant": "acme",
            "tensorwasm.dev/module": SHA_A[:12],
        }


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ({"path": "/opt/echo.wasm"}, {"path": "/opt/echo.wasm"}),
        ({"url": "http://modules.svc/echo.wasm"}, {"url": "http://modules.svc/echo.wasm"}),
        ({"configMapRef": {"name": "mods", "key": "echo.wasm"}}, {"path": "/modules/echo.wasm"}),
    ],
)
def test_runtime_config_follows_docs_and_the_runtime_accepts_it(source: dict[str, Any], rendered: Any) -> None:
    children = render(spec(module={"sha256": SHA_A, "source": source}, limits={"fuel": 5000}))
    document = config(children)
    assert document == {
        "maxTotalWarm": 16,
        "limits": {"memoryBytes": 67108864, "timeoutMs": 1000, "fuel": 5000},
        "tuples": [
            {"tenant": "acme", "module": {"sha256": SHA_A, "source": rendered}, "warmInstancesPerTuple": 4}
        ],
    }
    parsed = parse_config(document)  # the runtime's own parser, as the pod will run it
    assert parsed.tuples[0].tenant == "acme"


def test_configmap_sourced_module_is_mounted_read_only_at_modules() -> None:
    children = render(spec(module={"sha256": SHA_A, "source": {"configMapRef": {"name": "mods", "key": "e.wasm"}}}))
    pod = pod_spec(children)
    assert {"name": "modules", "configMap": {"name": "mods", "items": [{"key": "e.wasm", "path": "e.wasm"}]}} in pod[
        "volumes"
    ]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "modules", "mountPath": "/modules", "readOnly": True} in mounts
    assert {"name": "config", "mountPath": "/etc/warmpool", "readOnly": True} in mounts
    path_only = pod_spec(render(spec()))
    assert all(v["name"] != "modules" for v in path_only["volumes"])


def test_service_selects_the_pods_on_the_http_port() -> None:
    service = render(spec()).service
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "warmpool-runtime", "app.kubernetes.io/instance": "echo"},
        "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}],
    }
    assert selector_string("echo") == "app.kubernetes.io/instance=echo,app.kubernetes.io/name=warmpool-runtime"


def test_runtime_container_command_probes_and_restricted_security() -> None:
    pod = pod_spec(render(spec()))
    (container,) = pod["containers"]
    assert container["image"] == "warmpool:0.1.0"
    assert container["command"] == ["warmpool", "runtime", "serve"]
    assert container["args"] == ["--config", "/etc/warmpool/runtime.yaml", "--port", "8080"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert "resources" not in container
    # Owned-but-unset scheduling fields are rendered as "must be absent".
    assert (pod["nodeSelector"], pod["tolerations"], pod["affinity"]) == (None, None, None)


def test_runtime_settings_reach_the_pod_template() -> None:
    children = render(
        spec(
            runtime={
                "image": "registry.local/warmpool:2",
                "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
                "podLabels": {"team": "payments"},
                "podAnnotations": {"example.com/scrape": "true"},
            }
        )
    )
    template = children.deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["containers"][0]["image"] == "registry.local/warmpool:2"
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"] == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    assert template["metadata"]["labels"]["team"] == "payments"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "echo"
    assert template["metadata"]["annotations"]["example.com/scrape"] == "true"
    assert ANNOTATION_CONFIG_HASH in template["metadata"]["annotations"]


def test_rollout_strategy_never_serves_cold() -> None:
    deployment = render(spec()).deployment
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert deployment["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "warmpool-runtime", "app.kubernetes.io/instance": "echo"}
    }


def test_config_hash_changes_exactly_when_the_runtime_config_does() -> None:
    def digest(pool: WarmPoolSpec) -> str:
        return str(render(pool).deployment["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH])

    base = digest(spec())
    assert digest(spec()) == base
    assert digest(spec(replicas=9)) == base
    assert digest(spec(runtime={"podLabels": {"a": "b"}})) == base
    assert digest(spec(warmInstancesPerTuple=6)) != base
    assert digest(spec(module={"sha256": SHA_B, "source": {"path": "/modules/echo.wasm"}})) != base
    assert digest(spec(limits={"timeoutMs": 50})) != base


def test_replica_count_is_left_out_when_someone_else_owns_it() -> None:
    assert render(spec(), replicas=3).deployment["spec"]["replicas"] == 3
    assert "replicas" not in render(spec(), replicas=None).deployment["spec"]


def test_who_owns_the_replica_count() -> None:
    manual = spec(replicas=3)
    auto = spec(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 8})
    scale_to_zero = spec(autoscaling={"enabled": True, "minReplicas": 0, "maxReplicas": 8})
    existing = {"spec": {"replicas": 5}}
    assert deployment_replicas(manual, None) == 3
    assert deployment_replicas(manual, existing) == 3
    assert deployment_replicas(auto, None) == 2
    assert deployment_replicas(auto, existing) is None
    assert deployment_replicas(scale_to_zero, None) == 1


def test_pod_metadata_dropped_from_the_spec_is_marked_absent() -> None:
    before = render(spec(runtime={"podLabels": {"team": "a", "tier": "b"}, "podAnnotations": {"x/y": "1"}}))
    recorded = before.deployment["metadata"]["annotations"]["tensorwasm.dev/pod-metadata-keys"]
    assert recorded == '{"annotations":["x/y"],"labels":["team","tier"]}'
    after = render(spec(runtime={"podLabels": {"tier": "b"}})).deployment
    marked = forget_dropped_pod_metadata(after, before.deployment)
    template = marked["spec"]["template"]["metadata"]
    assert template["labels"]["team"] is None
    assert template["labels"]["tier"] == "b"
    assert template["annotations"]["x/y"] is None
    assert after["spec"]["template"]["metadata"]["labels"].get("team") is None  # input untouched
    assert "team" not in after["spec"]["template"]["metadata"]["labels"]
    assert forget_dropped_pod_metadata(after, None) is after

"""Parsing and validation of WarmPool manifests: defaults, and errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.operator.harness import SHA_A, warmpool_manifest
from warmpool_operator.spec import (
    ConfigMapRef,
    SpecError,
    parse_meta,
    parse_spec,
    parse_warmpool,
)

pytestmark = pytest.mark.unit


def spec_with(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(warmpool_manifest()["spec"])
    spec.update(changes)
    return spec


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec({"tenant": "acme", "module": {"sha256": SHA_A, "source": {"url": "https://m.example/e.wasm"}}})
    assert (spec.warm_instances_per_tuple, spec.max_total_warm, spec.replicas) == (4, 256, 1)
    assert (spec.limits.memory_bytes, spec.limits.timeout_ms, spec.limits.fuel) == (64 * 1024 * 1024, 1000, None)
    assert spec.autoscaling.enabled is False
    assert spec.autoscaling.target_miss_ratio == 0.01
    assert spec.runtime.image is None
    assert spec.module.short_hash == SHA_A[:12]


def test_full_spec_is_parsed_into_frozen_values() -> None:
    spec = parse_spec(
        spec_with(
            module={"sha256": SHA_A, "source": {"configMapRef": {"name": "mods", "key": "echo.wasm"}}},
            autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5, "targetMissRatio": 0.05},
            limits={"memoryBytes": 1 << 20, "timeoutMs": 250, "fuel": 10_000},
            runtime={
                "image": "registry.local/warmpool:1",
                "resources": {"limits": {"cpu": "1"}},
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "wasm", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {}},
                "podLabels": {"team": "payments"},
                "podAnnotations": {"example.com/a": "b"},
            },
        )
    )
    assert spec.module.source.config_map == ConfigMapRef(name="mods", key="echo.wasm")
    assert (spec.autoscaling.enabled, spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (True, 2, 5)
    assert spec.limits.fuel == 10_000
    assert spec.runtime.node_selector == {"disk": "ssd"}
    assert spec.runtime.tolerations[0]["key"] == "wasm"
    with pytest.raises(TypeError):
        spec.runtime.pod_labels["team"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.tenant = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tenant": "Acme"}, "spec.tenant"),
        ({"tenant": "a" * 64}, "spec.tenant"),
        ({"tenant": None}, "spec.tenant"),
        ({"module": {"sha256": "ABC", "source": {"path": "/m.wasm"}}}, "spec.module.sha256"),
        ({"module": {"sha256": SHA_A.upper(), "source": {"path": "/m.wasm"}}}, "spec.module.sha256"),
        ({"module": {"sha256": SHA_A, "source": {}}}, "spec.module.source"),
        ({"module": {"sha256": SHA_A, "source": {"path": "/m", "url": "http://x/m"}}}, "spec.module.source"),
        ({"module": {"sha256": SHA_A, "source": {"path": "relative.wasm"}}}, "spec.module.source.path"),
        ({"module": {"sha256": SHA_A, "source": {"url": "ftp://x/m"}}}, "spec.module.source.url"),
        ({"module": {"sha256": SHA_A, "source": {"configMapRef": {"name": "M", "key": "k"}}}},
         "spec.module.source.configMapRef.name"),
        ({"module": {"sha256": SHA_A, "source": {"configMapRef": {"name": "m", "key": "a/b"}}}},
         "spec.module.source.configMapRef.key"),
        ({"module": {"sha256": SHA_A, "source": {"configMapRef": {"name": "m"}}}},
         "spec.module.source.configMapRef.key"),
        ({"warmInstancesPerTuple": -1}, "spec.warmInstancesPerTuple"),
        ({"warmInstancesPerTuple": 2.5}, "spec.warmInstancesPerTuple"),
        ({"warmInstancesPerTuple": True}, "spec.warmInstancesPerTuple"),
        ({"warmInstancesPerTuple": 8, "maxTotalWarm": 4}, "spec.maxTotalWarm"),
        ({"replicas": -1}, "spec.replicas"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        ({"autoscaling": {"targetMissRatio": 1.0}}, "spec.autoscaling.targetMissRatio"),
        ({"autoscaling": {"bogus": 1}}, "spec.autoscaling"),
        ({"limits": {"memoryBytes": 10}}, "spec.limits.memoryBytes"),
        ({"limits": {"timeoutMs": 0}}, "spec.limits.timeoutMs"),
        ({"runtime": {"image": ""}}, "spec.runtime.image"),
        ({"runtime": {"podLabels": {"app.kubernetes.io/name": "x"}}}, "spec.runtime.podLabels"),
        ({"runtime": {"podLabels": {"tensorwasm.dev/tenant": "x"}}}, "spec.runtime.podLabels"),
        ({"runtime": {"nodeSelector": {"a": 1}}}, "spec.runtime.nodeSelector"),
        ({"runtime": {"tolerations": {"key": "a"}}}, "spec.runtime.tolerations"),
        ({"autoscaling": {"minReplicas": 0}}, "spec.autoscaling.minReplicas"),
        ({"runtime": {"imagePullSecrets": [{"name": "Reg"}]}}, "spec.runtime.imagePullSecrets[0].name"),
        ({"runtime": {"imagePullSecrets": [{"name": "r"}, {"name": "r"}]}}, "spec.runtime.imagePullSecrets[1].name"),
        ({"runtime": {"imagePullSecrets": ["r"]}}, "spec.runtime.imagePullSecrets"),
        ({"runtime": {"serviceAccountName": "Runner"}}, "spec.runtime.serviceAccountName"),
        ({"runtime": {"automountServiceAccountToken": "yes"}}, "spec.runtime.automountServiceAccountToken"),
        ({"runtime": {"env": [{"name": "1=A", "value": "x"}]}}, "spec.runtime.env[0].name"),
        ({"runtime": {"env": [{"name": "WARMPOOL_PORT", "value": "1"}]}}, "spec.runtime.env[0].name"),
        ({"runtime": {"env": [{"name": "PYTHONPATH", "value": "/x"}]}}, "spec.runtime.env[0].name"),
        ({"runtime": {"env": [{"name": "LD_PRELOAD", "value": "/x"}]}}, "spec.runtime.env[0].name"),
        ({"runtime": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}, "spec.runtime.env[1].name"),
        ({"runtime": {"env": [{"name": "A"}]}}, "spec.runtime.env[0]"),
        ({"runtime": {"env": [{"name": "A", "value": 1}]}}, "spec.runtime.env[0].value"),
        ({"runtime": {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}},
         "spec.runtime.env[0].valueFrom"),
        ({"runtime": {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}},
         "spec.runtime.env[0].valueFrom.secretKeyRef.key"),
        ({"runtime": {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k",
                                                                             "optional": "no"}}}]}},
         "spec.runtime.env[0].valueFrom.configMapKeyRef.optional"),
        ({"runtime": {"topologySpreadConstraints": [{"topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}]}},
         "spec.runtime.topologySpreadConstraints[0].maxSkew"),
        ({"runtime": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "No"}]}},
         "spec.runtime.topologySpreadConstraints[0].whenUnsatisfiable"),
        ({"runtime": {"podDisruptionBudget": {}}}, "spec.runtime.podDisruptionBudget"),
        ({"runtime": {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}},
         "spec.runtime.podDisruptionBudget"),
        ({"runtime": {"podDisruptionBudget": {"minAvailable": "150%"}}},
         "spec.runtime.podDisruptionBudget.minAvailable"),
        ({"runtime": {"podDisruptionBudget": {"maxUnavailable": -1}}},
         "spec.runtime.podDisruptionBudget.maxUnavailable"),
        ({"surprise": 1}, "spec"),
    ],
)
def test_invalid_specs_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(**changes))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_a_missing_spec_is_reported_as_such() -> None:
    with pytest.raises(SpecError, match=r"^spec: is required"):
        parse_spec(None)


@pytest.mark.parametrize("name", ["Echo", "1echo", "echo_1", "e" * 64])
def test_pool_names_must_also_be_valid_service_names(name: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_meta({"name": name, "namespace": "pools", "uid": "u"})
    assert caught.value.field == "metadata.name"


def test_whole_object_parse_keeps_identity_and_status() -> None:
    body = warmpool_manifest("echo")
    body["metadata"].update(namespace="pools", uid="u-1", generation=3)
    body["status"] = {"observedGeneration": 2}
    pool = parse_warmpool(body)
    assert (pool.meta.name, pool.meta.namespace, pool.meta.uid, pool.meta.generation) == ("echo", "pools", "u-1", 3)
    assert pool.status["observedGeneration"] == 2


def test_runtime_pod_settings_are_parsed() -> None:
    runtime = parse_spec(
        spec_with(
            runtime={
                "imagePullSecrets": [{"name": "registry"}, {"name": "mirror"}],
                "serviceAccountName": "runner",
                "env": [
                    {"name": "MODE", "value": "fast"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                    {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "region",
                                                                         "optional": True}}},
                ],
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
                ],
                "podDisruptionBudget": {"maxUnavailable": "25%"},
            }
        )
    ).runtime
    assert runtime.image_pull_secrets == ("registry", "mirror")
    assert runtime.service_account_name == "runner"
    assert runtime.automount_service_account_token is False
    assert [var["name"] for var in runtime.env] == ["MODE", "TOKEN", "REGION"]
    assert runtime.env[1]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "token"}
    assert runtime.env[2]["valueFrom"]["configMapKeyRef"]["optional"] is True
    assert runtime.topology_spread_constraints[0]["maxSkew"] == 1
    assert (runtime.pod_disruption_budget.min_available, runtime.pod_disruption_budget.max_unavailable) == (
        None, "25%")  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        runtime.env[0]["value"] = "slow"  # type: ignore[index]


def test_runtime_pod_settings_default_to_none_and_no_token() -> None:
    runtime = parse_spec(spec_with()).runtime
    assert (runtime.image_pull_secrets, runtime.service_account_name, runtime.env) == ((), None, ())
    assert runtime.automount_service_account_token is False
    assert runtime.pod_disruption_budget is None
    assert parse_spec(spec_with(runtime={"automountServiceAccountToken": True})).runtime.automount_service_account_token


def test_scale_to_zero_is_refused_with_the_reason() -> None:
    with pytest.raises(SpecError, match=r"scale to zero is not supported.*no activator buffers the first invocation"):
        parse_spec(spec_with(autoscaling={"enabled": True, "minReplicas": 0, "maxReplicas": 3}))

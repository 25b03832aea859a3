"""Rendering of every child object from a parsed spec (pure), checked field by field."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import yaml

from tests.operator.harness import SHA_A, SHA_B, warmpool_manifest
from warmpool.cli import build_parser
from warmpool_operator.diff import parse_quantity
from warmpool_operator.ownership import carried_replicas, deployment_replicas
from warmpool_operator.render import (
    ANNOTATION_APPLIED,
    ANNOTATION_BUDGET,
    ANNOTATION_CONFIG_HASH,
    BASE_MEMORY_BYTES,
    COLD_INSTANCES,
    Children,
    RenderOptions,
    applied_hash,
    render_children,
    selector_labels,
    selector_string,
)
from warmpool_operator.runtime_config import DRAIN_SECONDS
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
        "settings": {"drainSeconds": 5, "shutdownTimeoutSeconds": 8},
        "limits": {"memoryBytes": 67108864, "timeoutMs": 1000, "fuel": 5000},
        "tuples": [
            {"tenant": "acme", "module": {"sha256": SHA_A, "source": rendered}, "warmInstancesPerTuple": 4}
        ],
    }
    parsed = parse_config(document)  # the runtime's own parser, as the pod will run it
    assert parsed.tuples[0].tenant == "acme"
    assert (parsed.settings.drain_seconds, parsed.settings.shutdown_timeout_seconds) == (5, 8)


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
    assert container["args"] == ["--config", "/etc/warmpool/runtime.yaml", "--port", "8080", "--log-format", "json"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
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
    # Unset scheduling fields are left out of the intent: another manager may set them.
    assert not {"nodeSelector", "tolerations", "affinity"} & set(pod)


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
    # The user's resources win; a memory limit given means no default memory request.
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
    existing = {"spec": {"replicas": 5}}
    assert deployment_replicas(manual, None) == 3
    assert deployment_replicas(manual, existing) == 3
    assert deployment_replicas(auto, None) == 2
    assert deployment_replicas(auto, existing) is None


def test_the_autoscaler_s_replica_count_is_carried_not_decided() -> None:
    manual = spec(replicas=3)
    auto = spec(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 8})
    assert carried_replicas(auto, {"spec": {"replicas": 5}}) == 5
    assert carried_replicas(auto, None) == 2  # the first size
    assert carried_replicas(manual, {"spec": {"replicas": 5}}) is None  # rendered: the spec owns them


def test_each_child_carries_the_hash_of_its_intent() -> None:
    for obj in render(spec()).all():
        assert obj["metadata"]["annotations"][ANNOTATION_APPLIED] == applied_hash(obj)
    before = render(spec(runtime={"podLabels": {"team": "a"}})).deployment
    after = render(spec()).deployment
    # Dropping a label changes the intent although every field still rendered is unchanged.
    assert before["metadata"]["annotations"][ANNOTATION_APPLIED] != after["metadata"]["annotations"][ANNOTATION_APPLIED]
    assert applied_hash(render(spec()).deployment) == applied_hash(after)


def test_start_up_is_covered_by_a_startup_probe_and_liveness_only_checks_the_process() -> None:
    container = pod_spec(render(spec()))["containers"][0]
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert liveness["httpGet"]["path"] == "/healthz"
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    longer = pod_spec(render(spec(runtime={"startupSeconds": 900})))["containers"][0]["startupProbe"]
    assert longer["periodSeconds"] * longer["failureThreshold"] >= 900


def test_default_requests_and_a_memory_limit_from_the_warm_set() -> None:
    # Proven here and not on the local control plane: its node agent runs pods as plain processes and
    # enforces no cgroup memory limit, so a kernel OOM kill cannot be produced there. The runtime's side
    # (memory growth past limits.memoryBytes refused) is tests/runtime/test_guest_failures.py.
    resources = pod_spec(render(spec(warmInstancesPerTuple=4, limits={"memoryBytes": 32 << 20})))["containers"][0][
        "resources"
    ]
    assert set(resources["requests"]) == {"cpu", "memory"}
    limit = parse_quantity(resources["limits"]["memory"])
    assert limit == (4 + COLD_INSTANCES) * (32 << 20) + BASE_MEMORY_BYTES
    assert "cpu" not in resources["limits"]


def test_memory_limit_follows_the_warm_set_capped_by_max_total_warm() -> None:
    def limit(**changes: Any) -> Any:
        return parse_quantity(pod_spec(render(spec(**changes)))["containers"][0]["resources"]["limits"]["memory"])

    assert limit(warmInstancesPerTuple=8, maxTotalWarm=16) > limit(warmInstancesPerTuple=4, maxTotalWarm=16)
    assert limit(warmInstancesPerTuple=8, maxTotalWarm=8, limits={"memoryBytes": 1 << 30}) >= 8 << 30


def test_user_resources_win_over_the_defaults() -> None:
    def resources(given: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = pod_spec(render(spec(runtime={"resources": given})))["containers"][0]["resources"]
        return found

    assert resources({"limits": {"memory": "1Gi", "cpu": "2"}})["limits"] == {"memory": "1Gi", "cpu": "2"}
    # A limit without a request: the API server requests the limit, no default is added under it.
    assert resources({"limits": {"memory": "1Gi", "cpu": "2"}})["requests"] == {}
    assert resources({"requests": {"cpu": "1", "memory": "200Mi"}})["requests"] == {"cpu": "1", "memory": "200Mi"}
    big = resources({"requests": {"memory": "64Gi"}})
    assert big["limits"]["memory"] == f"{64 << 10}Mi"  # never below what is requested


def test_grace_period_outlasts_the_drain_window_and_the_longest_call() -> None:
    for timeout_ms in (1000, 30_000):
        children = render(spec(limits={"timeoutMs": timeout_ms}))
        grace = pod_spec(children)["terminationGracePeriodSeconds"]
        settings = config(children)["settings"]
        assert settings["drainSeconds"] == DRAIN_SECONDS
        assert settings["shutdownTimeoutSeconds"] >= DRAIN_SECONDS + timeout_ms / 1000
        assert grace > settings["shutdownTimeoutSeconds"]
    # No preStop hook: there is no shell in the image, the runtime drains by itself.
    assert "lifecycle" not in pod_spec(render(spec()))["containers"][0]


def test_pod_settings_reach_the_pod_template() -> None:
    env = [
        {"name": "MODE", "value": "fast"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]
    pod = pod_spec(render(spec(runtime={
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccountName": "runner",
        "env": env,
    })))
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "runner"
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["env"] == env


def test_without_pod_settings_the_namespace_default_account_runs_without_token() -> None:
    pod = pod_spec(render(spec()))
    assert "serviceAccountName" not in pod
    assert "imagePullSecrets" not in pod
    assert "env" not in pod["containers"][0]
    assert "topologySpreadConstraints" not in pod
    assert pod["automountServiceAccountToken"] is False
    assert pod_spec(render(spec(runtime={"automountServiceAccountToken": True})))["automountServiceAccountToken"]


def test_spread_constraints_select_the_pool_s_pods_unless_told_otherwise() -> None:
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    own = {**zone, "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"team": "a"}}}
    pod = pod_spec(render(spec(runtime={"topologySpreadConstraints": [zone, own]})))
    defaulted, kept = pod["topologySpreadConstraints"]
    assert defaulted == {**zone, "labelSelector": {"matchLabels": selector_labels("echo")}}
    assert kept == own


@pytest.mark.parametrize(("given", "field", "value"), [
    ({"minAvailable": 1}, "minAvailable", 1),
    ({"maxUnavailable": "50%"}, "maxUnavailable", "50%"),
])
def test_disruption_budget_selects_the_pool_s_pods(given: dict[str, Any], field: str, value: Any) -> None:
    children = render(spec(runtime={"podDisruptionBudget": given}))
    budget = children.disruption_budget
    assert budget is not None
    assert (budget["apiVersion"], budget["kind"], budget["metadata"]["name"]) == (
        "policy/v1", "PodDisruptionBudget", "echo")
    assert budget["spec"] == {"selector": {"matchLabels": selector_labels("echo")}, field: value}
    assert budget["metadata"]["ownerReferences"][0]["uid"] == META.uid
    assert budget["metadata"]["annotations"][ANNOTATION_APPLIED] == applied_hash(budget)
    assert children.all()[-1] is budget
    # The Deployment says a budget exists, so that removing the field can delete it.
    assert children.deployment["metadata"]["annotations"][ANNOTATION_BUDGET] == "echo"


def test_no_disruption_budget_unless_asked() -> None:
    children = render(spec())
    assert children.disruption_budget is None
    assert [obj["kind"] for obj in children.all()] == ["ConfigMap", "Service", "Deployment"]
    assert ANNOTATION_BUDGET not in children.deployment["metadata"].get("annotations", {})


def test_a_fleet_s_pods_get_the_same_runtime_settings_and_budget() -> None:
    from warmpool_operator.runtimefleet import render as fleet_render
    from warmpool_operator.runtimefleet.spec import parse_fleet

    spread = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    runtime = {
        "serviceAccountName": "runner",
        "imagePullSecrets": [{"name": "registry"}],
        "env": [{"name": "MODE", "value": "fast"}],
        "topologySpreadConstraints": [spread],
        "podDisruptionBudget": {"maxUnavailable": 1},
    }
    fleet = parse_fleet({"metadata": {"name": "prod", "namespace": "shared", "uid": "fleet-uid", "generation": 1},
                         "spec": {"runtime": runtime}})
    children = fleet_render.render_children(fleet, (), options=OPTIONS, replicas=2)
    pod = children.deployment["spec"]["template"]["spec"]
    selector = fleet_render.selector_labels("prod")
    assert (pod["serviceAccountName"], pod["imagePullSecrets"]) == ("runner", [{"name": "registry"}])
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["env"] == [{"name": "MODE", "value": "fast"}]
    assert pod["topologySpreadConstraints"] == [{**spread, "labelSelector": {"matchLabels": selector}}]
    budget = children.disruption_budget
    assert budget is not None
    assert budget["spec"] == {"selector": {"matchLabels": selector}, "maxUnavailable": 1}
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "fleet-uid"
    assert children.all()[-1] is budget
    assert children.deployment["metadata"]["annotations"][ANNOTATION_BUDGET] == budget["metadata"]["name"]
    plain = fleet_render.render_children(parse_fleet({**fleet_body_of(fleet), "spec": {}}), (), options=OPTIONS,
                                         replicas=2)
    assert plain.disruption_budget is None


def fleet_body_of(fleet: Any) -> dict[str, Any]:
    meta = fleet.meta
    return {"metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid, "generation": 1}}


def test_the_runtime_log_format_follows_the_operator_setting() -> None:
    pool = spec()
    text = render_children(META, pool, options=dataclasses.replace(OPTIONS, log_format="text"), replicas=1)
    (container,) = pod_spec(text)["containers"]
    assert container["args"][-2:] == ["--log-format", "text"]
    runtime_args = build_parser().parse_args(["runtime", "serve", *container["args"]])
    assert runtime_args.log_format == "text"

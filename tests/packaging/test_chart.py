"""The Helm chart: lint, render with several value sets, and check what Kubernetes would be given."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.helm import CHART, Helm
from tests.packaging.podsecurity import read_only_root_violations, restricted_violations
from warmpool.cli import build_parser
from warmpool_contract import LOG_FORMATS
from warmpool_operator.settings import ENV_PREFIX, OperatorConfig, config_from_env

pytestmark = pytest.mark.unit

NAMESPACED = {"watch": {"mode": "namespaced", "namespaces": ["team-a", "team-b"]}}
MONITORED = {
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": NAMESPACED,
    "namespaced-release-namespace-only": {"watch": {"mode": "namespaced"}},
    "monitored": MONITORED,
    "namespaced-monitored": {**NAMESPACED, **MONITORED},
    "no-dashboard-no-peering": {"dashboard": {"enabled": False}, "peering": {"enabled": False}},
    "token-secrets-unwatched": {**NAMESPACED, "rbac": {"watchTokenSecrets": False}},
    "tuned": {
        "replicaCount": 2,
        "updateStrategy": "RollingUpdate",
        "image": {"repository": "registry.example/warmpool", "digest": "sha256:" + "ab" * 32},
        "runtime": {"image": {"repository": "registry.example/warmpool-runtime", "tag": "1.2.3"},
                    "imagePullPolicy": "Always", "logFormat": "text"},
        "settings": {"resyncSeconds": 10, "retryBackoffSeconds": [0.5, 3], "maxProbedPods": 2},
        "logFormat": "plain",
        "verbose": True,
        "peering": {"name": "blue", "priority": 100, "lifetimeSeconds": 45},
        "metrics": {"port": 9100},
        "health": {"port": 8088},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "wasm", "effect": "NoSchedule"}],
        "imagePullSecrets": ["regcred"],
        "priorityClassName": "system-cluster-critical",
        "podLabels": {"team": "platform"},
        "podAnnotations": {"example.com/owner": "platform"},
    },
    "conventions": {
        "global": {"imageRegistry": "mirror.example", "imagePullSecrets": ["mirror"], "storageClass": "fast"},
        "crds": {"keep": False},
        "serviceAccount": {"name": "warmpool", "annotations": {"example.com/role": "operator"}},
        "replicaCount": 2,
        "podDisruptionBudget": {"minAvailable": None, "maxUnavailable": 1},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "DoNotSchedule"}],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "extraArgs": ["--lease-name=warmpool-blue"],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
    },
}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


AGGREGATE_LABELS = ("rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-view")


def operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every object but the ClusterRoles aggregated into users' built-in roles (they are not the operator's)."""
    return [doc for doc in docs
            if not set(AGGREGATE_LABELS) & set((doc.get("metadata") or {}).get("labels") or {})]


def rules(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The rules of the operator's own Roles and ClusterRoles."""
    for doc in operator_roles(docs):
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc.get("rules") or []:
                yield doc, rule


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, list[dict[str, Any]]]:
    return {name: helm.template(values, name=name) for name, values in VALUE_SETS.items()}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_lints_clean(helm: Helm, name: str) -> None:
    result = helm.lint(VALUE_SETS[name], name=f"lint-{name}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_defaults_render_the_cluster_wide_install(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    kinds = sorted(doc["kind"] for doc in docs if doc["kind"] != "CustomResourceDefinition")
    # The peering object is the operator's to create when the CRDs come with the release (see
    # templates/operator-peering.yaml); the Pod is the `helm test` hook.
    assert kinds == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "Service",
         "Deployment", "ConfigMap", "Role", "RoleBinding", "Pod"]
    )
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": one(operator_roles(docs), "ClusterRole")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "warmpool-system"}]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert not by_kind(docs, "ClusterKopfPeering")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_operator_pod_meets_pod_security_restricted(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    pod = one(rendered[name], "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert read_only_root_violations(pod) == []
    # No fixed UID: the image's USER applies, or the platform's (OpenShift assigns one per namespace).
    assert "runAsUser" not in pod["securityContext"]
    assert all("runAsUser" not in c["securityContext"] for c in pod["containers"])


def test_pod_security_check_catches_each_gap() -> None:
    """The checker itself: a pod with every hole is reported hole by hole."""
    bad = {
        "hostNetwork": True,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                        "ports": [{"containerPort": 80, "hostPort": 80}]}],
    }
    problems = "\n".join(restricted_violations(bad))
    for expected in ("hostNetwork", "hostPath", "privileged", "allowPrivilegeEscalation", "runAsNonRoot",
                     "drop ALL", "SYS_ADMIN", "seccompProfile", "hostPort"):
        assert expected in problems
    assert read_only_root_violations(bad) == ["c: readOnlyRootFilesystem is not true"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rbac_has_no_wildcards_no_secrets_no_escalation(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    seen = 0
    for role, rule in rules(rendered[name]):
        seen += 1
        where = f"{role['kind']} {role['metadata']['name']}: {rule}"
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (rule.get(key) or []), where
        assert "nonResourceURLs" not in rule, where
        if "secrets" in (rule.get("resources") or []):
            # A Secret a module source names: checked to exist (get). Fleet tokens: a member's auth
            # Secret read, the digest Secret applied; listed and watched only for prompt rotation.
            allowed = {"get", "create", "patch"} | ({"list", "watch"} if name != "token-secrets-unwatched" else set())
            assert set(rule["verbs"]) <= allowed, where
        # The one delete: a PodDisruptionBudget a pool no longer asks for.
        deletes = rule.get("resources") != ["poddisruptionbudgets"]
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), where
        assert not deletes or "delete" not in rule["verbs"], where
        assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings", "pods/exec", "nodes"} & set(
            rule.get("resources") or []
        ), where
    assert seen > 0


def granted(docs: list[dict[str, Any]], kind: str, group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for role, rule in rules(docs):
        if role["kind"] == kind and group in rule["apiGroups"] and resource in rule["resources"]:
            verbs.update(rule["verbs"])
    return verbs


PEERING_VERBS = {"get", "list", "watch", "patch", "create"}
"""kopf records liveness in the peering object; the operator creates it at startup when missing."""

# What the operator does to each resource (warmpool_operator.kube and kopf's own needs).
NEEDED = {
    ("tensorwasm.dev", "warmpools"): {"get", "list", "watch", "patch"},
    ("tensorwasm.dev", "warmpools/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list"},
    ("", "events"): {"create"},
    ("tensorwasm.dev", "runtimefleets"): {"get", "list", "watch", "patch"},
    ("tensorwasm.dev", "runtimefleets/status"): {"patch"},
    ("", "secrets"): {"get", "create", "patch"},
}


def test_secrets_are_watched_for_token_rotation_unless_turned_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert {"list", "watch"} <= granted(rendered["defaults"], "ClusterRole", "", "secrets")
    for role in pool_roles(rendered["namespaced"], "Role"):
        assert {"list", "watch"} <= granted([role], "Role", "", "secrets")
    for role in pool_roles(rendered["token-secrets-unwatched"], "Role"):
        assert granted([role], "Role", "", "secrets") == {"get", "create", "patch"}


def test_cluster_mode_grants_what_the_operator_does(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    for (group, resource), verbs in NEEDED.items():
        assert verbs <= granted(docs, "ClusterRole", group, resource), (group, resource)
    assert granted(docs, "ClusterRole", "kopf.dev", "clusterkopfpeerings") == PEERING_VERBS
    assert granted(docs, "ClusterRole", "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    (lease_role,) = by_kind(docs, "Role")  # leader election only, in the release namespace
    assert lease_role["metadata"]["namespace"] == "warmpool-system"
    assert granted([lease_role], "Role", "coordination.k8s.io", "leases") == {"get", "create", "update", "patch"}


def pool_roles(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Roles (or bindings) for the watched namespaces, without leader election's Lease role."""
    return [doc for doc in by_kind(docs, kind) if not doc["metadata"]["name"].endswith("-leader-election")]


def test_namespaced_mode_uses_a_role_per_watched_namespace(
    helm: Helm, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered["namespaced"]
    roles = pool_roles(docs, "Role")
    bindings = pool_roles(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        single = [role]
        for (group, resource), verbs in NEEDED.items():
            assert verbs <= granted(single, "Role", group, resource), (role["metadata"]["namespace"], resource)
        assert granted(single, "Role", "kopf.dev", "kopfpeerings") == PEERING_VERBS
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "warmpool-system"
    # Cluster-wide, only read-only discovery of CRDs and namespaces remains.
    (cluster_role,) = by_kind(operator_roles(docs), "ClusterRole")
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"list", "watch"}
        assert set(rule["resources"]) <= {"customresourcedefinitions", "namespaces"}
    assert not by_kind(docs, "ClusterKopfPeering")
    external = helm.template({**NAMESPACED, "crds": {"install": False}}, name="namespaced-external-crds")
    assert sorted(p["metadata"]["namespace"] for p in by_kind(external, "KopfPeering")) == ["team-a", "team-b"]


def test_namespaced_mode_defaults_to_the_release_namespace(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["namespaced-release-namespace-only"]
    assert [r["metadata"]["namespace"] for r in pool_roles(docs, "Role")] == ["warmpool-system"]
    args = build_parser().parse_args(argv_of(operator_container(docs))[1:])
    assert args.namespaces == ["warmpool-system"]


def argv_of(container: Mapping[str, Any]) -> list[str]:
    return [*container["command"], *container["args"]]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_operator_command_is_a_valid_warmpool_operator_run(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    container = operator_container(rendered[name])
    argv = argv_of(container)
    assert argv[0] == "warmpool"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.operator_command) == ("operator", "run")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.metrics_port == ports["metrics"]
    assert args.health_port == ports["health"]
    values = VALUE_SETS[name]
    if values.get("watch", {}).get("mode") == "namespaced":
        assert args.all_namespaces is False
        assert args.namespaces == values["watch"].get("namespaces", ["warmpool-system"])
    else:
        assert args.all_namespaces is True
    peering = values.get("peering", {})
    if peering.get("enabled", True):
        assert args.peering_name == peering.get("name", "warmpool")
        assert args.standalone is None
    else:
        assert args.standalone is True


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def test_default_settings_are_the_operators_own(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env = env_of(operator_container(rendered["defaults"]))
    config = config_from_env(env)
    assert config.runtime_image == "warmpool-runtime:0.1.0"
    assert dataclasses.replace(config, runtime_image=OperatorConfig().runtime_image) == OperatorConfig()


def test_settings_values_reach_the_operator(rendered: dict[str, list[dict[str, Any]]]) -> None:
    container = operator_container(rendered["tuned"])
    config = config_from_env(env_of(container))
    assert config.runtime_image == "registry.example/warmpool-runtime:1.2.3"
    assert config.image_pull_policy == "Always"
    assert config.runtime_log_format == "text"
    assert config.resync_seconds == 10
    assert config.retry_backoff_seconds == (0.5, 3.0)
    assert config.max_probed_pods == 2
    assert config.peering_lifetime_seconds == 45
    assert container["image"] == "registry.example/warmpool@sha256:" + "ab" * 32
    args = build_parser().parse_args(argv_of(container)[1:])
    assert (args.peering_name, args.priority, args.log_format, args.verbose) == ("blue", 100, "plain", True)


def test_every_operator_setting_is_reachable_from_the_chart(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """A setting the operator gains fails here until the chart passes it on (or this list says why not)."""
    container = operator_container(rendered["tuned"])
    from_env = {name.removeprefix(ENV_PREFIX).lower() for name in env_of(container)}
    args = vars(build_parser().parse_args(argv_of(container)[1:]))
    fields = set(OperatorConfig.__dataclass_fields__)
    from_flags = {key for key, value in args.items() if value is not None and key in fields}
    from_flags.add("standalone")  # --standalone, rendered when peering.enabled is false
    from_flags.add("defaults")  # the `defaults` value, as a mounted file (tests/packaging/test_chart_defaults.py)
    # Bound to all interfaces by the operator's default, which is what a pod needs.
    not_exposed = {"metrics_host", "health_host"}
    assert fields - from_env - from_flags == not_exposed


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_operator_has_probes_and_resources(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    container = operator_container(rendered[name])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container[probe]["periodSeconds"] > 0
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


def test_metrics_service_targets_the_operator_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    service = one(docs, "Service")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
                                        {"name": "health", "port": 8081, "targetPort": "health", "protocol": "TCP"}]


def test_monitoring_objects_only_when_asked(rendered: dict[str, list[dict[str, Any]]]) -> None:
    monitoring = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not monitoring & {doc["kind"] for doc in rendered["defaults"]}
    assert monitoring <= {doc["kind"] for doc in rendered["monitored"]}


def test_pod_monitor_selects_the_runtime_pods_the_operator_creates(rendered: dict[str, list[dict[str, Any]]]) -> None:
    from warmpool_operator.render import RenderOptions, render_children
    from warmpool_operator.spec import parse_warmpool

    pool = parse_warmpool({
        "metadata": {"name": "echo", "namespace": "team-a", "uid": "u-1", "generation": 1},
        "spec": {"tenant": "acme", "module": {"sha256": "b" * 64, "source": {"url": "http://m/echo.wasm"}}},
    })
    deployment = render_children(pool.meta, pool.spec, options=RenderOptions(default_image="x"), replicas=1).deployment
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (port,) = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    for name in ("monitored", "namespaced-monitored"):
        monitor = one(rendered[name], "PodMonitor")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == port["name"]
    assert one(rendered["monitored"], "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}
    assert one(rendered["namespaced-monitored"], "PodMonitor")["spec"]["namespaceSelector"] == {
        "matchNames": ["team-a", "team-b"]
    }


def test_dashboard_configmap_holds_the_dashboard_file(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (config_map,) = by_kind(rendered["defaults"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "warmpool.json").read_text()
    assert json.loads(config_map["data"]["warmpool.json"]) == json.loads(shipped)
    assert not by_kind(rendered["no-dashboard-no-peering"], "ConfigMap")


def test_standalone_install_has_no_peering_objects(helm: Helm, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["no-dashboard-no-peering"]
    assert not by_kind(docs, "ClusterKopfPeering")
    assert not by_kind(helm.template({"peering": {"enabled": False}, "crds": {"install": False}}, name="standalone"),
                       "ClusterKopfPeering")
    assert not granted(docs, "ClusterRole", "kopf.dev", "clusterkopfpeerings")


def test_several_replicas_without_peering_are_refused(helm: Helm) -> None:
    result = helm.template_result({"replicaCount": 2, "peering": {"enabled": False}}, name="unsafe")
    assert result.returncode != 0
    assert "replicaCount > 1 needs peering.enabled=true" in result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"imageTag": "1.0"}, "additional properties 'imageTag' not allowed"),
        ({"image": {"tagg": "1.0"}}, "additional properties 'tagg' not allowed"),
        ({"metrics": {"podMonitor": {"enable": True}}}, "additional properties 'enable' not allowed"),
        ({"settings": {"resyncSecond": 5}}, "additional properties 'resyncSecond' not allowed"),
        ({"watch": {"mode": "everywhere"}}, "at '/watch/mode': value must be one of"),
        ({"settings": {"resyncSeconds": -1}}, "at '/settings/resyncSeconds'"),
        ({"tolerations": [{"key": "a", "operatr": "Exists"}]}, "additional properties 'operatr' not allowed"),
    ],
)
def test_schema_refuses_unknown_and_invalid_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    result = helm.template_result(values, name="bad")
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def schema_objects(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    types = node.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from schema_objects(child, f"{path}.{key}")
    if isinstance(node.get("items"), Mapping):
        yield from schema_objects(node["items"], f"{path}[]")


OPEN_OBJECTS = {
    # Shared with a parent chart's other subcharts: their keys must pass.
    ".global",
    # Kubernetes objects handed to the API server as they are (it validates them).
    ".podSecurityContext", ".securityContext", ".affinity", ".topologySpreadConstraints[]", ".extraEnv[]",
    ".extraVolumes[]", ".extraVolumeMounts[]",
    # WarmPool spec fields, checked by the operator with the CRD's own rules when it starts.
    ".defaults",
}


def test_the_runtime_log_formats_are_the_runtimes_own() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert tuple(schema["properties"]["runtime"]["properties"]["logFormat"]["enum"]) == LOG_FORMATS


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = list(schema_objects(schema))
    assert len(objects) > 20
    assert {path for path, _ in objects} >= OPEN_OBJECTS
    for path, node in objects:
        if path in OPEN_OBJECTS:
            continue
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path or '<root>'} allows unknown keys"
        else:
            # A map of labels or annotations: any key, but string values only.
            assert extra == {"type": "string"}, f"{path} is an open object"


def documented_leaves(
    node: yaml.Node, schema: Mapping[str, Any], lines: list[str], prefix: str = ""
) -> Iterator[tuple[str, bool]]:
    """(path, documented) for every leaf value; a leaf is documented by a `# --` comment block above it."""
    assert isinstance(node, yaml.MappingNode), prefix
    names = [key.value for key, _ in node.value]
    assert sorted(names) == sorted(schema["properties"]), f"{prefix or '<root>'}: values and schema keys differ"
    for key, value in node.value:
        path = f"{prefix}.{key.value}"
        child = schema["properties"][key.value]
        if "properties" in child:
            yield from documented_leaves(value, child, lines, path)
            continue
        above = key.start_mark.line - 1
        while above >= 0 and lines[above].strip().startswith("#") and not lines[above].strip().startswith("# --"):
            above -= 1
        yield path, above >= 0 and lines[above].strip().startswith("# --")


def test_every_value_is_in_the_schema_and_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    root = yaml.compose(text)
    assert root is not None
    leaves = dict(documented_leaves(root, schema, text.splitlines()))
    assert len(leaves) > 40
    assert [path for path, documented in leaves.items() if not documented] == []


def test_chart_crds_are_the_repositorys_crds_byte_for_byte() -> None:
    source = Path(CHART).parents[1] / "crds"
    # Helm would install a crds/ directory on its own, beside templates/crds.yaml: it must not come back.
    assert not (CHART / "crds").exists(), "move the chart's crds/ away: run python -m tools.sync_chart_crds"
    ours = {p.name: p.read_bytes() for p in sorted((CHART / "files" / "crds").glob("*.yaml"))}
    theirs = {p.name: p.read_bytes() for p in sorted(source.glob("*.yaml"))}
    assert ours.keys() == theirs.keys(), "run python -m tools.sync_chart_crds"
    for name, data in theirs.items():
        assert ours[name] == data, f"the chart's files/crds/{name} differs: run python -m tools.sync_chart_crds"


def test_crd_sync_tool_reports_and_repairs_drift(tmp_path: Path) -> None:
    from tools.sync_chart_crds import differences, main, sync

    assert main(["--check"]) == 0
    source, target = tmp_path / "crds", tmp_path / "chart-crds"
    source.mkdir()
    target.mkdir()
    (source / "a.yaml").write_text("kind: A\n")
    (source / "b.yaml").write_text("kind: B\n")
    (target / "a.yaml").write_text("kind: A  # edited by hand\n")
    (target / "old.yaml").write_text("kind: Old\n")
    assert differences(source, target) == ["missing in the chart: b.yaml", "not in crds/: old.yaml", "differs: a.yaml"]
    sync(source, target)
    assert differences(source, target) == []
    assert sorted(p.name for p in target.iterdir()) == ["a.yaml", "b.yaml"]


def test_notes_tell_the_next_steps(helm: Helm) -> None:
    notes = helm.notes()
    assert "watches WarmPools in every namespace" in notes
    assert "kubectl -n warmpool-system rollout status deployment/wp-warmpool-operator" in notes
    assert "kubectl wait warmpool/NAME --for=condition=Ready" in notes
    assert "helm test wp -n warmpool-system" in notes
    assert "Grafana dashboard: ConfigMap wp-warmpool-operator-dashboard" in notes
    scoped = helm.notes({**NAMESPACED, **MONITORED, "dashboard": {"enabled": False}})
    assert "watches WarmPools in: team-a, team-b" in scoped
    assert "(ServiceMonitor created)" in scoped
    assert "(PodMonitor created)" in scoped
    assert "Grafana dashboard" not in scoped

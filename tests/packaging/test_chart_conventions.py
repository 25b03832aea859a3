"""The chart's ecosystem conventions: disruption budget, scheduling and extension values, optional
CRDs/RBAC/ServiceAccount, user roles, overridable security contexts, `global`, `helm test`, the values table."""

from __future__ import annotations

import copy
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.helm import CHART, KUBE_VERSION, Helm
from tests.packaging.podsecurity import read_only_root_violations, restricted_violations
from tests.packaging.test_chart import argv_of, by_kind, env_of, one, operator_container
from warmpool.cli import build_parser
from warmpool_operator.settings import config_from_env

pytestmark = pytest.mark.unit

ROOT = CHART.parents[1]
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


# -- 1. Disruption budget, scheduling, extension values


def test_one_replica_has_no_disruption_budget_unless_asked(helm: Helm) -> None:
    assert not by_kind(helm.template(), "PodDisruptionBudget")
    (budget,) = by_kind(helm.template({"podDisruptionBudget": {"enabled": True}}, name="pdb-on"),
                        "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1


def test_several_replicas_get_a_disruption_budget_selecting_the_operator_pods(helm: Helm) -> None:
    docs = helm.template({"replicaCount": 3}, name="three")
    budget = one(docs, "PodDisruptionBudget")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["metadata"]["namespace"] == "warmpool-system"


def test_disruption_budget_takes_max_unavailable_instead(helm: Helm) -> None:
    docs = helm.template({"replicaCount": 2, "podDisruptionBudget": {"minAvailable": None, "maxUnavailable": "50%"}},
                         name="pdb-max")
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "selector": one(docs, "Deployment")["spec"]["selector"], "maxUnavailable": "50%",
    }
    both = helm.template_result({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}, name="pdb-both")
    assert both.returncode != 0
    assert "set minAvailable or maxUnavailable, not both" in both.stderr


SCHEDULING: dict[str, Any] = {
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "wasm", "effect": "NoSchedule"}],
    "priorityClassName": "system-cluster-critical",
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}},
    }]}},
    "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
    }],
}


def test_scheduling_values_reach_the_operator_pod(helm: Helm) -> None:
    pod = pod_spec(helm.template(SCHEDULING, name="scheduling"))
    for key, value in SCHEDULING.items():
        assert pod[key] == value, key
    defaults = pod_spec(helm.template())
    assert not {"affinity", "topologySpreadConstraints", "nodeSelector", "tolerations", "priorityClassName"} & set(
        defaults)


EXTRAS: dict[str, Any] = {
    "extraEnv": [
        {"name": "WARMPOOL_OPERATOR_MAX_PROBED_PODS", "value": "9"},
        {"name": "HTTPS_PROXY", "valueFrom": {"configMapKeyRef": {"name": "proxy", "key": "url"}}},
    ],
    "extraArgs": ["--lease-name=blue-lease"],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
}


def test_extra_env_args_volumes_and_mounts_reach_the_operator(helm: Helm) -> None:
    docs = helm.template(EXTRAS, name="extras")
    container = operator_container(docs)
    env = container["env"]
    assert env[-2:] == EXTRAS["extraEnv"]
    literal = {item["name"]: item["value"] for item in env if "value" in item}
    assert config_from_env(literal).max_probed_pods == 9  # the later duplicate wins, as in the kubelet
    args = build_parser().parse_args(argv_of(container)[1:])
    assert args.lease_name == "blue-lease"
    assert (args.command, args.operator_command, args.all_namespaces) == ("operator", "run", True)
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, *EXTRAS["extraVolumeMounts"]]
    pod = pod_spec(docs)
    assert pod["volumes"][1:] == EXTRAS["extraVolumes"]
    assert restricted_violations(pod) == []


# -- 2. CRDs


def crd_documents(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    crd = copy.deepcopy(crd)
    crd["metadata"].pop("labels", None)
    crd["metadata"].pop("annotations", None)
    return crd


def test_rendered_crds_are_every_crd_of_the_repository(helm: Helm) -> None:
    rendered = by_kind(helm.template(), "CustomResourceDefinition")
    source = crd_documents(ROOT / "crds")
    assert len(source) >= 3
    by_name = {crd["metadata"]["name"]: crd for crd in rendered}
    assert sorted(by_name) == sorted(crd["metadata"]["name"] for crd in source)
    for crd in source:
        assert without_chart_metadata(by_name[crd["metadata"]["name"]]) == without_chart_metadata(crd)
    for crd in rendered:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert "app.kubernetes.io/instance" not in crd["metadata"]["labels"]


def test_crds_can_be_left_out_or_left_to_uninstall(helm: Helm) -> None:
    assert not by_kind(helm.template({"crds": {"install": False}}, name="no-crds"), "CustomResourceDefinition")
    unkept = by_kind(helm.template({"crds": {"keep": False}}, name="unkept"), "CustomResourceDefinition")
    assert unkept
    assert all("helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {}) for crd in unkept)
    # CRDs managed outside the chart: the chart creates the peering object up front.
    external = helm.template({"crds": {"install": False}, "leaderElection": {"enabled": False}}, name="external")
    assert one(external, "ClusterKopfPeering")["metadata"]["name"] == "warmpool"


def render_chart(helm: Helm, chart: Path, *extra: str) -> list[dict[str, Any]]:
    result = helm.run("template", "wp", str(chart), "--namespace", "warmpool-system", "--kube-version", KUBE_VERSION,
                      *extra)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_a_new_crd_file_is_rendered_without_touching_the_template(helm: Helm, tmp_path: Path) -> None:
    chart = tmp_path / "warmpool-operator"
    shutil.copytree(CHART, chart)
    new = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]},
    }
    (chart / "files" / "crds" / "gadgets.example.dev.yaml").write_text("# A CRD.\n" + yaml.safe_dump(new))
    rendered = {crd["metadata"]["name"]: crd for crd in by_kind(render_chart(helm, chart), "CustomResourceDefinition")}
    assert without_chart_metadata(rendered["gadgets.example.dev"]) == new
    assert len(rendered) == len(crd_documents(ROOT / "crds")) + 1


def test_a_broken_crd_file_fails_the_render_naming_it(helm: Helm, tmp_path: Path) -> None:
    chart = tmp_path / "warmpool-operator"
    shutil.copytree(CHART, chart)
    (chart / "files" / "crds" / "broken.yaml").write_text("kind: [unclosed\n")
    result = helm.run("template", "wp", str(chart), "--kube-version", KUBE_VERSION, check=False)
    assert result.returncode != 0
    assert "files/crds/broken.yaml" in result.stderr


# -- 3. RBAC and ServiceAccount


def test_rbac_and_service_account_can_be_brought_by_the_user(helm: Helm) -> None:
    docs = helm.template({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "platform-ops"}},
                         name="byo")
    assert not RBAC_KINDS & {doc["kind"] for doc in docs}
    assert not by_kind(docs, "ServiceAccount")
    assert pod_spec(docs)["serviceAccountName"] == "platform-ops"
    unnamed = helm.template({"serviceAccount": {"create": False}}, name="byo-default")
    assert pod_spec(unnamed)["serviceAccountName"] == "default"
    for binding in by_kind(unnamed, "ClusterRoleBinding") + by_kind(unnamed, "RoleBinding"):
        assert binding["subjects"][0]["name"] == "default"


def test_service_account_name_and_annotations(helm: Helm) -> None:
    docs = helm.template({"serviceAccount": {"name": "wp-operator",
                                             "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}}},
                         name="sa")
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["name"] == "wp-operator"
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}
    assert pod_spec(docs)["serviceAccountName"] == "wp-operator"
    bindings = by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")
    assert bindings
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": "wp-operator", "namespace": "warmpool-system"}]
               for b in bindings)


# -- 4. Aggregated user roles


def aggregated(docs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    (role,) = [doc for doc in by_kind(docs, "ClusterRole")
               if doc["metadata"]["labels"].get(f"rbac.authorization.k8s.io/{label}") == "true"]
    return role


def test_edit_and_view_roles_aggregate_into_the_built_in_roles(helm: Helm) -> None:
    docs = helm.template(release="warmpool-operator")
    edit, view = aggregated(docs, "aggregate-to-edit"), aggregated(docs, "aggregate-to-view")
    assert edit is aggregated(docs, "aggregate-to-admin")
    assert edit["metadata"]["name"] == "warmpool-operator-edit"
    assert view["metadata"]["name"] == "warmpool-operator-view"
    (rule,) = edit["rules"]
    assert rule["apiGroups"] == ["tensorwasm.dev"]
    assert {"warmpools", "runtimefleets"} <= set(rule["resources"])
    assert {"create", "update", "patch", "delete", "get", "list", "watch"} <= set(rule["verbs"])
    for rule in view["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}
        assert {"warmpools", "runtimefleets"} <= set(rule["resources"])
    for values in ({"rbac": {"aggregateClusterRoles": False}}, {"rbac": {"create": False}}):
        others = helm.template(values, name="no-aggregation")
        names = [doc["metadata"]["name"] for doc in by_kind(others, "ClusterRole")]
        assert not [name for name in names if name.endswith(("-edit", "-view"))]


# -- 5. Security contexts


def test_security_contexts_are_overridable_and_fix_no_uid(helm: Helm) -> None:
    pod = pod_spec(helm.template())
    assert "runAsUser" not in pod["securityContext"]
    assert "fsGroup" not in pod["securityContext"]
    openshift = {
        "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                               "runAsUser": 1000680000, "fsGroup": 1000680000},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Localhost",
                                                                                  "localhostProfile": "op.json"}},
    }
    docs = helm.template(openshift, name="openshift")
    pod = pod_spec(docs)
    assert pod["securityContext"] == openshift["podSecurityContext"]
    assert operator_container(docs)["securityContext"] == openshift["securityContext"]
    assert restricted_violations(pod) == []
    assert read_only_root_violations(pod) == []
    test_pod = one(docs, "Pod")["spec"]
    assert test_pod["securityContext"] == openshift["podSecurityContext"]
    assert test_pod["containers"][0]["securityContext"] == openshift["securityContext"]


# -- 6. global, as a subchart


def test_global_registry_and_pull_secrets(helm: Helm) -> None:
    docs = helm.template({"global": {"imageRegistry": "mirror.example:5000/", "imagePullSecrets": ["mirror"]},
                          "imagePullSecrets": ["regcred", "mirror"]}, name="global")
    container = operator_container(docs)
    assert container["image"] == "mirror.example:5000/warmpool:0.1.0"
    assert config_from_env(env_of(container)).runtime_image == "mirror.example:5000/warmpool-runtime:0.1.0"
    assert pod_spec(docs)["imagePullSecrets"] == [{"name": "mirror"}, {"name": "regcred"}]
    assert one(docs, "Pod")["spec"]["imagePullSecrets"] == [{"name": "mirror"}, {"name": "regcred"}]
    assert one(docs, "Pod")["spec"]["containers"][0]["image"] == container["image"]
    assert "imagePullSecrets" not in pod_spec(helm.template())


def test_the_chart_works_as_a_subchart_next_to_others_globals(helm: Helm, tmp_path: Path) -> None:
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "warmpool-operator")
    (parent / "Chart.yaml").write_text("apiVersion: v2\nname: platform\nversion: 1.0.0\n")
    (parent / "values.yaml").write_text(yaml.safe_dump({
        # Keys other subcharts read: the strict schema must let them through.
        "global": {"imageRegistry": "mirror.example", "storageClass": "fast", "monitoring": {"enabled": True}},
        "warmpool-operator": {"replicaCount": 2, "crds": {"install": False}},
    }))
    docs = render_chart(helm, parent)
    container = operator_container(docs)
    assert container["image"] == "mirror.example/warmpool:0.1.0"
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert one(docs, "PodDisruptionBudget")
    assert not by_kind(docs, "CustomResourceDefinition")
    assert one(docs, "Deployment")["metadata"]["name"] == "wp-warmpool-operator"


@pytest.mark.parametrize(("values", "message"), [
    ({"crds": {"instal": True}}, "additional properties 'instal' not allowed"),
    ({"rbac": {"create": "yes"}}, "at '/rbac/create'"),
    ({"podDisruptionBudget": {"minAvailable": "half"}}, "at '/podDisruptionBudget/minAvailable'"),
    ({"extraEnv": [{"value": "x"}]}, "at '/extraEnv/0'"),
    ({"extraArgs": [3]}, "at '/extraArgs/0'"),
    ({"global": {"imagePullSecrets": ["Not_A_Name"]}}, "at '/global/imagePullSecrets/0'"),
    ({"serviceAccount": {"creat": False}}, "additional properties 'creat' not allowed"),
    ({"tests": {"enable": True}}, "additional properties 'enable' not allowed"),
])
def test_schema_refuses_mistyped_new_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    result = helm.template_result(values, name="bad-new")
    assert result.returncode != 0
    assert message in result.stderr


# -- 7. helm test


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = one(docs, "Pod")
    return pod


def test_helm_test_pod_asks_the_operators_health_endpoint_through_the_service(helm: Helm) -> None:
    docs = helm.template({"health": {"port": 8088}}, name="test-hook")
    pod = helm_test_pod(docs)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Neither the Service nor a disruption budget may take the test pod for an operator pod.
    assert not one(docs, "Service")["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert not one(docs, "Deployment")["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    assert container["image"] == operator_container(docs)["image"]
    assert container["command"][:2] == ["python", "-c"]
    assert container["command"][2] == (CHART / "files" / "health-check.py").read_text()
    url = {e["name"]: e["value"] for e in container["env"]}["HEALTH_URL"]
    service = one(docs, "Service")
    port = next(p for p in service["spec"]["ports"] if p["name"] == "health")
    assert url == f"http://{service['metadata']['name']}.warmpool-system.svc:{port['port']}/healthz"
    assert port["port"] == 8088
    operator_ports = {p["name"]: p["containerPort"] for p in operator_container(docs)["ports"]}
    assert operator_ports[port["targetPort"]] == 8088
    assert operator_container(docs)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert restricted_violations(pod["spec"]) == []
    assert read_only_root_violations(pod["spec"]) == []
    assert not by_kind(helm.template({"tests": {"enabled": False}}, name="no-test"), "Pod")


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server on loopback answering /healthz with the status codes queued in the list (then 200)."""
    statuses: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = statuses.pop(0) if statuses else 200
            self.send_response(status if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz", statuses
    finally:
        server.shutdown()
        thread.join(timeout=10)


def run_health_check(helm: Helm, url: str, attempts: int) -> subprocess.CompletedProcess[str]:
    """The test pod's own command, run here by this Python instead of the image's."""
    (container,) = helm_test_pod(helm.template())["spec"]["containers"]
    env = {"PATH": os.environ.get("PATH", ""), "HEALTH_URL": url, "HEALTH_ATTEMPTS": str(attempts)}
    return subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_helm_test_command_passes_on_a_healthy_endpoint_after_retrying(
    helm: Helm, health_server: tuple[str, list[int]]
) -> None:
    url, statuses = health_server
    statuses.append(503)
    result = run_health_check(helm, url, attempts=3)
    assert result.returncode == 0, result.stderr
    assert f"healthy: {url}" in result.stdout
    assert statuses == []


def test_helm_test_command_fails_on_an_unhealthy_endpoint(helm: Helm, health_server: tuple[str, list[int]]) -> None:
    url, statuses = health_server
    statuses.extend([500, 500])
    result = run_health_check(helm, url, attempts=2)
    assert result.returncode == 1
    assert f"unhealthy after 2 attempts: {url}" in result.stderr


# -- 8. Values table


def test_readme_values_table_is_generated_from_values_yaml() -> None:
    from tools.chart_values import main, values

    assert main(["--check"]) == 0, "run python -m tools.chart_values"
    readme = (CHART / "README.md").read_text()
    found = values()
    assert len(found) > 60
    assert [v.path for v in found if not v.description] == []
    assert [v.path for v in found if f"| `{v.path}` |" not in readme] == []
    for path in ("crds.install", "crds.keep", "rbac.create", "serviceAccount.create", "podDisruptionBudget.enabled",
                 "global.imageRegistry", "extraEnv", "securityContext", "tests.enabled"):
        assert f"| `{path}` |" in readme


def test_values_table_generator_reads_comments_and_defaults(tmp_path: Path) -> None:
    from tools.chart_values import render, values

    (tmp_path / "values.yaml").write_text(
        "# -- The first value,\n# continued.\nfirst: 1\nnested:\n  # -- A list | with a pipe.\n  items: [a, b]\n")
    (tmp_path / "values.schema.json").write_text(
        '{"properties": {"first": {}, "nested": {"properties": {"items": {}}}}}')
    found = values(tmp_path)
    assert [(v.path, v.default, v.description) for v in found] == [
        ("first", 1, "The first value, continued."), ("nested.items", ["a", "b"], "A list | with a pipe."),
    ]
    readme = "intro\n<!-- values:begin (python -m tools.chart_values) -->\nold\n<!-- values:end -->\nend\n"
    out = render(readme, found)
    assert "old" not in out
    assert '| `nested.items` | `["a", "b"]` | A list \\| with a pipe. |' in out
    assert out.startswith("intro\n")
    assert out.endswith("<!-- values:end -->\nend\n")
    with pytest.raises(ValueError, match="markers"):
        render("no markers", found)


def test_docs_name_the_release_like_the_objects_it_creates() -> None:
    """`helm install warmpool-operator` gives `deploy/warmpool-operator`, the name the docs use."""
    for path in (ROOT / "README.md", CHART / "README.md"):
        text = path.read_text()
        assert "helm install warmpool-operator charts/warmpool-operator" in text, path
        assert "helm install warmpool " not in text, path
    assert "deploy/warmpool-operator" in (ROOT / "docs" / "troubleshooting.md").read_text()


def test_rendered_yaml_with_a_key_twice_is_refused() -> None:
    """The checker itself: helm.template's loader refuses what PyYAML would silently collapse (a label given twice)."""
    from tests.packaging.helm import UniqueKeyLoader

    with pytest.raises(yaml.YAMLError, match=r"duplicate key 'app\.kubernetes\.io/component'"):
        yaml.load("labels:\n  app.kubernetes.io/component: operator\n  app.kubernetes.io/component: test\n",
                  Loader=UniqueKeyLoader)


def test_the_runtime_image_is_its_own_block_with_the_operators_tag_by_default(helm: Helm) -> None:
    """One image block per component, as KEDA and cert-manager do: the runtime pods' default image is the
    runtime target's repository, at the chart's appVersion unless tagged or pinned by digest."""
    container = operator_container(helm.template())
    assert container["image"] == "warmpool:0.1.0"
    assert config_from_env(env_of(container)).runtime_image == "warmpool-runtime:0.1.0"
    digest = "sha256:" + "cd" * 32
    pinned = operator_container(helm.template(
        {"global": {"imageRegistry": "mirror.example"},
         "runtime": {"image": {"repository": "team/wasm-runtime", "tag": "9.9.9", "digest": digest}}},
        name="pinned"))
    assert config_from_env(env_of(pinned)).runtime_image == f"mirror.example/team/wasm-runtime@{digest}"
    assert pinned["image"] == "mirror.example/warmpool:0.1.0"

"""The CRD is the API's single source of truth: well-formed, documented, consistent with the parser."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmpool_contract import SHA256_HEX, TENANT_PATTERN
from warmpool_operator import spec as spec_module
from warmpool_operator.scaling.spec import AutoscalingSpec, parse_autoscaling
from warmpool_operator.spec import parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "warmpools.tensorwasm.dev.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    (document,) = list(yaml.safe_load_all(CRD_PATH.read_text()))
    loaded: dict[str, Any] = document
    return loaded


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or ".", node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_identity_scope_and_subresources(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "warmpools.tensorwasm.dev"
    assert crd["spec"]["group"] == spec_module.GROUP
    assert crd["spec"]["names"]["kind"] == spec_module.KIND
    assert crd["spec"]["names"]["plural"] == spec_module.PLURAL
    assert crd["spec"]["names"]["shortNames"] == ["wp"]
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (spec_module.VERSION, True, True)
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Tenant", ".spec.tenant"),
        ("Module", ".status.module"),
        ("Warm/Pod", ".status.warmInstancesPerTuple"),
        ("Ready", ".status.readiness"),
        ("Reason", '.status.conditions[?(@.type=="Ready")].reason'),
        ("Miss ratio", ".status.missRatio"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def described(path: str, node: dict[str, Any]) -> bool:
    # The API server refuses anything but name/generateName rules under the root metadata.
    return path == ".metadata" or bool(node.get("description", "").strip())


def test_every_property_is_described_and_typed(schema: dict[str, Any]) -> None:
    undocumented = [path for path, node in walk(schema) if not described(path, node)]
    untyped = [path for path, node in walk(schema) if "type" not in node and "anyOf" not in node]
    assert undocumented == []
    assert untyped == []


def test_cel_rules_carry_messages(schema: dict[str, Any]) -> None:
    key = "x-kubernetes-validations"
    rules = {path: node[key] for path, node in walk(schema) if key in node}
    assert all(rule.get("message") for found in rules.values() for rule in found)
    assert {r["rule"] for r in rules[".spec.tenant"]} >= {"self == oldSelf"}
    for path in (".spec", ".spec.module.sha256", ".spec.module.source", ".spec.autoscaling", "."):
        assert path in rules


def cel_regex(node: dict[str, Any]) -> str:
    for rule in node["x-kubernetes-validations"]:
        found = re.search(r"\.matches\('(.*?)'\)", rule["rule"])
        if found:
            return found.group(1).replace("\\\\", "\\")
    raise AssertionError("no regex rule")


def test_cel_patterns_match_the_parser(schema: dict[str, Any]) -> None:
    nodes = dict(walk(schema))
    tenant = nodes[".spec.tenant"]
    crd_tenant = re.compile(cel_regex(tenant))
    for sample in ("a", "acme", "a-b", "0a", "-a", "a-", "A", "a.b", "", "a" * 63, "a" * 64):
        in_crd = bool(crd_tenant.match(sample)) and len(sample) <= tenant["maxLength"]
        assert bool(TENANT_PATTERN.match(sample)) == in_crd, sample
    # CEL's RE2 `$` is the end of the text; Python's would also accept a trailing newline, hence `\Z`.
    assert cel_regex(nodes[".spec.module.sha256"]) == SHA256_HEX.pattern.replace("\\Z", "$")
    assert SHA256_HEX.match("0" * 64 + "\n") is None
    assert TENANT_PATTERN.match("acme\n") is None
    assert cel_regex(nodes[".spec.module.source.url"]) == spec_module.URL.pattern
    assert cel_regex(nodes[".spec.module.source.configMapRef.name"]) == spec_module.DNS1123_SUBDOMAIN.pattern
    assert cel_regex(nodes[".spec.module.source.configMapRef.key"]) == spec_module.CONFIGMAP_KEY.pattern
    assert cel_regex(nodes[".spec.module.source.oci.repository"]) == spec_module.OCI_REPOSITORY.pattern
    assert cel_regex(nodes[".spec.module.source.oci.reference"]) == spec_module.OCI_REFERENCE.pattern
    for name in (".oci.pullSecretRef.name", ".headersFrom.secretRef.name", ".caBundle.configMapRef.name"):
        assert cel_regex(nodes[".spec.module.source" + name]) == spec_module.DNS1123_SUBDOMAIN.pattern
    assert cel_regex(nodes[".spec.module.source.caBundle.configMapRef.key"]) == spec_module.CONFIGMAP_KEY.pattern
    assert cel_regex(nodes["."]) == spec_module.DNS1035_LABEL.pattern
    assert cel_regex(nodes[".spec.runtime.serviceAccountName"]) == spec_module.DNS1123_SUBDOMAIN.pattern
    assert cel_regex(nodes[".spec.runtime.imagePullSecrets[].name"]) == spec_module.DNS1123_SUBDOMAIN.pattern
    assert cel_regex(nodes[".spec.runtime.env[].name"]) == spec_module.ENV_NAME.pattern
    budget = nodes[".spec.runtime.podDisruptionBudget.minAvailable"]
    assert cel_regex(budget) == spec_module.PERCENT.pattern
    reserved = " ".join(rule["rule"] for rule in nodes[".spec.runtime.env[].name"]["x-kubernetes-validations"])
    assert re.findall(r"startsWith\('([A-Z_]+)'\)", reserved) == list(spec_module.RESERVED_ENV_PREFIXES)


def stated_default(prop: dict[str, Any]) -> Any:
    """The built-in default a description states ("... Default 10."), as a number."""
    found = re.search(r"(?:Default|default|else(?: the built-in)?) ([0-9.]+)[.)]?\s*$", prop["description"].strip())
    if found is None:
        return None
    text = found.group(1).rstrip(".")
    return float(text) if "." in text else int(text)


def test_autoscaling_block_matches_the_autoscaler_spec(schema: dict[str, Any]) -> None:
    block = schema["properties"]["spec"]["properties"]["autoscaling"]
    # No server-side defaults but `enabled` (never a cluster default: it decides who owns the replica
    # count): the API server would otherwise fill in every field and hide the operator's cluster defaults.
    assert "default" not in block
    assert {name for name, prop in block["properties"].items() if "default" in prop} == {"enabled"}
    stated = {name: prop.get("default", stated_default(prop)) for name, prop in block["properties"].items()}
    spec_defaults = {camel(f.name): getattr(AutoscalingSpec(), f.name) for f in dataclasses.fields(AutoscalingSpec)}
    stated["minReplicas"] = 1  # stated as "at least 1 (default 1)"
    assert stated == spec_defaults
    assert parse_autoscaling(stated) == AutoscalingSpec()


def test_fields_cluster_defaults_can_set_have_no_server_side_default(schema: dict[str, Any]) -> None:
    props = schema["properties"]["spec"]["properties"]
    parsed = parse_spec({"tenant": "acme", "module": {"sha256": "0" * 64, "source": {"path": "/m.wasm"}}})
    for name in ("warmInstancesPerTuple", "maxTotalWarm", "limits", "autoscaling", "runtime"):
        assert "default" not in props[name], name
    assert "default" not in props["limits"]["properties"]["memoryBytes"]
    assert stated_default(props["warmInstancesPerTuple"]) == parsed.warm_instances_per_tuple
    assert stated_default(props["maxTotalWarm"]) == parsed.max_total_warm
    assert props["replicas"]["default"] == parsed.replicas
    assert stated_default(props["limits"]["properties"]["memoryBytes"]) == parsed.limits.memory_bytes
    assert stated_default(props["limits"]["properties"]["timeoutMs"]) == parsed.limits.timeout_ms


def test_the_parser_accepts_every_field_the_crd_declares(schema: dict[str, Any]) -> None:
    props = schema["properties"]["spec"]["properties"]
    full = {
        "tenant": "acme",
        "module": {"sha256": "0" * 64, "source": {"path": "/m.wasm"}},
        **{name: prop["default"] for name, prop in props.items() if "default" in prop},
        "warmInstancesPerTuple": 4,
        "maxTotalWarm": 8,
        "autoscaling": {"enabled": True},
        "limits": {name: 70000 for name in props["limits"]["properties"]},
        "runtime": {
            "image": "i",
            "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
            "nodeSelector": {},
            "tolerations": [],
            "affinity": {},
            "podLabels": {},
            "podAnnotations": {},
            "startupSeconds": 600,
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccountName": "runner",
            "automountServiceAccountToken": True,
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2,
                 "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore", "matchLabelKeys": ["x"],
                 "labelSelector": {"matchLabels": {"a": "b"}}},
            ],
            "podDisruptionBudget": {"maxUnavailable": 1},
        },
        "fleetRef": {"name": "shared", "namespace": "fleets"},
        "auth": {"secretRef": {"name": "callers"}},
    }
    assert set(full) == set(props)
    assert set(full["runtime"]) == set(props["runtime"]["properties"])
    source_props = props["module"]["properties"]["source"]["properties"]
    assert set(source_props) == {"url", "path", "configMapRef", "oci", "headersFrom", "caBundle"}
    parse_spec(full)
    spread = props["runtime"]["properties"]["topologySpreadConstraints"]["items"]["properties"]
    assert set(spread) == spec_module.SPREAD_FIELDS
    assert set(props["runtime"]["properties"]) == set(spec_module.RUNTIME_FIELDS)
    oci = {"repository": "r.example/a/m", "reference": "v1", "insecure": True, "pullSecretRef": {"name": "s"}}
    assert set(oci) == set(source_props["oci"]["properties"])
    parse_spec({**full, "module": {"sha256": "0" * 64, "source": {"oci": oci}}})
    url = {"url": "https://x/m", "headersFrom": {"secretRef": {"name": "h"}},
           "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}}
    parse_spec({**full, "module": {"sha256": "0" * 64, "source": url}})


def test_tenant_is_required_and_unknown_fields_are_not_preserved(schema: dict[str, Any]) -> None:
    spec_schema = schema["properties"]["spec"]
    assert "tenant" in spec_schema["required"]
    preserved = [path for path, node in walk(schema) if node.get("x-kubernetes-preserve-unknown-fields")]
    # Only the affinity, a whole Pod-spec affinity passed through as the user wrote it.
    assert preserved == [".spec.runtime.affinity"]


def test_startup_bounds_match_the_parser(schema: dict[str, Any]) -> None:
    prop = schema["properties"]["spec"]["properties"]["runtime"]["properties"]["startupSeconds"]
    base = {"tenant": "acme", "module": {"sha256": "0" * 64, "source": {"path": "/m.wasm"}}}
    assert parse_spec({**base, "runtime": {"startupSeconds": prop["minimum"]}}).runtime.startup_seconds == 10
    for wrong in (prop["minimum"] - 1, prop["maximum"] + 1):
        with pytest.raises(spec_module.SpecError, match=r"spec\.runtime\.startupSeconds"):
            parse_spec({**base, "runtime": {"startupSeconds": wrong}})


def test_peering_crds_parse() -> None:
    documents = list(yaml.safe_load_all((ROOT / "crds" / "peerings.kopf.dev.yaml").read_text()))
    assert sorted(d["spec"]["names"]["kind"] for d in documents) == ["ClusterKopfPeering", "KopfPeering"]
    for document in documents:
        undocumented = [
            path for path, node in walk(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
            if not described(path, node)
        ]
        assert undocumented == []


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid_pools(example: Path) -> None:
    documents = list(yaml.safe_load_all(example.read_text()))
    pools = [d for d in documents if d["kind"] == "WarmPool"]
    assert pools
    maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
    for pool in pools:
        assert spec_module.DNS1035_LABEL.match(pool["metadata"]["name"])
        spec = parse_spec(pool["spec"])
        ref = spec.module.source.config_map
        if ref is not None and ref.name in maps:
            data = base64.b64decode(maps[ref.name]["binaryData"][ref.key])
            assert hashlib.sha256(data).hexdigest() == spec.module.sha256

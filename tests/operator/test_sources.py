"""Module sources beyond a path: oci registries and url headers/CA bundles, from manifest to pod.

Parsing (errors naming the field), the runtime config document the pods read, the volumes that put
pull secrets, header Secrets and CA bundles at the paths that document names, and the checks that
stall a pool whose referenced Secret or ConfigMap is missing or of the wrong type.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.operator.harness import SHA_A, warmpool_manifest
from warmpool_contract import CA_BUNDLES_DIR, DOCKER_CONFIG_KEY, HEADERS_DIR, PULL_SECRETS_DIR
from warmpool_operator.kinds import CONFIGMAPS, SECRETS, Kind
from warmpool_operator.reconcile import PULL_SECRET_TYPE, check_module_source
from warmpool_operator.render import RenderOptions, render_children
from warmpool_operator.spec import (
    ConfigMapRef,
    OciSource,
    PoolMeta,
    SpecError,
    WarmPool,
    parse_spec,
)
from warmpool_runtime.config import parse_config

pytestmark = pytest.mark.unit

META = PoolMeta(name="classify", namespace="pools", uid="uid-1", generation=1)
OPTIONS = RenderOptions(default_image="warmpool:0.1.0")
REPO = "127.0.0.1:5000/acme/classify"
DIGEST = "sha256:" + "c" * 64


def with_source(source: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(warmpool_manifest()["spec"])
    spec["module"] = {"sha256": SHA_A, "source": dict(source)}
    return spec


def rendered(source: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the runtime config's module source, the pod spec) for a pool with `source`."""
    children = render_children(META, parse_spec(with_source(source)), options=OPTIONS, replicas=1)
    document = yaml.safe_load(children.config_map["data"]["runtime.yaml"])
    pod: dict[str, Any] = children.deployment["spec"]["template"]["spec"]
    return document["tuples"][0]["module"]["source"], pod


# --- parsing -----------------------------------------------------------------------------------


def test_an_oci_source_is_parsed_with_its_defaults_and_registry() -> None:
    source = parse_spec(with_source({"oci": {"repository": REPO}})).module.source
    assert source.oci == OciSource(repository=REPO)
    assert (source.url, source.path, source.config_map) == (None, None, None)
    assert source.oci.registry == "127.0.0.1:5000"
    full = {"repository": "registry.example/team/acme/classify", "reference": DIGEST, "insecure": True,
            "pullSecretRef": {"name": "regcred"}}
    assert parse_spec(with_source({"oci": full})).module.source.oci == OciSource(
        repository="registry.example/team/acme/classify", reference=DIGEST, insecure=True, pull_secret="regcred"
    )


@pytest.mark.parametrize(
    "repository",
    ["127.0.0.1:5000/acme/classify", "localhost/m", "localhost:5000/m", "reg:5000/m", "registry.example/a/b/c",
     "[::1]:5000/acme/m", "[::1]/m", "r.example/a_b/c__d/e--f.g"],
)
def test_repositories_in_host_port_path_form_are_accepted(repository: str) -> None:
    oci = parse_spec(with_source({"oci": {"repository": repository}})).module.source.oci
    assert oci is not None
    assert oci.repository == repository


@pytest.mark.parametrize("reference", ["v1", "latest", "1.2.3-rc_1", "_x", DIGEST])
def test_tags_and_digests_are_accepted_as_references(reference: str) -> None:
    oci = parse_spec(with_source({"oci": {"repository": REPO, "reference": reference}})).module.source.oci
    assert oci is not None
    assert oci.reference == reference


def test_a_url_source_carries_its_header_secret_and_ca_bundle() -> None:
    source = parse_spec(with_source({
        "url": "https://modules.internal/acme/classify.wasm",
        "headersFrom": {"secretRef": {"name": "module-token"}},
        "caBundle": {"configMapRef": {"name": "internal-ca", "key": "ca.pem"}},
    })).module.source
    assert source.url == "https://modules.internal/acme/classify.wasm"
    assert source.headers_secret == "module-token"
    assert source.ca_bundle == ConfigMapRef(name="internal-ca", key="ca.pem")
    plain = parse_spec(with_source({"url": "http://127.0.0.1:9/m.wasm",
                                    "headersFrom": {"secretRef": {"name": "t"}}})).module.source
    assert (plain.headers_secret, plain.ca_bundle) == ("t", None)


@pytest.mark.parametrize(
    ("source", "field", "words"),
    [
        ({"oci": {"repository": REPO}, "path": "/m.wasm"}, "spec.module.source", "exactly one of url, configMapRef"),
        ({"oci": {"repository": REPO}, "url": "http://x/m"}, "spec.module.source", "(got url, oci)"),
        ({"oci": {}}, "spec.module.source.oci.repository", "is required"),
        ({"oci": "127.0.0.1:5000/acme/m"}, "spec.module.source.oci", "must be an object"),
        ({"oci": {"repository": "https://127.0.0.1:5000/acme/m"}}, "spec.module.source.oci.repository", "scheme"),
        ({"oci": {"repository": "127.0.0.1:5000"}}, "spec.module.source.oci.repository", "host[:port]/path"),
        # Docker would read `registry` as a path component on its default registry: the host must be explicit.
        ({"oci": {"repository": "registry/acme/m"}}, "spec.module.source.oci.repository", "a name with a dot"),
        ({"oci": {"repository": "r.example/Acme/m"}}, "spec.module.source.oci.repository", "lowercase"),
        ({"oci": {"repository": "r.example/acme/m:v1"}}, "spec.module.source.oci.repository", "host[:port]/path"),
        ({"oci": {"repository": "r.example/acme/m@sha256:" + "c" * 64}}, "spec.module.source.oci.repository",
         "host[:port]/path"),
        ({"oci": {"repository": "r.example/" + "a" * 250}}, "spec.module.source.oci.repository", "host[:port]"),
        ({"oci": {"repository": REPO, "reference": "sha256:abc"}}, "spec.module.source.oci.reference", "tag"),
        ({"oci": {"repository": REPO, "reference": "-v1"}}, "spec.module.source.oci.reference", "tag"),
        ({"oci": {"repository": REPO, "reference": "v" * 129}}, "spec.module.source.oci.reference", "tag"),
        ({"oci": {"repository": REPO, "reference": 1}}, "spec.module.source.oci.reference", "tag"),
        ({"oci": {"repository": REPO, "insecure": "yes"}}, "spec.module.source.oci.insecure", "boolean"),
        ({"oci": {"repository": REPO, "pullSecretRef": {}}}, "spec.module.source.oci.pullSecretRef.name",
         "is required"),
        ({"oci": {"repository": REPO, "pullSecretRef": {"name": "Reg_Cred"}}},
         "spec.module.source.oci.pullSecretRef.name", "DNS-1123"),
        ({"oci": {"repository": REPO, "pullSecretRef": {"name": "r", "namespace": "other"}}},
         "spec.module.source.oci.pullSecretRef", "unknown field(s) namespace"),
        ({"oci": {"repository": REPO, "tag": "v1"}}, "spec.module.source.oci", "unknown field(s) tag"),
        ({"path": "/m.wasm", "headersFrom": {"secretRef": {"name": "t"}}}, "spec.module.source.headersFrom",
         "only allowed with url (not with path)"),
        ({"oci": {"repository": REPO}, "headersFrom": {"secretRef": {"name": "t"}}},
         "spec.module.source.headersFrom", "only allowed with url (not with oci)"),
        ({"configMapRef": {"name": "m", "key": "k"}, "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}},
         "spec.module.source.caBundle", "only allowed with url"),
        ({"url": "http://x/m.wasm", "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}},
         "spec.module.source.caBundle", "needs an https:// url"),
        ({"url": "https://x/m.wasm", "caBundle": {"configMapRef": {"name": "ca"}}},
         "spec.module.source.caBundle.configMapRef.key", "is required"),
        ({"url": "https://x/m.wasm", "caBundle": {"configMapRef": {"name": "ca", "key": "a/b"}}},
         "spec.module.source.caBundle.configMapRef.key", "ConfigMap key"),
        ({"url": "https://x/m.wasm", "caBundle": {"secretRef": {"name": "ca"}}},
         "spec.module.source.caBundle", "unknown field(s) secretRef"),
        ({"url": "https://x/m.wasm", "headersFrom": {"secretRef": {"name": "UPPER"}}},
         "spec.module.source.headersFrom.secretRef.name", "DNS-1123"),
        ({"url": "https://x/m.wasm", "headersFrom": {"configMapRef": {"name": "h"}}},
         "spec.module.source.headersFrom", "unknown field(s) configMapRef"),
        ({"url": "https://x/m.wasm", "headersFrom": {}}, "spec.module.source.headersFrom.secretRef", "is required"),
    ],
)
def test_invalid_sources_name_the_field(source: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(with_source(source))
    assert caught.value.field == field
    assert words in caught.value.problem


# --- rendering ---------------------------------------------------------------------------------


def mounted(pod: Mapping[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Volume name -> (volume, where the runtime container mounts it read-only)."""
    (container,) = pod["containers"]
    out = {}
    for volume in pod["volumes"]:
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount.get("readOnly") is True or volume["name"] == "tmp"
        out[volume["name"]] = (volume, mount["mountPath"])
    return out


def test_an_oci_source_with_a_pull_secret_mounts_only_its_docker_config() -> None:
    source, pod = rendered({"oci": {"repository": REPO, "reference": "v1", "pullSecretRef": {"name": "regcred"}}})
    assert source == {"oci": {"repository": REPO, "reference": "v1",
                              "dockerConfig": f"{PULL_SECRETS_DIR}/regcred/{DOCKER_CONFIG_KEY}"}}
    volumes = mounted(pod)
    assert volumes["pull-secret"] == (
        {"name": "pull-secret",
         "secret": {"secretName": "regcred", "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}]}},
        "/var/run/warmpool/pull-secrets/regcred",
    )
    assert set(volumes) == {"config", "tmp", "pull-secret"}


def test_an_anonymous_oci_source_mounts_nothing_and_says_insecure_only_when_it_is() -> None:
    source, pod = rendered({"oci": {"repository": REPO}})
    assert source == {"oci": {"repository": REPO}}
    assert set(mounted(pod)) == {"config", "tmp"}
    insecure, _ = rendered({"oci": {"repository": REPO, "insecure": True, "reference": DIGEST}})
    assert insecure == {"oci": {"repository": REPO, "reference": DIGEST, "insecure": True}}


def test_a_url_source_mounts_its_header_secret_and_ca_bundle_where_the_config_points() -> None:
    source, pod = rendered({
        "url": "https://modules.internal/classify.wasm",
        "headersFrom": {"secretRef": {"name": "module-token"}},
        "caBundle": {"configMapRef": {"name": "internal-ca", "key": "ca.pem"}},
    })
    assert source == {
        "url": "https://modules.internal/classify.wasm",
        "headersDir": f"{HEADERS_DIR}/module-token",
        "caFile": f"{CA_BUNDLES_DIR}/internal-ca/ca.pem",
    }
    volumes = mounted(pod)
    assert volumes["headers"] == ({"name": "headers", "secret": {"secretName": "module-token"}},
                                  "/var/run/warmpool/headers/module-token")
    assert volumes["ca-bundle"] == (
        {"name": "ca-bundle", "configMap": {"name": "internal-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}},
        "/var/run/warmpool/ca/internal-ca",
    )
    # The file the config names is the one the volume provides.
    ca_volume, ca_dir = volumes["ca-bundle"]
    assert source["caFile"] == f"{ca_dir}/{ca_volume['configMap']['items'][0]['path']}"
    plain, plain_pod = rendered({"url": "https://modules.internal/classify.wasm"})
    assert plain == {"url": "https://modules.internal/classify.wasm"}
    assert set(mounted(plain_pod)) == {"config", "tmp"}


@pytest.mark.parametrize(
    "source",
    [
        {"oci": {"repository": REPO, "reference": DIGEST, "insecure": True, "pullSecretRef": {"name": "regcred"}}},
        {"oci": {"repository": "localhost/acme/m"}},
        {"url": "https://modules.internal/m.wasm", "headersFrom": {"secretRef": {"name": "token"}},
         "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}},
        {"url": "http://127.0.0.1:8000/m.wasm", "headersFrom": {"secretRef": {"name": "token"}}},
    ],
)
def test_the_runtime_parses_every_rendered_source_as_written(source: dict[str, Any]) -> None:
    children = render_children(META, parse_spec(with_source(source)), options=OPTIONS, replicas=1)
    document = yaml.safe_load(children.config_map["data"]["runtime.yaml"])
    (tuple_,) = parse_config(document).tuples  # the runtime's own parser, as the pod runs it
    parsed, spec_source = tuple_.source, parse_spec(with_source(source)).module.source
    if spec_source.oci is not None:
        assert parsed.oci is not None
        assert (parsed.oci.repository, parsed.oci.reference, parsed.oci.insecure) == (
            spec_source.oci.repository, spec_source.oci.reference, spec_source.oci.insecure)
        assert parsed.oci.host == spec_source.oci.registry
        expected = None if spec_source.oci.pull_secret is None else f"{PULL_SECRETS_DIR}/regcred/.dockerconfigjson"
        assert parsed.oci.docker_config == expected
    else:
        assert parsed.url == spec_source.url
        assert parsed.headers_dir == f"{HEADERS_DIR}/token"
        assert parsed.ca_file == (None if spec_source.ca_bundle is None else f"{CA_BUNDLES_DIR}/ca/ca.pem")


def test_changing_a_secret_reference_rolls_the_pods() -> None:
    def config_hash(name: str) -> str:
        children = render_children(META, parse_spec(with_source({
            "oci": {"repository": REPO, "pullSecretRef": {"name": name}}})), options=OPTIONS, replicas=1)
        value: str = children.deployment["spec"]["template"]["metadata"]["annotations"]["tensorwasm.dev/config-hash"]
        return value

    assert config_hash("a") != config_hash("b")


# --- checks before rendering -------------------------------------------------------------------


class Objects:
    """The Store's `get` over a dict: the boundary check_module_source reads through (the real API
    server's behaviour is covered in tests/e2e/test_operator_oci.py)."""

    def __init__(self, objects: Mapping[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.asked: list[tuple[str, str]] = []

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        assert namespace == META.namespace
        self.asked.append((kind.plural, name))
        return self.objects.get((kind.plural, name))


def pool(source: Mapping[str, Any]) -> WarmPool:
    return WarmPool(meta=META, spec=parse_spec(with_source(source)), status={})


async def check(source: Mapping[str, Any], objects: Mapping[tuple[str, str], dict[str, Any]]) -> Any:
    store = Objects(objects)
    return await check_module_source(pool(source), store)  # type: ignore[arg-type]


def secret(kind: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": kind, "data": data}


OCI_WITH_SECRET = {"oci": {"repository": REPO, "pullSecretRef": {"name": "regcred"}}}


async def test_a_missing_pull_secret_stalls_naming_it_and_the_field() -> None:
    problem = await check(OCI_WITH_SECRET, {})
    assert problem.reason == "SecretMissing"
    assert problem.message == "Secret regcred (spec.module.source.oci.pullSecretRef) does not exist"
    assert not problem.permanent  # creating the Secret fixes it


@pytest.mark.parametrize("kind", ["Opaque", "kubernetes.io/dockercfg", "kubernetes.io/basic-auth"])
async def test_a_pull_secret_of_another_type_stalls_naming_the_expected_type(kind: str) -> None:
    problem = await check(OCI_WITH_SECRET, {("secrets", "regcred"): secret(kind, password="aHVudGVyMg==")})
    assert problem.reason == "PullSecretWrongType"
    assert f"is of type {kind}" in problem.message
    assert "must be of type kubernetes.io/dockerconfigjson" in problem.message
    assert "aHVudGVyMg" not in problem.message
    assert "password" not in problem.message


async def test_a_hostile_secret_type_cannot_forge_a_message() -> None:
    problem = await check(OCI_WITH_SECRET, {("secrets", "regcred"): secret("x\nForged: line" + "y" * 500)})
    assert "\n" not in problem.message
    assert len(problem.message) < 300


async def test_sources_whose_references_exist_pass_and_only_referenced_objects_are_read() -> None:
    good = {("secrets", "regcred"): secret(PULL_SECRET_TYPE, **{DOCKER_CONFIG_KEY: "e30="})}
    assert await check(OCI_WITH_SECRET, good) is None
    store = Objects({})
    assert await check_module_source(pool({"oci": {"repository": REPO}}), store) is None  # type: ignore[arg-type]
    assert await check_module_source(pool({"url": "https://x/m.wasm"}), store) is None  # type: ignore[arg-type]
    assert store.asked == []


URL_WITH_BOTH = {
    "url": "https://modules.internal/m.wasm",
    "headersFrom": {"secretRef": {"name": "module-token"}},
    "caBundle": {"configMapRef": {"name": "internal-ca", "key": "ca.pem"}},
}


async def test_a_missing_header_secret_or_ca_bundle_stalls_naming_it() -> None:
    ca = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"ca.pem": "-----BEGIN CERTIFICATE-----"}}
    headers = secret("Opaque", Authorization="QmVhcmVyIHg=")
    problem = await check(URL_WITH_BOTH, {("configmaps", "internal-ca"): ca})
    assert (problem.reason, problem.message) == (
        "SecretMissing", "Secret module-token (spec.module.source.headersFrom.secretRef) does not exist")
    problem = await check(URL_WITH_BOTH, {("secrets", "module-token"): headers})
    assert (problem.reason, problem.message) == (
        "ConfigMapMissing", "ConfigMap internal-ca (spec.module.source.caBundle.configMapRef) does not exist")
    other_key = {**ca, "data": {"bundle.pem": "x"}}
    both = {("secrets", "module-token"): headers, ("configmaps", "internal-ca"): other_key}
    problem = await check(URL_WITH_BOTH, both)
    assert problem.reason == "ConfigMapKeyMissing"
    assert "internal-ca has no key ca.pem" in problem.message
    assert await check(URL_WITH_BOTH, {("secrets", "module-token"): headers, ("configmaps", "internal-ca"): ca}) is None


def test_the_kinds_checked_are_the_core_ones() -> None:
    assert (SECRETS.api_version, SECRETS.plural) == ("v1", "secrets")
    assert SECRETS.path("pools", "regcred") == "/api/v1/namespaces/pools/secrets/regcred"
    assert CONFIGMAPS.path("pools", "internal-ca") == "/api/v1/namespaces/pools/configmaps/internal-ca"

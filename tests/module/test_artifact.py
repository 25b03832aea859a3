"""The Wasm OCI artifact, the printed WarmPool and registry auth challenges: pure pieces."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import yaml

from warmpool.module.artifact import ArtifactError, build_artifact, wasm_layer
from warmpool.module.distribution import parse_challenge
from warmpool.module.manifest import ManifestError, default_name, render, warmpool_document
from warmpool.module.reference import parse_reference

pytestmark = pytest.mark.unit
MODULE = b"\0asm\x01\0\0\0"
WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_the_artifact_follows_the_cncf_wasm_layout() -> None:
    artifact = build_artifact(MODULE, title="guest.wasm", created=WHEN)
    manifest = json.loads(artifact.manifest)
    config = json.loads(artifact.config)
    module_digest = "sha256:" + hashlib.sha256(MODULE).hexdigest()
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {"mediaType": "application/vnd.wasm.config.v0+json",
                                  "digest": "sha256:" + hashlib.sha256(artifact.config).hexdigest(),
                                  "size": len(artifact.config)}
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/wasm"
    assert layer["digest"] == module_digest == artifact.module_digest
    assert layer["size"] == len(MODULE)
    assert config == {"created": "2026-01-02T03:04:05Z", "architecture": "wasm", "os": "wasip1",
                      "layerDigests": [module_digest]}
    assert artifact.manifest_digest == "sha256:" + hashlib.sha256(artifact.manifest).hexdigest()
    assert build_artifact(MODULE, title="guest.wasm", created=WHEN) == artifact  # same inputs, same digests


def test_the_wasm_layer_is_found_and_described() -> None:
    manifest = json.loads(build_artifact(MODULE, title="guest.wasm", created=WHEN).manifest)
    layer = wasm_layer(manifest, "m")
    assert (layer.size, layer.title) == (len(MODULE), "guest.wasm")


@pytest.mark.parametrize(
    ("manifest", "complaint"),
    [
        ({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}, "not an OCI image manifest"),
        ({"layers": "x"}, "no `layers` list"),
        ({"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]},
         "found 0 (layer media types: application/vnd.oci.image.layer.v1.tar+gzip)"),
        ({"layers": [{"mediaType": "application/wasm", "digest": "sha256:" + "a" * 64, "size": 1}] * 2}, "found 2"),
        ({"layers": [{"mediaType": "application/wasm", "digest": "md5:x", "size": 1}]}, "layers[].digest"),
        ({"layers": [{"mediaType": "application/wasm", "digest": "sha256:" + "a" * 64, "size": -1}]}, "layers[].size"),
    ],
)
def test_manifests_without_exactly_one_wasm_layer_are_refused(manifest: dict[str, object], complaint: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        wasm_layer(manifest, "manifest of r")
    assert complaint in str(caught.value)


def test_the_printed_warmpool_pins_module_and_manifest() -> None:
    digest = "sha256:" + "cd" * 32
    reference = parse_reference(f"127.0.0.1:5000/acme/classify_v2@{digest}")
    document = warmpool_document(name=default_name(reference), tenant="acme", sha256="ab" * 32,
                                 reference=reference, insecure=True, pull_secret="regcred")
    text = render(document, ["pushed"])
    assert text.startswith("# pushed\n")
    assert yaml.safe_load(text) == {
        "apiVersion": "tensorwasm.dev/v1alpha1",
        "kind": "WarmPool",
        "metadata": {"name": "classify-v2"},
        "spec": {"tenant": "acme", "module": {"sha256": "ab" * 32, "source": {"oci": {
            "repository": "127.0.0.1:5000/acme/classify_v2", "reference": digest, "insecure": True,
            "pullSecretRef": {"name": "regcred"}}}}},
    }
    plain = warmpool_document(name="x", tenant="t", sha256="ab" * 32, reference=parse_reference("ghcr.io/a/b"),
                              insecure=False, pull_secret=None)
    assert plain["spec"]["module"]["source"] == {"oci": {"repository": "ghcr.io/a/b"}}


@pytest.mark.parametrize(("option", "kwargs"), [("--tenant", {"tenant": "Acme"}), ("--name", {"name": "-x"}),
                                               ("--pull-secret", {"pull_secret": "a_b"})])
def test_bad_names_are_refused_naming_the_option(option: str, kwargs: dict[str, str]) -> None:
    arguments: dict[str, object] = {"name": "ok", "tenant": "ok", "sha256": "ab" * 32,
                                    "reference": parse_reference("ghcr.io/a/b"), "insecure": False,
                                    "pull_secret": None, **kwargs}
    with pytest.raises(ManifestError, match=option):
        warmpool_document(**arguments)  # type: ignore[arg-type]


def test_auth_challenges_are_parsed() -> None:
    bearer = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                             'scope="repository:a/b:pull"')
    assert bearer is not None
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example/token", "service": "registry.example",
                             "scope": "repository:a/b:pull"}
    basic = parse_challenge('Basic realm="warmpool-dev-registry"')
    assert basic is not None
    assert basic.scheme == "basic"
    assert parse_challenge("") is None

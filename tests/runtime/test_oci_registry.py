"""Modules pulled from a real CNCF Distribution registry on 127.0.0.1 (htpasswd auth), pushed with oras."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import oras.client
import pytest

from tests.oci_registry import OciRegistry, running_registry
from tests.runtime.wasm import BYTES, STATEFUL, compile_wat
from warmpool_runtime import errors
from warmpool_runtime.oci import OciSource, fetch_blob
from warmpool_runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(300)]

MODULE = compile_wat(STATEFUL)
OTHER = compile_wat(BYTES)
SHA = hashlib.sha256(MODULE).hexdigest()
REPO = "ociruntime/classify"
FAST = RuntimeSettings(fetch_timeout_seconds=30.0, fetch_deadline_seconds=60.0, fetch_retries=2,
                       fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05)


def push(registry: OciRegistry, directory: Path, target: str, data: bytes) -> None:
    """Push `data` as a one-layer Wasm artifact (layer media type application/wasm) with oras, another client."""
    directory.mkdir(parents=True, exist_ok=True)
    module = directory / "module.wasm"
    module.write_bytes(data)
    client = oras.client.OrasClient(hostname=registry.host, insecure=True, auth_backend="basic")
    client.login(registry.username, registry.password, hostname=registry.host,
                 config_path=str(directory / "oras-config.json"))
    response = client.push(target=f"{registry.host}/{target}", files=[f"{module}:application/wasm"],
                           disable_path_validation=True)
    assert response.status_code == 201


@pytest.fixture(scope="module")
def pushed(oci_registry: OciRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The module under REPO:v1, another module under REPO:other, and a pull secret for the registry."""
    work = tmp_path_factory.mktemp("oci-push")
    push(oci_registry, work / "v1", f"{REPO}:v1", MODULE)
    push(oci_registry, work / "other", f"{REPO}:other", OTHER)
    secret = work / ".dockerconfigjson"
    secret.write_text(json.dumps(oci_registry.docker_config()))
    wrong = work / "wrong.dockerconfigjson"
    wrong.write_text(json.dumps(oci_registry.docker_config(password="not-the-password")))
    client = oras.client.OrasClient(hostname=oci_registry.host, insecure=True, auth_backend="basic")
    client.login(oci_registry.username, oci_registry.password, hostname=oci_registry.host,
                 config_path=str(work / "oras-config.json"))
    manifest = client.get_manifest(f"{oci_registry.host}/{REPO}:v1")
    digest = "sha256:" + hashlib.sha256(
        client.do_request(f"http://{oci_registry.host}/v2/{REPO}/manifests/v1", "GET",
                          headers={"Accept": manifest["mediaType"]}).content).hexdigest()
    return {"registry": oci_registry, "secret": str(secret), "wrong": str(wrong), "manifest_digest": digest}


def source(pushed: dict[str, Any], reference: str | None = None, secret: str | None = "secret") -> OciSource:
    registry: OciRegistry = pushed["registry"]
    return OciSource(f"{registry.host}/{REPO}", reference, insecure=True,
                     docker_config=pushed[secret] if secret else None)


def test_a_module_is_pulled_by_its_digest(pushed) -> None:
    assert fetch_blob(source(pushed), SHA, 1 << 20, FAST) == MODULE


def test_a_module_is_pulled_through_a_tag_or_a_manifest_digest(pushed) -> None:
    assert fetch_blob(source(pushed, "v1"), SHA, 1 << 20, FAST) == MODULE
    assert fetch_blob(source(pushed, pushed["manifest_digest"]), SHA, 1 << 20, FAST) == MODULE


def test_without_credentials_the_registry_refuses_and_the_error_says_who(pushed) -> None:
    host = pushed["registry"].host
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(source(pushed, secret=None), SHA, 1 << 20, FAST)
    assert f"401 from registry {host} for {REPO}: no valid credentials" in caught.value.message


def test_a_wrong_password_is_refused_and_never_shown(pushed) -> None:
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(source(pushed, "v1", secret="wrong"), SHA, 1 << 20, FAST)
    assert "credentials refused" in caught.value.message
    assert "not-the-password" not in caught.value.message
    assert pushed["registry"].password not in caught.value.message


def test_a_tag_holding_another_module_is_refused_naming_both_digests(pushed) -> None:
    with pytest.raises(errors.ModuleError) as caught:
        fetch_blob(source(pushed, "other"), SHA, 1 << 20, FAST)
    assert f"sha256:{hashlib.sha256(OTHER).hexdigest()}" in caught.value.message
    assert f"sha256:{SHA}" in caught.value.message


def test_a_missing_blob_or_tag_is_named(pushed) -> None:
    absent = hashlib.sha256(b"never pushed").hexdigest()
    with pytest.raises(errors.ModuleUnreachable, match=f"404 from registry .* for {REPO}: blob sha256:{absent}"):
        fetch_blob(source(pushed), absent, 1 << 20, FAST)
    with pytest.raises(errors.ModuleUnreachable, match="manifest v404 not found"):
        fetch_blob(source(pushed, "v404"), SHA, 1 << 20, FAST)


def test_the_size_cap_holds_with_and_without_a_manifest(pushed) -> None:
    with pytest.raises(errors.ModuleTooLarge, match="its manifest says"):
        fetch_blob(source(pushed, "v1"), SHA, 64, FAST)
    with pytest.raises(errors.ModuleTooLarge):
        fetch_blob(source(pushed), SHA, 64, FAST)


def test_a_registry_that_went_down_is_retried_then_named(tmp_path, pytestconfig) -> None:
    with running_registry(tmp_path / "short-lived", pytestconfig) as registry:
        host = registry.host
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(OciSource(f"{host}/{REPO}", "v1", insecure=True), SHA, 1 << 20, FAST)
    assert f"cannot connect to {host}" in caught.value.message
    assert "after 3 attempts" in caught.value.message


def test_two_tenants_pulling_one_module_fetch_and_compile_it_once(pushed, make_runtime) -> None:
    oci = {"repository": f"{pushed['registry'].host}/{REPO}", "reference": "v1", "insecure": True,
           "dockerConfig": pushed["secret"]}
    runtime = make_runtime({"maxTotalWarm": 4, "tuples": [
        {"tenant": tenant, "module": {"sha256": SHA, "source": {"oci": oci}}, "warmInstancesPerTuple": 1}
        for tenant in ("acme", "globex")]})
    assert {s.tenant for s in runtime.registry.statuses() if s.ready} == {"acme", "globex"}
    counts = runtime.registry.modules.counts
    assert (counts.fetched, counts.compiled) == (1, 1)


def test_a_tuple_refused_by_the_registry_fails_alone_with_a_reason_free_of_secrets(pushed, make_runtime) -> None:
    host = pushed["registry"].host
    good = {"repository": f"{host}/{REPO}", "insecure": True, "dockerConfig": pushed["secret"]}
    refused = {**good, "dockerConfig": pushed["wrong"]}
    runtime = make_runtime({"maxTotalWarm": 4, "tuples": [
        {"tenant": "refused", "module": {"sha256": SHA, "source": {"oci": refused}}, "warmInstancesPerTuple": 1},
        {"tenant": "good", "module": {"sha256": SHA, "source": {"oci": good}}, "warmInstancesPerTuple": 1},
    ]}, wait_ready=False)
    statuses = {s.tenant: s for s in runtime.registry.statuses()}
    error = statuses["refused"].error
    assert error is not None
    assert error.code == "module_unreachable"
    assert f"401 from registry {host} for {REPO}: credentials refused" in error.message
    assert "not-the-password" not in error.message
    assert statuses["good"].error is None  # the same module from a source that works: loaded

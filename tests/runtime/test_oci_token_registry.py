"""The Bearer token flow against a real CNCF Distribution registry configured for token auth on 127.0.0.1.

The registry is the real binary; the token service beside it (tests/token_registry.py) checks the pull secret's
user and password (Basic) and issues ES256 JWTs that the registry verifies against the service's certificate.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.wasm import STATEFUL, compile_wat
from tests.token_registry import TokenService, running_token_registry
from warmpool_runtime import errors
from warmpool_runtime.oci import OciSource, fetch_blob
from warmpool_runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(300)]

MODULE = compile_wat(STATEFUL)
SHA = hashlib.sha256(MODULE).hexdigest()
USER, PASSWORD = "puller", "token-pa55-hunter2"
REPO = "ociruntime/tokened"
FAST = RuntimeSettings(fetch_timeout_seconds=30.0, fetch_deadline_seconds=60.0, fetch_retries=1,
                       fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenService, Path]]:
    """(registry host, its token service, a pull secret for it) with the module pushed under REPO:v1."""
    root = tmp_path_factory.mktemp("token-registry")
    with running_token_registry(root, USER, PASSWORD) as running:
        push(running.host, running.tokens)
        secret = root / ".dockerconfigjson"
        secret.write_text(json.dumps({"auths": {running.host: {"username": USER, "password": PASSWORD}}}))
        yield running.host, running.tokens, secret


def push(host: str, tokens: TokenService) -> None:
    """Push MODULE as a one-layer Wasm artifact under REPO:v1 with plain distribution API calls."""
    token = tokens.token([{"type": "repository", "name": REPO, "actions": ["pull", "push"]}])
    auth = {"Authorization": f"Bearer {token}"}
    config = b"{}"
    for blob in (MODULE, config):
        start = urllib.request.Request(f"http://{host}/v2/{REPO}/blobs/uploads/", method="POST", headers=auth)
        with urllib.request.urlopen(start) as response:
            location = response.headers["Location"]
        separator = "&" if "?" in location else "?"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        put = urllib.request.Request(urllib.parse.urljoin(f"http://{host}/", location) + f"{separator}digest={digest}",
                                     data=blob, method="PUT",
                                     headers={**auth, "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(put) as response:
            assert response.status == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/wasm", "digest": f"sha256:{SHA}", "size": len(MODULE)}],
    }).encode()
    put = urllib.request.Request(f"http://{host}/v2/{REPO}/manifests/v1", data=manifest, method="PUT",
                                 headers={**auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(put) as response:
        assert response.status == 201


def test_a_pull_answers_the_registrys_bearer_challenge(token_registry) -> None:
    host, tokens, secret = token_registry
    before = len(tokens.issued)
    source = OciSource(f"{host}/{REPO}", "v1", insecure=True, docker_config=str(secret))
    assert fetch_blob(source, SHA, 1 << 20, FAST) == MODULE
    assert len(tokens.issued) == before + 1  # one token served the manifest and the blob


def test_without_credentials_the_token_service_refuses_and_nothing_secret_is_shown(token_registry,
                                                                                   tmp_path) -> None:
    host, tokens, _ = token_registry
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(OciSource(f"{host}/{REPO}", "v1", insecure=True), SHA, 1 << 20, FAST)
    assert f"401 from registry {host} for {REPO}: no valid credentials" in caught.value.message
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"auths": {host: {"username": USER, "password": "wrong-hunter2"}}}))
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(OciSource(f"{host}/{REPO}", "v1", insecure=True, docker_config=str(wrong)), SHA, 1 << 20, FAST)
    assert "credentials refused by the token service" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert not any(token in caught.value.message for token in tokens.issued)

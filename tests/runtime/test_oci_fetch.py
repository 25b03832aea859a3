"""OCI pulls against a distribution-API server on 127.0.0.1 that issues Bearer tokens, redirects blobs, fails on cue.

The registry here is a small server written for the test: it speaks the part of the OCI distribution API a pull
uses plus a token service, so that the Bearer challenge flow, blob redirects to another origin and failures on
cue can be driven. tests/runtime/test_oci_registry.py pulls from a real CNCF Distribution registry.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import logging
import socket
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.wasm import STATEFUL, compile_wat
from warmpool_runtime import errors
from warmpool_runtime.oci import OciSource, fetch_blob
from warmpool_runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]

MODULE = compile_wat(STATEFUL)
SHA = hashlib.sha256(MODULE).hexdigest()
USER, PASSWORD, TOKEN = "reader", "pa55-hunter2", "tok-AKIASECRET"
NAME = "acme/classify"
FAST = RuntimeSettings(fetch_timeout_seconds=30.0, fetch_deadline_seconds=60.0, fetch_retries=2,
                       fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05)
SECRETS = ("hunter2", "AKIASECRET", base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


def manifest_for(digest: str, size: int, media_type: str = "application/wasm") -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.wasm.config.v0+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2},
        "layers": [{"mediaType": media_type, "digest": digest, "size": size}],
    }).encode()


class Registry:
    """Blobs and manifests of one repository behind a Bearer token service (or open, with `bearer=False`)."""

    def __init__(self, bearer: bool = True) -> None:
        self.bearer = bearer
        self.blobs: dict[str, bytes] = {f"sha256:{SHA}": MODULE}
        self.manifests: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.authorizations: list[tuple[str, str | None]] = []
        self.fail: dict[str, int] = {}
        """Path -> how many more times it answers 503."""
        self.redirect_blobs_to: str | None = None
        self.token_answer = json.dumps({"token": TOKEN}).encode()
        self.token_queries: list[dict[str, list[str]]] = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                registry.hits[path] += 1
                registry.authorizations.append((path, self.headers.get("Authorization")))
                if registry.fail.get(path):
                    registry.fail[path] -= 1
                    return self.answer(503, b"busy")
                if path == "/token":
                    registry.token_queries.append(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
                    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return self.answer(200, registry.token_answer)
                if registry.bearer and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    challenge = (f'Bearer realm="{registry.url}/token",service="test-registry",'
                                 f'scope="repository:{NAME}:pull"')
                    return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
                prefix = f"/v2/{NAME}/"
                if path.startswith(prefix + "manifests/"):
                    body = registry.manifests.get(path.rsplit("/", 1)[1])
                    return self.answer(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}) \
                        if body is not None else self.answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                if path.startswith(prefix + "blobs/"):
                    digest = path.rsplit("/", 1)[1]
                    if digest not in registry.blobs:
                        return self.answer(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                    if registry.redirect_blobs_to:
                        return self.answer(307, b"", {"Location": f"{registry.redirect_blobs_to}/{digest}?sig=x"})
                    return self.answer(200, registry.blobs[digest])
                return self.answer(404, b"")

            def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def source(self, tmp_path: Path, reference: str | None = None, password: str | None = PASSWORD) -> OciSource:
        config = None
        if password is not None:
            config = tmp_path / ".dockerconfigjson"
            auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
            config.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return OciSource(f"{self.host}/{NAME}", reference, insecure=True,
                         docker_config=str(config) if config else None)


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.close()


def assert_no_secret(text: str) -> None:
    assert not any(secret in text for secret in SECRETS), text


def test_a_bearer_challenge_is_answered_with_a_token_from_the_pull_secret(registry, tmp_path) -> None:
    assert fetch_blob(registry.source(tmp_path), SHA, 1 << 20, FAST) == MODULE
    paths = [path for path, _ in registry.authorizations]
    assert paths == [f"/v2/{NAME}/blobs/sha256:{SHA}", "/token", f"/v2/{NAME}/blobs/sha256:{SHA}"]
    assert str(registry.authorizations[1][1]).startswith("Basic ")
    assert registry.authorizations[2][1] == f"Bearer {TOKEN}"
    assert registry.token_queries == [{"service": ["test-registry"], "scope": [f"repository:{NAME}:pull"]}]


def test_without_credentials_the_error_names_registry_repository_and_status(registry, tmp_path) -> None:
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(registry.source(tmp_path, password=None), SHA, 1 << 20, FAST)
    assert f"401 from registry {registry.host} for {NAME}: no valid credentials" in caught.value.message
    assert "not retried" in caught.value.message


def test_a_wrong_password_is_refused_and_never_shown(registry, tmp_path, caplog) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(registry.source(tmp_path, password="wrong-hunter2"), SHA, 1 << 20, FAST)
    assert f"401 from registry {registry.host} for {NAME}: credentials refused" in caught.value.message
    assert_no_secret(caught.value.message)
    assert_no_secret(caplog.text)
    assert registry.hits["/token"] == 1  # refused credentials are not retried


def test_a_tag_leads_to_the_pinned_layer(registry, tmp_path) -> None:
    registry.manifests["v1"] = manifest_for(f"sha256:{SHA}", len(MODULE))
    assert fetch_blob(registry.source(tmp_path, "v1"), SHA, 1 << 20, FAST) == MODULE
    digest = "sha256:" + hashlib.sha256(registry.manifests["v1"]).hexdigest()
    registry.manifests[digest] = registry.manifests["v1"]
    assert fetch_blob(registry.source(tmp_path, digest), SHA, 1 << 20, FAST) == MODULE


def test_a_tag_whose_layer_is_another_module_is_refused_naming_both_digests(registry, tmp_path) -> None:
    other = "sha256:" + "ee" * 32
    registry.manifests["v2"] = manifest_for(other, len(MODULE))
    with pytest.raises(errors.ModuleError) as caught:
        fetch_blob(registry.source(tmp_path, "v2"), SHA, 1 << 20, FAST)
    assert other in caught.value.message
    assert f"sha256:{SHA}" in caught.value.message
    assert registry.hits[f"/v2/{NAME}/blobs/sha256:{SHA}"] == 0  # refused before any blob is pulled


def test_a_manifest_not_matching_its_digest_reference_is_refused(registry, tmp_path) -> None:
    claimed = "sha256:" + "aa" * 32
    registry.manifests[claimed] = manifest_for(f"sha256:{SHA}", len(MODULE))
    with pytest.raises(errors.ModuleError, match="a manifest of another digest"):
        fetch_blob(registry.source(tmp_path, claimed), SHA, 1 << 20, FAST)


def test_a_layer_over_the_cap_is_refused_from_the_manifest(registry, tmp_path) -> None:
    registry.manifests["big"] = manifest_for(f"sha256:{SHA}", 1 << 30)
    with pytest.raises(errors.ModuleTooLarge, match="its manifest says"):
        fetch_blob(registry.source(tmp_path, "big"), SHA, 1 << 20, FAST)
    assert registry.hits[f"/v2/{NAME}/blobs/sha256:{SHA}"] == 0


def test_a_missing_manifest_or_blob_is_named(registry, tmp_path) -> None:
    with pytest.raises(errors.ModuleUnreachable, match=f"404 from registry .* for {NAME}: manifest v9 not found"):
        fetch_blob(registry.source(tmp_path, "v9"), SHA, 1 << 20, FAST)
    absent = "0" * 64
    with pytest.raises(errors.ModuleUnreachable, match=f"blob sha256:{absent} not found .not retried."):
        fetch_blob(registry.source(tmp_path), absent, 1 << 20, FAST)


def test_a_blob_redirected_to_storage_gets_no_registry_token(registry, tmp_path) -> None:
    storage = Registry(bearer=False)  # another origin (port), as object storage would be
    try:
        registry.redirect_blobs_to = f"{storage.url}/v2/{NAME}/blobs"
        assert fetch_blob(registry.source(tmp_path), SHA, 1 << 20, FAST) == MODULE
        assert storage.authorizations == [(f"/v2/{NAME}/blobs/sha256:{SHA}", None)]
    finally:
        storage.close()


def test_a_busy_registry_is_retried(registry, tmp_path) -> None:
    registry.fail[f"/v2/{NAME}/blobs/sha256:{SHA}"] = 2
    assert fetch_blob(registry.source(tmp_path), SHA, 1 << 20, FAST) == MODULE


def test_a_registry_that_is_down_is_retried_then_named(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = OciSource(f"127.0.0.1:{port}/{NAME}", "v1", insecure=True)
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(source, SHA, 1 << 20, FAST)
    assert f"oci://127.0.0.1:{port}/{NAME}:v1" in caught.value.message
    assert f"cannot connect to 127.0.0.1:{port}" in caught.value.message
    assert "after 3 attempts" in caught.value.message


def test_a_broken_pull_secret_is_named_without_its_content(registry, tmp_path) -> None:
    config = tmp_path / "pull.json"
    config.write_text(json.dumps({"auths": {registry.host: {"auth": "hunter2!"}}}))
    source = OciSource(f"{registry.host}/{NAME}", insecure=True, docker_config=str(config))
    with pytest.raises(errors.ModuleUnreachable) as caught:
        fetch_blob(source, SHA, 1 << 20, FAST)
    assert str(config) in caught.value.message
    assert_no_secret(caught.value.message)


@pytest.mark.parametrize("answer", [b"not json", b'{"token": ""}', b'{"token": "two words"}', b'{"token": 7}',
                                    json.dumps({"access_token": "x\r\nX-Injected: 1"}).encode()])
def test_a_token_answer_without_a_usable_token_is_refused(registry, tmp_path, answer: bytes) -> None:
    registry.token_answer = answer
    with pytest.raises(errors.ModuleUnreachable, match="the token service's answer holds no token"):
        fetch_blob(registry.source(tmp_path), SHA, 1 << 20, FAST)
    assert registry.hits[f"/v2/{NAME}/blobs/sha256:{SHA}"] == 1  # never asked again with it


def test_an_access_token_answer_is_accepted(registry, tmp_path) -> None:
    registry.token_answer = json.dumps({"access_token": TOKEN, "expires_in": 300}).encode()
    assert fetch_blob(registry.source(tmp_path), SHA, 1 << 20, FAST) == MODULE

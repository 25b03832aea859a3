"""The Bearer token flow against a real CNCF Distribution registry configured for token auth on 127.0.0.1.

The registry is the real binary (tests/oci_registry.py builds it); the token service beside it is written here:
it checks the pull secret's user and password (Basic) and issues ES256 JWTs that the registry verifies against
the test's own root certificate, as a production token service (Harbor, GitLab, a cloud registry) would.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.runtime.wasm import STATEFUL, compile_wat
from warmpool.dev import procs
from warmpool.dev.build import ensure_registry
from warmpool.dev.registry import registry_env
from warmpool_runtime import errors
from warmpool_runtime.oci import OciSource, fetch_blob
from warmpool_runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(300)]

MODULE = compile_wat(STATEFUL)
SHA = hashlib.sha256(MODULE).hexdigest()
USER, PASSWORD = "puller", "token-pa55-hunter2"
REPO = "ociruntime/tokened"
SERVICE, ISSUER = "warmpool-test-registry", "warmpool-test-token-service"
FAST = RuntimeSettings(fetch_timeout_seconds=30.0, fetch_deadline_seconds=60.0, fetch_retries=1,
                       fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues registry tokens (ES256 JWTs carrying the x5c certificate) to callers with the right password."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.root = directory / "token-root.pem"
        self.root.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issued: list[str] = []
        self.refused = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    service.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = scope.split(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                body = json.dumps({"token": service.token(access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def token(self, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.issued.append(token)
        return token

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenService, Path]]:
    """(registry host, its token service, a pull secret for it) with the module pushed under REPO:v1."""
    root = tmp_path_factory.mktemp("token-registry")
    tokens = TokenService(root)
    port = procs.free_port("127.0.0.1")
    host = f"127.0.0.1:{port}"
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")}},
        "http": {"addr": host, "secret": secrets.token_hex(16)},
        "auth": {"token": {"realm": tokens.realm, "service": SERVICE, "issuer": ISSUER,
                           "rootcertbundle": str(tokens.root)}},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([str(ensure_registry()), "serve", str(root / "config.yml")], stdout=log,
                               stderr=subprocess.STDOUT, env=registry_env(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            assert process.poll() is None, (root / "registry.log").read_text()
            assert time.monotonic() < deadline, "the token-auth registry did not start"
            time.sleep(0.1)
        push(host, tokens)
        secret = root / ".dockerconfigjson"
        secret.write_text(json.dumps({"auths": {host: {"username": USER, "password": PASSWORD}}}))
        yield host, tokens, secret
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        tokens.close()


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

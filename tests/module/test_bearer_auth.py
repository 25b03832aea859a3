"""Bearer (token) auth, as ghcr.io, Docker Hub and Harbor use it: a real registry that trusts tokens signed
by a token service on loopback, which checks the user's password (ES256 JWTs, keys in a JWKS file)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.runtime.wasm import BYTES, compile_wat
from warmpool.cli import main
from warmpool.dev import procs
from warmpool.dev.build import ensure_registry
from warmpool.dev.registry import registry_config, registry_env

pytestmark = pytest.mark.component
SERVICE = "warmpool-test-registry"
ISSUER = "warmpool-test-token-service"
KEY_ID = "test-key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRegistry:
    host: str
    username: str
    password: str
    token_requests: list[dict[str, str]]


class _Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, object]:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "EC", "crv": "P-256", "kid": KEY_ID, "alg": "ES256", "use": "sig",
                          "x": _b64url(numbers.x.to_bytes(32, "big")), "y": _b64url(numbers.y.to_bytes(32, "big"))}]}

    def token(self, subject: str, scopes: list[str]) -> str:
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        header = {"alg": "ES256", "typ": "JWT", "kid": KEY_ID}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _token_service(signer: _Signer, username: str, password: str, seen: list[dict[str, str]]) -> ThreadingHTTPServer:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            seen.append({"service": query.get("service", [""])[0], "scope": " ".join(query.get("scope", []))})
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
            body = json.dumps({"token": signer.token(username, scopes)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    root = tmp_path_factory.mktemp("token-registry")
    signer = _Signer()
    username, password = "ci", secrets.token_urlsafe(16)
    seen: list[dict[str, str]] = []
    server = _token_service(signer, username, password, seen)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (root / "jwks.json").write_text(json.dumps(signer.jwks()))
    port = procs.free_port()
    config = registry_config(port=port, storage=root / "storage", htpasswd=root / "unused", http_secret="s")
    config["auth"] = {"token": {"realm": f"http://127.0.0.1:{server.server_address[1]}/token", "service": SERVICE,
                                "issuer": ISSUER, "jwks": str(root / "jwks.json"), "signingalgorithms": ["ES256"]}}
    (root / "config.yml").write_text(yaml.safe_dump(config))
    record = procs.start_detached([str(ensure_registry()), "serve", str(root / "config.yml")], log=root / "log",
                                  pid_file=root / "pid", env=registry_env(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            assert procs.recorded_alive(record), procs.tail(root / "log")
            assert time.monotonic() < deadline, procs.tail(root / "log")
            time.sleep(0.1)
        yield TokenRegistry(host=f"127.0.0.1:{port}", username=username, password=password, token_requests=seen)
    finally:
        procs.stop(record)
        server.shutdown()


def test_push_and_inspect_through_a_token_service(
    token_registry: TokenRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "upper.wasm"
    module.write_bytes(compile_wat(BYTES))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    login = ("--insecure", "--username", token_registry.username, "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(token_registry.password + "\n"))
    assert main(["module", "push", str(module), f"{token_registry.host}/acme/upper:v1", *login]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {"service": SERVICE, "scope": "repository:acme/upper:pull,push"} in token_registry.token_requests

    monkeypatch.setattr("sys.stdin", io.StringIO(token_registry.password + "\n"))
    reference = f"{token_registry.host}/acme/upper@{printed['spec']['module']['source']['oci']['reference']}"
    assert main(["module", "inspect", reference, "--json", *login]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
    assert "upper" in info["abi"]


def test_a_token_service_that_refuses_the_password_is_a_clear_error(
    token_registry: TokenRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong-password-456\n"))
    code = main(["module", "inspect", f"{token_registry.host}/acme/upper:v1", "--insecure",
                 "--username", token_registry.username, "--password-stdin"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"registry {token_registry.host}: the token service 127.0.0.1:" in err
    assert f"refused user {token_registry.username!r}: HTTP 401" in err
    assert "wrong-password-456" not in err

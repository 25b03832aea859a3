"""A real CNCF Distribution registry behind a token service on loopback, for Bearer (token) auth tests.

The token service checks the caller's Basic user and password and issues ES256 JWTs carrying its certificate
(x5c), which the registry verifies against that certificate as its root, as a production token service
(Harbor, GitLab, a cloud registry) would.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
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
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.gobuilds import ensure_registry
from warmpool.dev import procs
from warmpool.dev.registry import registry_config, registry_env

SERVICE = "warmpool-test-registry"
ISSUER = "warmpool-test-token-service"
START_TIMEOUT_S = 60.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_of(scopes: list[str]) -> list[dict[str, Any]]:
    """The JWT `access` claim for `type:name:actions` scopes (one query value may hold several, space-separated)."""
    access = []
    for scope in (s for value in scopes for s in value.split(" ") if s):
        kind, name, actions = scope.split(":")
        access.append({"type": kind, "name": name, "actions": actions.split(",")})
    return access


class TokenService:
    """Issues registry tokens to callers with the right password; records what was asked, issued and refused."""

    def __init__(self, directory: Path, username: str, password: str) -> None:
        self.username = username
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
        self.requests: list[dict[str, str]] = []
        """Each token request's service and scope, refused or not."""
        self.issued: list[str] = []
        self.refused = 0
        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scopes = query.get("scope", [])
                service.requests.append({"service": query.get("service", [""])[0], "scope": " ".join(scopes)})
                if self.headers.get("Authorization") != expected:
                    service.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(access_of(scopes))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def token(self, access: list[dict[str, Any]]) -> str:
        """A signed token granting `access` (also what a test pushing on its own uses)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": self.username, "aud": SERVICE, "exp": now + 600, "nbf": now - 60,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.issued.append(token)
        return token

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class TokenRegistry:
    """A running registry on 127.0.0.1 (plain HTTP) that trusts only its token service's tokens."""

    host: str
    username: str
    password: str
    tokens: TokenService


@contextlib.contextmanager
def running_token_registry(root: Path, username: str, password: str) -> Iterator[TokenRegistry]:
    """A registry storing under `root` and its token service, for the `with` block."""
    tokens = TokenService(root, username, password)
    port = procs.free_port()
    config = registry_config(port=port, storage=root / "storage", htpasswd=root / "unused",
                             http_secret=secrets.token_hex(16))
    config["auth"] = {"token": {"realm": tokens.realm, "service": SERVICE, "issuer": ISSUER,
                                "rootcertbundle": str(tokens.root)}}
    (root / "config.yml").write_text(yaml.safe_dump(config))
    try:
        record = procs.start_detached([str(ensure_registry()), "serve", str(root / "config.yml")],
                                      log=root / "registry.log", pid_file=root / "registry.pid",
                                      env=registry_env(os.environ))
    except BaseException:
        tokens.close()
        raise
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            assert procs.recorded_alive(record), procs.tail(root / "registry.log")
            assert time.monotonic() < deadline, f"the registry did not start:\n{procs.tail(root / 'registry.log')}"
            time.sleep(0.1)
        yield TokenRegistry(host=f"127.0.0.1:{port}", username=username, password=password, tokens=tokens)
    finally:
        procs.stop(record)
        tokens.close()

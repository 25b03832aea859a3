"""url sources against real servers on 127.0.0.1: header files sent, a CA bundle trusted, credentials kept in."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.runtime.wasm import STATEFUL, compile_wat
from warmpool_runtime import errors
from warmpool_runtime.engine import build_engine
from warmpool_runtime.modules import ModuleSource, ModuleStore, sha256_hex
from warmpool_runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]

MODULE = compile_wat(STATEFUL)
SHA = sha256_hex(MODULE)
TOKEN = "Bearer t0ken-hunter2"
API_KEY = "k3y-AKIASECRET"
FAST = RuntimeSettings(fetch_retries=1, fetch_backoff_seconds=0.01, fetch_backoff_max_seconds=0.05,
                       pool_slots=4, max_memory_bytes=16 << 20)


def make_ca(tmp_path: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def server_context(tmp_path: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> ssl.SSLContext:
    """A TLS server context whose certificate, for 127.0.0.1, the CA signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class Server:
    """A real HTTP(S) server on 127.0.0.1 that serves the module only to a caller sending both headers, and records
    the headers of every request. `/hop` redirects to `redirect_to`."""

    context: ssl.SSLContext | None = None
    redirect_to: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def start(self) -> Server:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append(dict(self.headers.items()))
                if self.path == "/hop":
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Authorization") != TOKEN or self.headers.get("X-Api-Key") != API_KEY:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(MODULE)))
                self.end_headers()
                self.wfile.write(MODULE)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.context is not None:
            self._http.socket = self.context.wrap_socket(self._http.socket, server_side=True)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        scheme = "https" if self.context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._http.server_address[1]}"
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """An https server whose certificate a test CA signed, and that CA's PEM file."""
    key, cert, ca_file = make_ca(tmp_path, "warmpool-test-ca")
    server = Server(context=server_context(tmp_path, key, cert)).start()
    yield server, ca_file
    server.stop()


@pytest.fixture
def headers_dir(tmp_path: Path) -> Path:
    root = tmp_path / "headers"
    root.mkdir()
    (root / "Authorization").write_text(TOKEN + "\n")
    (root / "X-Api-Key").write_text(API_KEY)
    return root


@pytest.fixture(scope="module")
def store_engine() -> Any:
    return build_engine(FAST)


def test_an_https_source_with_a_ca_bundle_and_header_files_loads(pki, headers_dir, store_engine) -> None:
    server, ca_file = pki
    store = ModuleStore(store_engine, settings=FAST)
    source = ModuleSource(url=f"{server.url}/m.wasm", headers_dir=str(headers_dir), ca_file=str(ca_file))
    module = store.load(source, SHA, 1 << 20, True)
    assert any(e.name == "add" for e in module.exports)
    assert server.seen[-1]["Authorization"] == TOKEN
    assert server.seen[-1]["X-Api-Key"] == API_KEY


def test_without_the_ca_bundle_or_with_another_ca_tls_fails_and_is_not_retried(pki, headers_dir, store_engine,
                                                                               tmp_path) -> None:
    server, _ = pki
    _, _, other_ca = make_ca(tmp_path, "another-ca")
    for ca_file in (None, str(other_ca)):
        source = ModuleSource(url=f"{server.url}/m.wasm", headers_dir=str(headers_dir), ca_file=ca_file)
        with pytest.raises(errors.ModuleUnreachable) as caught:
            ModuleStore(store_engine, settings=FAST).load(source, SHA, 1 << 20, True)
        assert "TLS failed" in caught.value.message
        assert "not retried" in caught.value.message
    assert server.seen == []  # no request ever reached it: the headers were never sent to an unverified peer


def test_a_refused_credential_is_reported_without_its_value(pki, tmp_path, store_engine, caplog) -> None:
    server, ca_file = pki
    root = tmp_path / "wrong"
    root.mkdir()
    (root / "Authorization").write_text("Bearer wrong-hunter2")
    (root / "X-Api-Key").write_text(API_KEY)
    source = ModuleSource(url=f"{server.url}/m.wasm", headers_dir=str(root), ca_file=str(ca_file))
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.ModuleUnreachable) as caught:
        ModuleStore(store_engine, settings=FAST).load(source, SHA, 1 << 20, True)
    assert "HTTP 401 Unauthorized" in caught.value.message
    for secret in ("hunter2", "AKIASECRET"):
        assert secret not in caught.value.message
        assert secret not in caplog.text
        assert secret not in repr(source)


def test_header_credentials_follow_a_redirect_only_within_their_origin(headers_dir, store_engine) -> None:
    other = Server().start()
    first = Server().start()
    try:
        store = ModuleStore(store_engine, settings=FAST)
        # Same origin: the headers go along, and the module loads.
        first.redirect_to = f"{first.url}/m.wasm"
        store.load(ModuleSource(url=f"{first.url}/hop", headers_dir=str(headers_dir)), SHA, 1 << 20, True)
        assert first.seen[-1]["X-Api-Key"] == API_KEY
        # Another origin (another port): the headers stay behind, so that server refuses.
        first.redirect_to = f"{other.url}/m.wasm"
        with pytest.raises(errors.ModuleUnreachable, match="HTTP 401"):
            ModuleStore(store_engine, settings=FAST).load(
                ModuleSource(url=f"{first.url}/hop", headers_dir=str(headers_dir)), SHA, 1 << 20, True)
        assert other.seen
        assert all("Authorization" not in seen and "X-Api-Key" not in seen for seen in other.seen)
    finally:
        first.stop()
        other.stop()

"""A registry that lies or floods (a real HTTP server on loopback): sizes are bounded and digests checked."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.runtime.wasm import BYTES, compile_wat
from warmpool.cli import main
from warmpool.module.distribution import MAX_MANIFEST_BYTES

pytestmark = pytest.mark.component
MODULE = compile_wat(BYTES)
MODULE_DIGEST = "sha256:" + hashlib.sha256(MODULE).hexdigest()


def _manifest(layers: list[dict[str, object]], media_type: str = "application/vnd.oci.image.manifest.v1+json") -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                                  "digest": "sha256:" + "0" * 64, "size": 2},
                       "layers": layers}).encode()


WASM_LAYER = {"mediaType": "application/wasm", "digest": MODULE_DIGEST, "size": len(MODULE)}
ROUTES: dict[str, bytes] = {
    "/v2/acme/liar/manifests/v1": _manifest([WASM_LAYER]),
    "/v2/acme/huge-layer/manifests/v1": _manifest([{**WASM_LAYER, "size": 1 << 40}]),
    "/v2/acme/index/manifests/v1": _manifest([], "application/vnd.oci.image.index.v1+json"),
    "/v2/acme/tarball/manifests/v1": _manifest([{**WASM_LAYER, "mediaType": "application/vnd.oci.image.layer.v1.tar"}]),
    f"/v2/acme/liar/blobs/{MODULE_DIGEST}": MODULE + b"\0tampered",
}


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/v2/acme/flood/manifests/v1":
            # No Content-Length: the client must stop reading at its limit.
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(MAX_MANIFEST_BYTES // len(chunk) + 8):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client hung up, as it should
            return
        if self.path == "/v2/acme/claims-huge/manifests/v1":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            return
        body = ROUTES.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(404)  # no blob is ever there
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        # An upload "continues" on another host: the client must not send the module (or a login) there.
        self.send_response(202)
        self.send_header("Location", "http://198.51.100.7/uploads/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hang up on floods on purpose


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("repository", "complaint"),
    [
        ("flood", f"manifest acme/flood is over the {MAX_MANIFEST_BYTES}-byte limit"),
        ("claims-huge", f"manifest acme/claims-huge is {1 << 40} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"),
        ("liar", f"blob {MODULE_DIGEST} of acme/liar does not match its digest"),
        ("huge-layer", f"is {1 << 40} bytes, over the 1048576-byte limit (--max-bytes)"),
        ("index", "is not an OCI image manifest"),
        ("tarball", "expected exactly one application/wasm layer, found 0"),
    ],
)
def test_inspect_refuses_what_a_hostile_registry_sends(
    hostile: str, repository: str, complaint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")  # no login: this registry never asks for one
    code = main(["module", "inspect", f"{hostile}/acme/{repository}:v1", "--insecure", "--max-bytes", "1048576"])
    err = capsys.readouterr().err
    assert code == 1
    assert complaint in err


def test_push_refuses_an_upload_location_on_another_host(
    hostile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    module = tmp_path / "upper.wasm"
    module.write_bytes(MODULE)
    assert main(["module", "push", str(module), f"{hostile}/acme/redirect:v1", "--insecure"]) == 1
    assert f"registry {hostile}: the upload location points to another host" in capsys.readouterr().err

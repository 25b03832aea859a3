"""The dev OCI registry: a real CNCF Distribution process on loopback behind htpasswd, started and stopped."""

from __future__ import annotations

import base64
import json
import stat
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.gobuilds import ensure_registry
from tests.oci_registry import OciRegistry
from warmpool.dev import procs
from warmpool.dev.registry import (
    RegistryFiles,
    htpasswd_line,
    read_access,
    registry_config,
    registry_env,
    running,
    start_registry,
    stop_registry,
)


def _v2(url: str, auth: tuple[str, str] | None = None) -> tuple[int, Message]:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/v2/", headers=headers), timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@pytest.mark.unit
def test_htpasswd_line_holds_a_bcrypt_hash_of_the_password() -> None:
    line = htpasswd_line("warmpool", "s3cret")
    user, hashed = line.rstrip("\n").split(":", 1)
    assert user == "warmpool"
    assert "s3cret" not in line
    assert bcrypt.checkpw(b"s3cret", hashed.encode())
    with pytest.raises(ValueError, match="user name"):
        htpasswd_line("a:b", "x")


@pytest.mark.unit
def test_config_listens_on_loopback_only_with_htpasswd_auth(tmp_path: Path) -> None:
    config = registry_config(port=5123, storage=tmp_path / "s", htpasswd=tmp_path / "h", http_secret="x")
    assert config["http"]["addr"] == "127.0.0.1:5123"
    assert config["auth"] == {"htpasswd": {"realm": "warmpool-dev-registry", "path": str(tmp_path / "h")}}
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "s")


@pytest.mark.unit
def test_the_callers_registry_overrides_and_tracing_do_not_leak_into_the_process() -> None:
    env = registry_env({"PATH": "/bin", "REGISTRY_HTTP_ADDR": "0.0.0.0:80", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert env["PATH"] == "/bin"
    assert "REGISTRY_HTTP_ADDR" not in env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert env["OTEL_TRACES_EXPORTER"] == "none"


@pytest.mark.component
def test_the_session_registry_asks_for_credentials_and_accepts_only_the_right_ones(oci_registry: OciRegistry) -> None:
    status, headers = _v2(oci_registry.url)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert _v2(oci_registry.url, (oci_registry.username, oci_registry.password))[0] == 200
    assert _v2(oci_registry.url, (oci_registry.username, "wrong"))[0] == 401
    assert oci_registry.host.startswith("127.0.0.1:")
    assert oci_registry.url == f"http://{oci_registry.host}"


@pytest.mark.component
def test_docker_config_helper_writes_a_private_login(oci_registry: OciRegistry, tmp_path: Path) -> None:
    path = oci_registry.write_docker_config(tmp_path)
    assert path == tmp_path / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = json.loads(path.read_text())["auths"][oci_registry.host]["auth"]
    assert base64.b64decode(auth).decode() == f"{oci_registry.username}:{oci_registry.password}"


@pytest.mark.component
def test_start_writes_private_credentials_and_stop_ends_the_process(tmp_path: Path) -> None:
    files = RegistryFiles.under(tmp_path / "registry")
    access = start_registry(binary=ensure_registry(), files=files, password="pw-under-test")
    try:
        assert running(files)
        assert stat.S_IMODE(files.root.stat().st_mode) == 0o700
        for private in (files.credentials, files.htpasswd, files.config, files.docker_config_dir / "config.json"):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
        assert read_access(files) == access
        assert "pw-under-test" not in files.htpasswd.read_text()
        assert yaml.safe_load(files.config.read_text())["http"]["addr"] == access.host
        assert _v2(access.url, (access.username, "pw-under-test"))[0] == 200
        record = procs.read_pid_file(files.pid)
        assert record is not None
    finally:
        assert stop_registry(files)
    assert not procs.recorded_alive(record)
    assert not running(files)
    # Refused, or reset when another process has taken the freed port meanwhile: either way, no registry answers.
    with pytest.raises(OSError):  # URLError and ConnectionResetError both are
        _v2(access.url)


@pytest.mark.component
def test_push_module_helper_stores_a_wasm_artifact_by_tag_and_digest(oci_registry: OciRegistry) -> None:
    data = b"\0asm\x01\0\0\0"
    reference = oci_registry.push_module(data, "fixture/empty", tag="t1")
    assert reference.repository == f"{oci_registry.host}/fixture/empty"
    assert reference.tag == "t1"
    assert reference.digest is not None
    auth = (oci_registry.username, oci_registry.password)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    for ref in ("t1", reference.digest):
        request = urllib.request.Request(f"{oci_registry.url}/v2/fixture/empty/manifests/{ref}", headers={
            "Authorization": f"Basic {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            manifest = json.loads(response.read())
        assert manifest["layers"][0]["mediaType"] == "application/wasm"

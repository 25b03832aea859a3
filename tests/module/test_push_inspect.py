"""`warmpool module push|inspect` against a real CNCF Distribution registry on loopback (htpasswd auth).

What was pushed is read back with oras, an independent OCI client."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import oras.provider
import pytest
import yaml

from tests.oci_registry import OciRegistry
from tests.runtime.wasm import build_c, compile_wat
from warmpool.cli import main

pytestmark = pytest.mark.component

GUEST_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((export_name("add"))) int add(int a, int b) { return a + b; }
__attribute__((export_name("alloc"))) void *alloc(int len) { return malloc((size_t)len); }
__attribute__((export_name("echo"))) uint64_t echo(char *ptr, int len) {
  return ((uint64_t)(uintptr_t)ptr << 32) | (uint32_t)len;
}
__attribute__((export_name("hello"))) int hello(void) { return printf("hello\n"); }
"""

FOREIGN_IMPORT = """
(module
  (import "env" "host_clock" (func $clock (result i64)))
  (func (export "now") (result i64) (call $clock))
)
"""


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A C guest from clang-14: numeric and bytes-ABI exports, and WASI imports (printf)."""
    path, _sha = build_c(tmp_path_factory.mktemp("guest"), GUEST_C, "guest")
    return path


@pytest.fixture
def logged_in(oci_registry: OciRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OciRegistry:
    """DOCKER_CONFIG points at a config.json holding the registry's login, as `docker login` leaves it."""
    oci_registry.write_docker_config(tmp_path / "docker")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return oci_registry


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _oras(registry: OciRegistry) -> oras.provider.Registry:
    client = oras.provider.Registry(hostname=registry.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(registry.username, registry.password)
    return client


def test_push_then_pull_back_by_digest_with_oras(
    logged_in: OciRegistry, guest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "module", "push", str(guest), f"{logged_in.host}/acme/guest:v1",
                          "--insecure", "--tenant", "acme")
    assert code == 0, err
    document: dict[str, Any] = yaml.safe_load(out)
    sha = hashlib.sha256(guest.read_bytes()).hexdigest()
    assert document["apiVersion"] == "tensorwasm.dev/v1alpha1"
    assert document["kind"] == "WarmPool"
    assert document["metadata"]["name"] == "guest"
    assert document["spec"]["tenant"] == "acme"
    assert document["spec"]["module"]["sha256"] == sha
    oci = document["spec"]["module"]["source"]["oci"]
    assert oci["repository"] == f"{logged_in.host}/acme/guest"
    assert oci["insecure"] is True
    digest = oci["reference"]
    assert digest.startswith("sha256:")
    assert f"{logged_in.host}/acme/guest:v1" in err

    client = _oras(logged_in)
    target = f"{logged_in.host}/acme/guest@{digest}"
    manifest = client.get_manifest(target)
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/wasm"
    assert layer["digest"] == f"sha256:{sha}"
    pulled = Path(client.download_blob(target, layer["digest"], str(tmp_path / "pulled.wasm")))
    assert pulled.read_bytes() == guest.read_bytes()
    config = tmp_path / "config.json"
    client.download_blob(target, manifest["config"]["digest"], str(config))
    assert json.loads(config.read_text())["layerDigests"] == [f"sha256:{sha}"]
    # The tag resolves to the same manifest.
    assert client.get_manifest(f"{logged_in.host}/acme/guest:v1") == manifest


def test_inspect_a_pushed_artifact_names_its_exports_imports_and_abi(
    oci_registry: OciRegistry, guest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))  # the login comes from the options only
    login = ("--insecure", "--username", oci_registry.username, "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(oci_registry.password + "\n"))
    code, _out, err = _run(capsys, "module", "push", str(guest), f"{oci_registry.host}/acme/inspected:v2", *login)
    assert code == 0, err
    monkeypatch.setattr("sys.stdin", io.StringIO(oci_registry.password + "\n"))
    code, out, err = _run(capsys, "module", "inspect", f"{oci_registry.host}/acme/inspected:v2", "--json", *login)
    assert code == 0, err
    info = json.loads(out)
    assert info["sha256"] == hashlib.sha256(guest.read_bytes()).hexdigest()
    assert info["size"] == guest.stat().st_size
    assert info["manifestDigest"].startswith("sha256:")
    roles = {e["name"]: e["role"] for e in info["exports"]}
    assert roles["add"].startswith("numeric export")
    assert roles["echo"].startswith("bytes handler")
    assert roles["alloc"].startswith("bytes ABI allocator")
    assert roles["memory"].startswith("bytes ABI memory")
    assert {"add", "echo", "alloc", "memory", "hello"} <= set(info["abi"])
    imports = {(i["module"], i["name"]): i["provided"] for i in info["imports"]}
    assert imports[("wasi_snapshot_preview1", "fd_write")] is True


def test_inspect_a_local_file_flags_imports_the_runtime_does_not_provide(
    guest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "module", "inspect", str(guest))
    assert code == 0, err
    assert f"sha256    {hashlib.sha256(guest.read_bytes()).hexdigest()}" in out
    assert "numeric exports: " in out
    assert "bytes handlers: echo" in out
    assert "wasi_snapshot_preview1::fd_write" in out

    foreign = tmp_path / "foreign.wasm"
    foreign.write_bytes(compile_wat(FOREIGN_IMPORT))
    code, out, _err = _run(capsys, "module", "inspect", str(foreign))
    assert code == 0
    assert "env::host_clock  func  () -> i64  NOT provided: the runtime refuses this module" in out

    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\x01\0\0\0\xff\xff")
    code, _out, err = _run(capsys, "module", "inspect", str(junk))
    assert code == 1
    assert f"{junk} is not a valid Wasm module" in err


def test_a_wrong_password_is_a_clear_401_naming_the_registry_without_echoing_it(
    oci_registry: OciRegistry, guest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "not-the-password-123"
    oci_registry.write_docker_config(tmp_path / "docker", password=wrong)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    code, out, err = _run(capsys, "module", "push", str(guest), f"{oci_registry.host}/acme/denied:v1", "--insecure")
    assert code == 1
    assert out == ""
    assert f"registry {oci_registry.host} refused the credentials of user {oci_registry.username!r}" in err
    assert "401 Unauthorized" in err
    assert str(tmp_path / "docker" / "config.json") in err
    assert wrong not in err
    assert oci_registry.password not in err


def test_without_any_login_the_error_says_how_to_give_one(
    oci_registry: OciRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    code, _out, err = _run(capsys, "module", "inspect", f"{oci_registry.host}/acme/guest:v1", "--insecure")
    assert code == 1
    assert f"registry {oci_registry.host} requires a login" in err
    assert "--password-stdin" in err


def test_push_refuses_a_digest_target_and_a_file_that_is_not_wasm_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.wasm"
    text.write_text("(module)")
    # Port 9 on loopback: nothing listens, so reaching the network would fail differently.
    code, _out, err = _run(capsys, "module", "push", str(text), "127.0.0.1:9/acme/x:v1", "--insecure")
    assert code == 1
    assert "is not binary WebAssembly" in err
    code, _out, err = _run(capsys, "module", "push", str(text), "127.0.0.1:9/acme/x@sha256:" + "a" * 64)
    assert code == 1
    assert "push to a tag, not a digest" in err


def test_a_missing_tag_or_manifest_is_named(
    logged_in: OciRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run(capsys, "module", "inspect", f"{logged_in.host}/acme/absent:v9", "--insecure")
    assert code == 1
    assert f"registry {logged_in.host}: no manifest acme/absent:v9 (404 Not Found)" in err


def test_a_registry_that_does_not_answer_is_named_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    code, _out, err = _run(capsys, "module", "inspect", "127.0.0.1:9/acme/x:v1", "--insecure")
    assert code == 1
    assert "registry 127.0.0.1:9: GET /v2/acme/x/manifests/v1 failed: ConnectionError" in err

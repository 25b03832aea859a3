"""Bearer (token) auth, as ghcr.io, Docker Hub and Harbor use it: a real registry that trusts tokens signed
by a token service on loopback (tests/token_registry.py), which checks the user's password."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.runtime.wasm import BYTES, compile_wat
from tests.token_registry import SERVICE, TokenRegistry, running_token_registry
from warmpool.cli import main

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    with running_token_registry(tmp_path_factory.mktemp("token-registry"), "ci", secrets.token_urlsafe(16)) as running:
        yield running


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
    assert {"service": SERVICE, "scope": "repository:acme/upper:pull,push"} in token_registry.tokens.requests

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

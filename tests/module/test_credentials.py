"""Credentials resolution: explicit login, then DOCKER_CONFIG / ~/.docker/config.json; secrets never in errors."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from warmpool.module.credentials import (
    Credentials,
    CredentialsError,
    credentials_from_docker_config,
    docker_config_path,
    normalise_auth_key,
    read_password,
    resolve_credentials,
)

pytestmark = pytest.mark.unit
HOST = "127.0.0.1:5000"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _write(directory: Path, document: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(document))
    return path


def test_docker_config_location_follows_docker_config_then_home() -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/d", "HOME": "/h"}) == Path("/d/config.json")
    assert docker_config_path({"HOME": "/h"}) == Path("/h/.docker/config.json")


@pytest.mark.parametrize("key", [HOST, f"http://{HOST}", f"https://{HOST}/v2/", f"{HOST}/v1/"])
def test_auth_keys_are_matched_by_host_and_port_whatever_docker_wrote(key: str) -> None:
    assert normalise_auth_key(key) == HOST
    found = credentials_from_docker_config({"auths": {key: {"auth": _auth("u", "p:with:colons")}}}, HOST, "cfg")
    assert found == Credentials("u", "p:with:colons", "cfg")


def test_username_and_password_fields_are_read_too_and_other_hosts_ignored() -> None:
    document = {"auths": {"ghcr.io": {"auth": _auth("a", "b")}, HOST: {"username": "u", "password": "p"}}}
    assert credentials_from_docker_config(document, HOST, "cfg") == Credentials("u", "p", "cfg")
    assert credentials_from_docker_config(document, "quay.io", "cfg") is None


def test_unsupported_logins_are_named_without_their_secret() -> None:
    with pytest.raises(CredentialsError, match="credential helper docker-credential-pass"):
        credentials_from_docker_config({"auths": {}, "credsStore": "pass"}, HOST, "cfg")
    with pytest.raises(CredentialsError, match="identity token") as caught:
        credentials_from_docker_config({"auths": {HOST: {"identitytoken": "s3cret-token"}}}, HOST, "cfg")
    assert "s3cret-token" not in str(caught.value)
    with pytest.raises(CredentialsError, match="not base64") as bad:
        credentials_from_docker_config({"auths": {HOST: {"auth": "%%%secret"}}}, HOST, "cfg")
    assert "secret" not in str(bad.value).replace("auths", "")


def test_explicit_login_wins_over_the_docker_config(tmp_path: Path) -> None:
    _write(tmp_path / "d", {"auths": {HOST: {"auth": _auth("from-file", "x")}}})
    environ = {"DOCKER_CONFIG": str(tmp_path / "d")}
    explicit = resolve_credentials(registry=HOST, username="me", password="pw", docker_config=None, environ=environ)
    assert explicit == Credentials("me", "pw", "--username/--password-stdin")
    from_env = resolve_credentials(registry=HOST, username=None, password=None, docker_config=None, environ=environ)
    assert from_env is not None
    assert from_env.username == "from-file"
    assert from_env.origin == str(tmp_path / "d" / "config.json")


def test_an_explicit_config_file_must_exist_but_the_default_may_be_absent(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    assert resolve_credentials(registry=HOST, username=None, password=None, docker_config=None,
                               environ=environ) is None
    with pytest.raises(CredentialsError, match="does not exist"):
        resolve_credentials(registry=HOST, username=None, password=None, docker_config=tmp_path / "nope.json",
                            environ=environ)
    path = _write(tmp_path / "x", {"auths": {HOST: {"auth": _auth("u", "p")}}})
    found = resolve_credentials(registry=HOST, username=None, password=None, docker_config=path, environ=environ)
    assert found == Credentials("u", "p", str(path))


def test_a_config_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        resolve_credentials(registry=HOST, username=None, password=None, docker_config=tmp_path / "config.json",
                            environ={})


def test_username_without_password_is_refused() -> None:
    with pytest.raises(CredentialsError, match="go together"):
        resolve_credentials(registry=HOST, username="me", password=None, docker_config=None, environ={})


def test_password_is_the_first_line_of_stdin_and_never_in_the_repr() -> None:
    assert read_password(io.StringIO("pw with spaces\r\nsecond line\n")) == "pw with spaces"
    with pytest.raises(CredentialsError, match="no password"):
        read_password(io.StringIO(""))
    assert "hidden" not in repr(Credentials("u", "hidden", "x"))

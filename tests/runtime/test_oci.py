"""OCI module sources as pure logic: repository and reference grammar, auth challenges, pull secrets, manifests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from warmpool_runtime.dockerconfig import Credentials, DockerConfigError, credentials_for, load_docker_config
from warmpool_runtime.errors import ModuleError
from warmpool_runtime.oci import (
    Challenge,
    OciReferenceError,
    OciSource,
    parse_challenge,
    parse_reference,
    parse_repository,
    wasm_layer,
)

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("repository", [
    "127.0.0.1:5000/acme/classify", "registry.example.com/acme/classify", "localhost/m", "localhost:5000/a/b/c",
    "ghcr.io/org/my-module", "reg.example:443/a__b/c.d", "[::1]:5000/acme/m",
])
def test_repositories_with_a_registry_host_parse(repository: str) -> None:
    assert parse_repository(repository) == repository


@pytest.mark.parametrize(("repository", "why"), [
    ("acme/classify", "registry host"),  # no host: would silently mean Docker Hub elsewhere
    ("https://registry.example.com/acme/m", "no scheme"),
    ("registry.example.com/acme/m:v1", "no scheme, tag or digest"),
    ("registry.example.com/acme/m@" + DIGEST, "no scheme, tag or digest"),
    ("registry.example.com/Acme/m", "lowercase"),
    ("user:pw@registry.example.com/acme/m", "host[:port]/path"),
    ("registry.example.com", "host[:port]/path"),
    ("registry.example.com/acme/m\r\nX: y", "host[:port]/path"),
])
def test_bad_repositories_are_refused_saying_what_is_expected(repository: str, why: str) -> None:
    with pytest.raises(OciReferenceError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_repository(repository)


def test_references_are_tags_or_sha256_digests() -> None:
    for good in ("v1", "latest", "1.2.3-rc_1", DIGEST):
        assert parse_reference(good) == good
    for bad in ("", "-v1", ".v1", "v" * 129, "sha256:abc", "sha512:" + "a" * 128, "v1 x", "v1\n"):
        with pytest.raises(OciReferenceError):
            parse_reference(bad)


def test_a_source_describes_itself_with_its_reference() -> None:
    assert OciSource("127.0.0.1:5000/acme/m").describe() == "oci://127.0.0.1:5000/acme/m"
    assert OciSource("127.0.0.1:5000/acme/m", "v1").describe() == "oci://127.0.0.1:5000/acme/m:v1"
    assert OciSource("127.0.0.1:5000/acme/m", DIGEST).describe() == f"oci://127.0.0.1:5000/acme/m@{DIGEST}"
    source = OciSource("127.0.0.1:5000/acme/m", docker_config="/secrets/pull/.dockerconfigjson")
    assert (source.host, source.name) == ("127.0.0.1:5000", "acme/m")


# --- WWW-Authenticate -------------------------------------------------------------------------------
def test_a_bearer_challenge_parses_with_quoted_and_escaped_params() -> None:
    header = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:acme/m:pull"'
    assert parse_challenge(header) == Challenge("bearer", {
        "realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:acme/m:pull"})
    assert parse_challenge('Basic realm="Registry Realm"') == Challenge("basic", {"realm": "Registry Realm"})
    assert parse_challenge('bearer  Realm = "a\\"b" , service=plain') == Challenge("bearer", {
        "realm": 'a"b', "service": "plain"})
    assert parse_challenge("Bearer") == Challenge("bearer", {})


def test_garbage_challenges_parse_no_further_than_they_make_sense() -> None:
    assert parse_challenge("") is None
    assert parse_challenge("\x00weird stuff") is None
    # What follows an unreadable part is dropped, never guessed at.
    assert parse_challenge('Bearer realm="https://a/t", %%%, service="x"') == Challenge(
        "bearer", {"realm": "https://a/t"})


# --- pull secrets -----------------------------------------------------------------------------------
def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_come_from_auth_or_username_and_password_by_registry_host() -> None:
    auths = {
        "127.0.0.1:5000": {"auth": auth("reader", "s3cr:et")},  # a password may hold a colon
        "https://registry.example.com/v1/": {"username": "bot", "password": "pw"},
        "other.example": {"auth": auth("x", "y")},
    }
    assert credentials_for(auths, "127.0.0.1:5000") == Credentials("reader", "s3cr:et")
    assert credentials_for(auths, "registry.example.com") == Credentials("bot", "pw")
    assert credentials_for(auths, "127.0.0.1:5001") is None  # another port is another registry
    assert credentials_for(auths, "127.0.0.1") is None
    assert credentials_for({"https://index.docker.io/v1/": {"auth": auth("d", "h")}}, "registry-1.docker.io") \
        == Credentials("d", "h")


def test_a_broken_entry_is_named_without_its_secret() -> None:
    for entry in ({"auth": "not base64!"}, {"auth": auth("", "pw-secret")}, {"username": "bot"},
                  {"auth": base64.b64encode(b"no-colon-secret").decode()}):
        with pytest.raises(DockerConfigError) as caught:
            credentials_for({"127.0.0.1:5000": entry}, "127.0.0.1:5000", "docker config /p")
        assert "the entry for 127.0.0.1:5000" in str(caught.value)
        assert "secret" not in str(caught.value)
    assert credentials_for({"127.0.0.1:5000": {}}, "127.0.0.1:5000") is None  # an entry with no credentials


def test_credentials_never_show_their_password() -> None:
    assert "hunter2" not in repr(Credentials("reader", "hunter2"))


def test_a_docker_config_file_is_read_bounded_and_its_content_never_quoted(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth("u", "p")}}}))
    assert credentials_for(load_docker_config(str(good)), "127.0.0.1:5000") == Credentials("u", "p")
    for name, content in (("legacy", '{"127.0.0.1:5000": {"auth": "hunter2"}}'), ("garbage", "hunter2 {")):
        (tmp_path / name).write_text(content)
        with pytest.raises(DockerConfigError) as caught:
            load_docker_config(str(tmp_path / name))
        assert str(tmp_path / name) in str(caught.value)
        assert "hunter2" not in str(caught.value)
    with pytest.raises(DockerConfigError, match="cannot read"):
        load_docker_config(str(tmp_path / "absent"))
    huge = tmp_path / "huge"
    huge.write_bytes(b" " * ((1 << 20) + 1))
    with pytest.raises(DockerConfigError, match="over"):
        load_docker_config(str(huge))


# --- manifests --------------------------------------------------------------------------------------
SOURCE = OciSource("127.0.0.1:5000/acme/m", "v1")


def manifest(*layers: dict[str, object], **extra: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": DIGEST, "size": 2},
                       "layers": list(layers), **extra}).encode()


@pytest.mark.parametrize("media_type", ["application/wasm", "application/vnd.wasm.content.layer.v1+wasm",
                                        "application/vnd.module.wasm.content.layer.v1+wasm"])
def test_the_wasm_layer_is_found_by_its_media_type(media_type: str) -> None:
    layer = {"mediaType": media_type, "digest": DIGEST, "size": 10}
    other = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DIGEST, "size": 5}
    assert wasm_layer(manifest(other, layer), SOURCE) == layer


@pytest.mark.parametrize(("body", "why"), [
    (b"not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}).encode(), "an index"),
    (manifest(), "0 Wasm layers"),
    (manifest({"mediaType": "application/wasm", "digest": DIGEST}, {"mediaType": "application/wasm"}),
     "2 Wasm layers"),
    (json.dumps({"schemaVersion": 2}).encode(), "no layers"),
])
def test_a_manifest_without_one_wasm_layer_is_refused_naming_the_repository(body: bytes, why: str) -> None:
    with pytest.raises(ModuleError, match=why) as caught:
        wasm_layer(body, SOURCE)
    assert "acme/m in registry 127.0.0.1:5000" in caught.value.message

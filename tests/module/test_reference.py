"""OCI reference parsing: registry host, repository path, tag and digest, with errors that quote the input."""

from __future__ import annotations

import pytest

from warmpool.module.reference import BadReference, OciReference, parse_reference

pytestmark = pytest.mark.unit
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/acme/classify", OciReference("127.0.0.1:5000", "acme/classify")),
        ("127.0.0.1:5000/acme/classify:v1", OciReference("127.0.0.1:5000", "acme/classify", tag="v1")),
        ("ghcr.io/acme/team/classify:1.2.3-rc_1", OciReference("ghcr.io", "acme/team/classify", tag="1.2.3-rc_1")),
        (f"ghcr.io/acme/classify@{DIGEST}", OciReference("ghcr.io", "acme/classify", digest=DIGEST)),
        (f"ghcr.io/acme/classify:v1@{DIGEST}", OciReference("ghcr.io", "acme/classify", tag="v1", digest=DIGEST)),
        ("localhost/classify", OciReference("localhost", "classify")),
        ("registry.example:443/a.b/c__d/e-f", OciReference("registry.example:443", "a.b/c__d/e-f")),
    ],
)
def test_valid_references_parse_into_their_parts(text: str, expected: OciReference) -> None:
    parsed = parse_reference(text)
    assert parsed == expected
    assert str(parsed) == text


def test_repository_and_reference_are_what_a_warmpool_source_holds() -> None:
    ref = parse_reference(f"127.0.0.1:5000/acme/classify:v1@{DIGEST}")
    assert ref.repository == "127.0.0.1:5000/acme/classify"
    assert ref.reference == DIGEST  # the digest pins, so it wins over the tag
    assert parse_reference("ghcr.io/a/b:v2").reference == "v2"
    assert parse_reference("ghcr.io/a/b").reference is None
    assert parse_reference("ghcr.io/a/b:v2").with_digest(DIGEST).digest == DIGEST


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("https://ghcr.io/acme/classify", "URL scheme"),
        ("classify:v1", "names no registry"),
        ("acme/classify", "does not start with a registry"),
        ("ghcr.io/Acme/classify", "'Acme'"),
        ("ghcr.io/acme//classify", "''"),
        ("ghcr.io/acme/classify:-bad", "tag '-bad'"),
        ("ghcr.io/acme/classify@sha256:abc", "digest 'sha256:abc'"),
        ("ghcr.io/acme/classify@md5:" + "a" * 32, "sha256"),
        ("bad_host.io/acme/classify", "registry"),
        ("ghcr.io/" + "a" * 300, "longer than"),
    ],
)
def test_invalid_references_are_refused_naming_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(BadReference) as caught:
        parse_reference(text)
    assert complaint in str(caught.value)

"""redact_url: what a module source may show of itself (signed URLs, userinfo, odd input)."""

from __future__ import annotations

from typing import Any

import pytest

from warmpool_contract import REDACTED, redact_url

pytestmark = pytest.mark.unit

S3 = ("https://bucket.s3.eu-west-1.amazonaws.com/mods/classify.wasm?X-Amz-Algorithm=AWS4-HMAC-SHA256"
      "&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z"
      "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=deadbeefcafe")
GCS = ("https://storage.googleapis.com/mods/classify.wasm?X-Goog-Algorithm=GOOG4-RSA-SHA256"
       "&X-Goog-Credential=svc%40proj.iam.gserviceaccount.com&X-Goog-Signature=0badc0ffee")
AZURE = "https://acct.blob.core.windows.net/mods/classify.wasm?sv=2024-01-01&sig=c2VjcmV0JTJG&se=2026-01-01"


@pytest.mark.parametrize(("url", "shown"), [
    (S3, "https://bucket.s3.eu-west-1.amazonaws.com/mods/classify.wasm?<redacted>"),
    (GCS, "https://storage.googleapis.com/mods/classify.wasm?<redacted>"),
    (AZURE, "https://acct.blob.core.windows.net/mods/classify.wasm?<redacted>"),
    ("http://user:pass@modules.example:8080/m.wasm", "http://modules.example:8080/m.wasm"),
    ("http://token@modules.example/m.wasm", "http://modules.example/m.wasm"),
    ("http://a@b:c@modules.example/m.wasm", "http://modules.example/m.wasm"),
    ("https://modules.example/m.wasm#access_token=abc", "https://modules.example/m.wasm?<redacted>"),
    ("https://modules.example/m.wasm?a=1#frag", "https://modules.example/m.wasm?<redacted>"),
    ("https://modules.example/m.wasm?", "https://modules.example/m.wasm?<redacted>"),
    ("http://[::1]:8080/m.wasm?sig=1", "http://[::1]:8080/m.wasm?<redacted>"),
    ("http://u:p@[2001:db8::1]/m.wasm", "http://[2001:db8::1]/m.wasm"),
    ("http://127.0.0.1:9/m.wasm", "http://127.0.0.1:9/m.wasm"),
    ("https://modules.example", "https://modules.example"),
    ("/modules/echo.wasm", "/modules/echo.wasm"),
    ("relative/echo.wasm", "relative/echo.wasm"),
])
def test_keeps_scheme_host_port_path_and_hides_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", [S3, GCS, AZURE])
def test_no_signature_parameter_survives(url: str) -> None:
    shown = redact_url(url)
    for secret in ("Signature", "Credential", "AKIA", "sig=", "deadbeef", "0badc0ffee", "c2VjcmV0"):
        assert secret not in shown


@pytest.mark.parametrize(("url", "secret"), [
    ("http://user:pa/ss@host/m.wasm", "ss"),          # a raw '/' in the password: not a host, all hidden
    ("http://host:notaport/m.wasm", "notaport"),
    ("user:hunter2@host/m.wasm", "hunter2"),          # no scheme
    ("s3+x://key:hunter2@bucket/m.wasm", "hunter2"),  # an odd scheme
    ("//key:hunter2@host/m.wasm", "hunter2"),
])
def test_credentials_in_malformed_urls_are_hidden(url: str, secret: str) -> None:
    assert secret not in redact_url(url)


@pytest.mark.parametrize("odd", ["", "?", "#", "@", "://", "http://", "http://@", "http://[::1", "\x00\xff",
                                 "https://ex\u00e4mple/\u2603?x", "a" * 10_000, "::::"])
def test_never_raises_on_odd_input(odd: str) -> None:
    assert isinstance(redact_url(odd), str)


@pytest.mark.parametrize("odd", [None, 42, b"http://u:p@h/?s"])
def test_a_non_string_is_redacted_whole(odd: Any) -> None:
    assert redact_url(odd) == REDACTED


def test_control_characters_cannot_forge_log_lines() -> None:
    shown = redact_url("http://host/m.wasm\nERROR forged line\r")
    assert "\n" not in shown
    assert "\r" not in shown
    assert shown == "http://host/m.wasm%0AERROR forged line%0D"


def test_is_idempotent() -> None:
    for url in (S3, "http://u:p@h/x#y", "garbage?x"):
        assert redact_url(redact_url(url)) == redact_url(url)

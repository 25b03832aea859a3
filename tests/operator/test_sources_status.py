"""A module fetch failure reported by runtime pods reaches the WarmPool's conditions: named registry and
HTTP status, digests carried unmangled, credentials and URL secrets redacted, the message bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from warmpool_operator.health import Progress, diagnose
from warmpool_operator.readyz import MAX_MESSAGE_CHARS, ReadyzReport, clean_message, parse_readyz
from warmpool_operator.spec import parse_spec
from warmpool_operator.status import compute_status

pytestmark = pytest.mark.unit

SHA = "4" * 64
OTHER = "9" * 64
NOT_YET = Progress(desired=1, replicas=1, updated=1, ready=0, available=0, observed=True)


def report(code: str, message: str) -> ReadyzReport:
    """A runtime pod's /readyz body with one failed tuple, as the runtime writes it."""
    return parse_readyz({"ready": False, "tuples": [
        {"tenant": "acme", "sha256": SHA, "warm": 0, "target": 4, "ready": False,
         "error": {"code": code, "message": message}}]})


def conditions_for(reports: dict[str, ReadyzReport]) -> dict[str, dict[str, Any]]:
    problem = diagnose(deployment=None, pods=[], reports=reports)
    spec = parse_spec({"tenant": "acme", "module": {"sha256": SHA, "source": {
        "oci": {"repository": "127.0.0.1:5000/acme/classify"}}}})
    status = compute_status(name="classify", generation=3, spec=spec, progress=NOT_YET, problem=problem,
                            previous={}, now=datetime(2026, 1, 1, tzinfo=UTC))
    return {c["type"]: c for c in status["conditions"]}


def test_a_registry_refusal_stalls_the_pool_naming_the_registry_and_the_status() -> None:
    message = ("cannot fetch module oci://127.0.0.1:5000/acme/classify:v1: 401 from registry 127.0.0.1:5000 "
               "for acme/classify: HTTP 401 (not retried)")
    found = conditions_for({"classify-7d9-x": report("module_unreachable", message)})
    stalled, ready = found["Stalled"], found["Ready"]
    assert (stalled["status"], stalled["reason"]) == ("True", "ModuleUnreachable")
    assert ready["status"] == "False"
    assert "401 from registry 127.0.0.1:5000 for acme/classify" in stalled["message"]
    prefix = f"pod classify-7d9-x reports module_unreachable for tenant acme module {SHA[:12]}: "
    assert stalled["message"] == prefix + message
    assert stalled["observedGeneration"] == 3


def test_a_layer_digest_that_is_not_the_module_is_carried_with_both_digests() -> None:
    message = (f"the Wasm layer of oci://127.0.0.1:5000/acme/classify:v1 in registry 127.0.0.1:5000 has digest "
               f"sha256:{OTHER}, but the module is pinned to sha256:{SHA}")
    stalled = conditions_for({"p": report("module_invalid", message)})["Stalled"]
    assert stalled["message"].endswith(message)  # unmangled: no part of it looks like a URL to redact


def test_credentials_and_signed_urls_in_a_pod_message_are_redacted() -> None:
    message = ("cannot fetch module https://user:hunter2@modules.internal/m.wasm?X-Amz-Signature=abc: sent "
               "Authorization: Bearer eyJhbGciOi.payload.sig and basic dXNlcjpodW50ZXIy, got HTTP 401")
    stalled = conditions_for({"p": report("module_unreachable", message)})["Stalled"]["message"]
    for secret in ("hunter2", "X-Amz-Signature", "eyJhbGciOi", "dXNlcjpodW50ZXIy"):
        assert secret not in stalled
    assert "https://modules.internal/m.wasm?<redacted>" in stalled
    assert "Bearer <redacted>" in stalled
    assert "basic <redacted>" in stalled
    assert "got HTTP 401" in stalled


@pytest.mark.parametrize("prose", [
    "401 from registry r.example for a/m: an auth challenge this client does not speak (Basic and Bearer only)",
    "401 from registry r.example for a/m: a Bearer challenge without a usable http(s) realm",
    'the registry asked for Basic realm="r.example"',
])
def test_prose_about_auth_schemes_is_not_mistaken_for_a_credential(prose: str) -> None:
    assert clean_message(prose) == prose


def test_a_pod_cannot_flood_the_status_with_a_huge_message() -> None:
    huge = clean_message("401 from registry r.example for a/m " + "x" * 100_000)
    assert len(huge) == MAX_MESSAGE_CHARS + 3
    assert huge.startswith("401 from registry r.example for a/m ")
    assert clean_message("sha256:" + SHA) == "sha256:" + SHA
    long_code = report("c" * 500, "m").tuples[0].error
    assert long_code is not None
    assert len(long_code.code) == 64

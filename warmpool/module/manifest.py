"""The WarmPool manifest `warmpool module push` prints: the pushed module pinned by sha256 and OCI source."""

from __future__ import annotations

import re
from typing import Any

import yaml

from warmpool.module.reference import OciReference

API_VERSION = "tensorwasm.dev/v1alpha1"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ManifestError(ValueError):
    """An option that cannot go into a WarmPool; the message names the option."""


def default_name(reference: OciReference) -> str:
    """The repository's last path component as a DNS-1123 name (`acme/classify_v2` → `classify-v2`)."""
    name = re.sub(r"[^a-z0-9-]+", "-", reference.path.rsplit("/", 1)[-1].lower()).strip("-")[:63].strip("-")
    return name or "module"


def check_label(value: str, option: str) -> str:
    if not _LABEL.match(value):
        raise ManifestError(f"{option} {value!r} must be a DNS-1123 label: lowercase letters, digits and '-', "
                            f"at most 63, starting and ending with a letter or digit")
    return value


def warmpool_document(
    *, name: str, tenant: str, sha256: str, reference: OciReference, insecure: bool, pull_secret: str | None,
) -> dict[str, Any]:
    """A WarmPool for one module in an OCI registry; `reference` should carry the manifest digest (it pins)."""
    oci: dict[str, Any] = {"repository": reference.repository}
    if reference.reference:
        oci["reference"] = reference.reference
    if insecure:
        oci["insecure"] = True
    if pull_secret:
        oci["pullSecretRef"] = {"name": check_label(pull_secret, "--pull-secret")}
    return {
        "apiVersion": API_VERSION,
        "kind": "WarmPool",
        "metadata": {"name": check_label(name, "--name")},
        "spec": {
            "tenant": check_label(tenant, "--tenant"),
            "module": {"sha256": sha256, "source": {"oci": oci}},
        },
    }


def render(document: dict[str, Any], comments: list[str]) -> str:
    header = "".join(f"# {line}\n" for line in comments)
    return header + yaml.safe_dump(document, sort_keys=False)

"""OCI references (`host[:port]/path[:tag][@sha256:<hex>]`) parsed once into a frozen value."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                   r"(?::[0-9]{1,5})?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_NAME_LENGTH = 255


class BadReference(ValueError):
    """A reference that cannot name an OCI artifact; the message quotes it and says what is wrong."""


@dataclass(frozen=True)
class OciReference:
    """A repository in a named registry, optionally narrowed to a tag and/or a manifest digest."""

    registry: str
    """host[:port], e.g. ghcr.io or 127.0.0.1:5000."""
    path: str
    """The repository path inside the registry, e.g. acme/classify."""
    tag: str | None = None
    digest: str | None = None
    """A manifest digest, sha256:<64 hex>."""

    @property
    def repository(self) -> str:
        """host[:port]/path: what a WarmPool's `source.oci.repository` holds."""
        return f"{self.registry}/{self.path}"

    @property
    def reference(self) -> str | None:
        """What the registry API resolves: the digest when given (it pins), else the tag."""
        return self.digest or self.tag

    def with_digest(self, digest: str) -> OciReference:
        return OciReference(registry=self.registry, path=self.path, tag=self.tag, digest=digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def looks_like_host(component: str) -> bool:
    """Like docker: the first path component is a registry when it has a dot or a port, or is localhost."""
    return "." in component or ":" in component or component == "localhost"


def parse_reference(text: str) -> OciReference:
    """Parse `host[:port]/path[:tag][@sha256:<hex>]`; the registry host is never implied."""
    raw = text.strip()
    if not raw:
        raise BadReference("the OCI reference is empty: expected host[:port]/path[:tag]")
    if "://" in raw:
        raise BadReference(f"OCI reference {text!r} has a URL scheme: write host[:port]/path[:tag] "
                             f"(use --insecure for a plain-HTTP registry)")
    name, _, digest = raw.partition("@")
    if digest and not _DIGEST.match(digest):
        raise BadReference(f"OCI reference {text!r}: digest {digest!r} is not sha256:<64 lowercase hex>")
    head, slash, last = name.rpartition("/")
    if not slash:
        raise BadReference(f"OCI reference {text!r} names no registry: write host[:port]/path, "
                             f"e.g. ghcr.io/acme/{name or 'module'}")
    last, colon, tag = last.partition(":")
    if colon and not _TAG.match(tag):
        raise BadReference(f"OCI reference {text!r}: tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
    registry, _, path = f"{head}/{last}".partition("/")
    if not looks_like_host(registry) or not _HOST.match(registry):
        raise BadReference(f"OCI reference {text!r} does not start with a registry host[:port] "
                             f"(got {registry!r}; e.g. ghcr.io/acme/module or 127.0.0.1:5000/acme/module)")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise BadReference(f"OCI reference {text!r}: repository path component {component!r} must be "
                                 f"lowercase letters and digits, separated by '.', '_', '__' or '-'")
    if len(path) + len(registry) + 1 > MAX_NAME_LENGTH:
        raise BadReference(f"OCI reference {text!r}: the repository name is longer than {MAX_NAME_LENGTH}")
    return OciReference(registry=registry, path=path, tag=tag or None, digest=digest or None)

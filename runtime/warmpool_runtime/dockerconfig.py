"""Registry credentials from a `kubernetes.io/dockerconfigjson` file, looked up by registry host as kubelet does."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from warmpool_runtime.capped_read import FileRefused, read_capped

MAX_DOCKER_CONFIG_BYTES = 1 << 20
"""A pull secret larger than this is refused unread (Kubernetes caps a Secret at 1 MiB)."""
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
"""How `docker login` names Docker Hub in a config file; any of them serves a registry-1.docker.io pull."""


class DockerConfigError(ValueError):
    """A docker config file that cannot be used; the message names the file and the entry, never a secret."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password for one registry (the password never shows in a repr)."""

    username: str
    password: str = field(repr=False)


def load_docker_config(path: str) -> Mapping[str, Any]:
    """The file's `auths` mapping (registry key -> entry), bounded in size; errors never quote the content."""
    try:
        text = read_capped(path, MAX_DOCKER_CONFIG_BYTES)
    except FileRefused as exc:
        raise DockerConfigError(f"docker config {path} {exc}") from None
    except OSError as exc:
        raise DockerConfigError(f"cannot read docker config {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DockerConfigError(f"docker config {path} is not JSON") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise DockerConfigError(f"docker config {path} has no `auths` mapping (a kubernetes.io/dockerconfigjson "
                                "Secret's .dockerconfigjson)")
    return auths


def registry_key(key: str) -> str:
    """A config key as the registry host[:port] it names: `https://host:5000/v1/` -> `host:5000`."""
    key = key.strip()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            break
    return key.split("/", 1)[0].lower()


def credentials_for(auths: Mapping[str, Any], host: str, where: str = "docker config") -> Credentials | None:
    """The credentials the `auths` entry for registry `host` (host[:port]) gives, or None when it has none.

    An entry gives `auth` (base64 of `user:password`) or `username` and `password`, as kubelet reads them.
    Keys match by exact host[:port] after dropping a scheme and path; Docker Hub's aliases match each other.
    """
    wanted = {host.lower()}
    if wanted & {registry_key(k) for k in DOCKER_HUB_KEYS}:
        wanted |= {registry_key(k) for k in DOCKER_HUB_KEYS}
    for key, entry in auths.items():
        if not isinstance(key, str) or registry_key(key) not in wanted:
            continue
        if not isinstance(entry, Mapping):
            raise DockerConfigError(f"{where}: the entry for {registry_key(key)} is not a mapping")
        return _entry_credentials(entry, f"{where}: the entry for {registry_key(key)}")
    return None


def _entry_credentials(entry: Mapping[str, Any], where: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise DockerConfigError(f"{where} has an `auth` that is not base64 of user:password") from None
        user, colon, secret = decoded.partition(":")
        if not colon or not user:
            raise DockerConfigError(f"{where} has an `auth` that is not base64 of user:password")
        return Credentials(user, secret)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and username and isinstance(password, str):
        return Credentials(username, password)
    if username is not None or password is not None or auth is not None:
        raise DockerConfigError(f"{where} needs `auth` (base64 user:password) or `username` and `password` strings")
    return None

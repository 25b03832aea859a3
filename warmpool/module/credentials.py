"""Registry credentials: explicit, or from a docker config.json (DOCKER_CONFIG, ~/.docker), never echoed."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

MAX_CONFIG_BYTES = 1 << 20


class CredentialsError(ValueError):
    """Credentials that cannot be used; the message names the file or option, never a secret."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    origin: str = ""
    """Where they came from (an option or a file path), for error messages."""


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (as docker, helm and oras look)."""
    directory = environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory).expanduser() / "config.json"
    return Path(environ.get("HOME", "~")).expanduser() / ".docker" / "config.json"


def normalise_auth_key(key: str) -> str:
    """`https://host/v1/` or `host/v2/` as docker writes them: keep host[:port] only."""
    return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key).split("/", 1)[0].lower()


def _decode_auth(value: str, origin: str, registry: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{origin}: auths[{registry!r}].auth is not base64 of user:password") from exc
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise CredentialsError(f"{origin}: auths[{registry!r}].auth does not decode to user:password")
    return username, password


def credentials_from_docker_config(document: Any, registry: str, origin: str) -> Credentials | None:
    """The login for `registry` in a docker config document, or None when it has none."""
    if not isinstance(document, dict):
        raise CredentialsError(f"{origin}: not a JSON object")
    auths = document.get("auths") or {}
    if not isinstance(auths, dict):
        raise CredentialsError(f"{origin}: `auths` is not an object")
    wanted = registry.lower()
    for key, entry in auths.items():
        if normalise_auth_key(str(key)) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken") or entry.get("registrytoken"):
            raise CredentialsError(f"{origin}: the login for {registry} is an identity token, which is not "
                                   f"supported; use --username and --password-stdin")
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            username, password = _decode_auth(entry["auth"], origin, registry)
            return Credentials(username=username, password=password, origin=origin)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(username=entry["username"], password=entry["password"], origin=origin)
    helpers = document.get("credHelpers") or {}
    helper = helpers.get(registry) if isinstance(helpers, dict) else None
    if helper or document.get("credsStore"):
        name = helper or document.get("credsStore")
        raise CredentialsError(f"{origin}: the login for {registry} is kept by the credential helper "
                               f"docker-credential-{name}, which is not supported; use --username and "
                               f"--password-stdin, or a config whose `auths` holds it")
    return None


def load_docker_config(path: Path) -> Any:
    """The parsed config file, or None when it does not exist."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read the docker config {path}: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise CredentialsError(f"the docker config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise CredentialsError(f"the docker config {path} is not valid JSON (line {getattr(exc, 'lineno', '?')})") \
            from None


def read_password(stream: TextIO) -> str:
    """The password from the first line of stdin (as `docker login --password-stdin` reads it)."""
    password = stream.readline().rstrip("\r\n")
    if not password:
        raise CredentialsError("--password-stdin: standard input held no password")
    return password


def resolve_credentials(
    *, registry: str, username: str | None, password: str | None, docker_config: Path | None,
    environ: Mapping[str, str],
) -> Credentials | None:
    """Explicit --username/--password-stdin first, then the docker config; None means anonymous."""
    if username is not None or password is not None:
        if not username or password is None:
            raise CredentialsError("--username and --password-stdin go together")
        return Credentials(username=username, password=password, origin="--username/--password-stdin")
    path = docker_config if docker_config is not None else docker_config_path(environ)
    document = load_docker_config(path)
    if document is None:
        if docker_config is not None:
            raise CredentialsError(f"the docker config {path} does not exist")
        return None
    return credentials_from_docker_config(document, registry, str(path))

"""Modules from OCI registries: the source's reference, the registry's auth challenge, a bounded blob pull.

The client is written here on aiohttp rather than taken from oras-py: oras-py is built on `requests`, whose
pulls stream to a file with no byte cap, have no deadline over the whole exchange (challenge, token,
manifest, blob), and follow redirects by `requests`' rules. A registry's answers are hostile input here, so
every response is read through warmpool_runtime.fetch: size-capped, deadlined, retried with backoff, and
redirected by hand so that a registry token never leaves the registry's origin (a blob GET usually redirects
to object storage).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from warmpool_contract import REDACTED, SHA256_HEX
from warmpool_runtime.dockerconfig import Credentials, DockerConfigError, credentials_for, load_docker_config
from warmpool_runtime.errors import ModuleError, ModuleTooLarge, ModuleUnreachable
from warmpool_runtime.fetch import (
    FetchFailed,
    Progress,
    Request,
    get_body,
    parse_retry_after,
    retried_status,
    retrying,
    session,
)
from warmpool_runtime.settings import RuntimeSettings

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                         "application/vnd.docker.distribution.manifest.list.v2+json"})
WASM_LAYER_TYPES = frozenset({
    "application/wasm",  # the CNCF Wasm OCI artifact layout's layer
    "application/vnd.wasm.content.layer.v1+wasm",  # wasm-to-oci
    "application/vnd.module.wasm.content.layer.v1+wasm",  # the older Wasm image spec
})
MAX_MANIFEST_BYTES = 4 << 20
"""The manifest size CNCF Distribution accepts; a manifest larger than this is refused unread."""
MAX_TOKEN_BYTES = 64 << 10
"""A token endpoint's answer larger than this is refused."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^(?P<host>{_HOST}(?::[0-9]{{1,5}})?)/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)$")
"""host[:port]/path, the path as the distribution spec's name grammar has it."""
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_TOKEN = re.compile(r"[\x21-\x7e]{1,16384}")
"""A usable bearer token: visible ASCII, as a header value allows it."""


class OciReferenceError(ValueError):
    """A repository or reference that does not parse; the message says what form is expected."""


@dataclass(frozen=True, slots=True)
class OciSource:
    """A module in an OCI registry: the blob `sha256:<module sha256>` of `repository`, optionally found through
    the manifest `reference` (a tag or manifest digest)."""

    repository: str
    reference: str | None = None
    insecure: bool = False
    docker_config: str | None = None
    """Path of a kubernetes.io/dockerconfigjson file holding credentials for the registry."""

    @property
    def host(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The repository's path within its registry, e.g. `acme/classify`."""
        return self.repository.split("/", 1)[1]

    def describe(self) -> str:
        tail = "" if self.reference is None else (f"@{self.reference}" if DIGEST.fullmatch(self.reference)
                                                 else f":{self.reference}")
        return f"oci://{self.repository}{tail}"


def parse_repository(value: str) -> str:
    """`value` if it is host[:port]/path with an explicit registry host; raises OciReferenceError otherwise."""
    match = REPOSITORY.fullmatch(value)
    if match is None:
        raise OciReferenceError("must be host[:port]/path with no scheme, tag or digest (path components "
                                "lowercase letters, digits and . _ -)")
    host = match["host"]
    if not (host.startswith("[") or "." in host or ":" in host or host.split(":")[0] == "localhost"):
        raise OciReferenceError(f"must start with the registry host (a name with a dot, a port, or localhost), "
                                f"got {host!r} as the host")
    return value


def parse_reference(value: str) -> str:
    """A tag or a manifest digest `sha256:<64 hex>`; raises OciReferenceError otherwise."""
    if value.startswith("sha256:"):
        if not DIGEST.fullmatch(value):
            raise OciReferenceError("a digest reference must be sha256: and 64 lowercase hex characters")
        return value
    if not TAG.fullmatch(value):
        raise OciReferenceError("must be a tag (letters, digits, _ . -, at most 128, not starting with . or -) "
                                "or a manifest digest sha256:<hex>")
    return value


# The registry's auth challenge ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Challenge:
    """A `WWW-Authenticate` challenge: its scheme (lowercase) and auth-params (names lowercase)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


_TOKEN68 = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_PARAM = re.compile(rf'\s*({_TOKEN68})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN68}))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` header (`Bearer realm="...",service="...",scope="..."`),
    or None when it does not parse."""
    scheme, _, rest = header.strip().partition(" ")
    if not re.fullmatch(_TOKEN68, scheme):
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            break  # a second challenge, or garbage: what was read so far stands
        quoted, plain = match[2], match[3]
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
        position = match.end()
    return Challenge(scheme.lower(), params)


def basic(credentials: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


# Pulling ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Pull:
    """One attempt's state: the registry session, the credentials and the Authorization that works."""

    source: OciSource
    client: aiohttp.ClientSession
    credentials: Credentials | None
    base: URL
    authorization: str | None = None
    secrets: list[str] = field(default_factory=list)

    def failure(self, status: int, what: str, transient: bool | None = None,
                retry_after: float | None = None) -> FetchFailed:
        return FetchFailed(f"{status} from registry {self.source.host} for {self.source.name}: {what}",
                           retried_status(status) if transient is None else transient, retry_after)

    def request(self) -> Request:
        return Request(headers={"Authorization": self.authorization} if self.authorization else {})

    async def get(self, path: str, *, max_bytes: int, progress: Progress, what: str, accept: str | None = None,
                  missing: str = "not found") -> bytes:
        """GET a registry path; one 401 is answered by the challenge it carries, then the GET is repeated."""
        url = self.base.join(URL(path, encoded=True))
        try:
            return await get_body(self.client, url, self.request(), max_bytes=max_bytes, progress=progress,
                                  on_status=functools.partial(self._first_status, missing), what=what, accept=accept)
        except _Unauthorized as unauthorized:
            await self.authenticate(unauthorized.challenge)
        return await get_body(self.client, url, self.request(), max_bytes=max_bytes, progress=progress,
                              on_status=functools.partial(self._status, missing), what=what, accept=accept)

    def _first_status(self, missing: str, status: int, headers: Mapping[str, str]) -> Exception:
        if status == 401:
            return _Unauthorized(parse_challenge(headers.get("WWW-Authenticate", "")))
        return self._status(missing, status, headers)

    def _status(self, missing: str, status: int, headers: Mapping[str, str]) -> FetchFailed:
        if status == 401:
            return self.failure(401, "credentials refused" if self.credentials else "no valid credentials "
                                "(the registry wants credentials; give source.oci.dockerConfig)")
        if status == 403:
            return self.failure(403, "access denied to these credentials" if self.credentials else "access denied")
        if status == 404:
            return self.failure(404, missing)
        return self.failure(status, f"HTTP {status}", retry_after=parse_retry_after(headers.get("Retry-After")))

    async def authenticate(self, challenge: Challenge | None) -> None:
        """Answer a 401's challenge: Basic with the credentials, or a Bearer token from the challenge's realm."""
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise self.failure(401, "an auth challenge this client does not speak (Basic and Bearer only)", False)
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._status("", 401, {})
            self.authorization = basic(self.credentials)
            return
        realm = challenge.params.get("realm", "")
        realm_url = URL(realm, encoded=True) if realm else None
        if realm_url is None or realm_url.scheme not in ("http", "https") or not realm_url.host:
            raise self.failure(401, "a Bearer challenge without a usable http(s) realm", False)
        if realm_url.scheme == "http" and self.base.scheme == "https":
            raise self.failure(401, "a Bearer challenge whose realm is plain http for an https registry", False)
        query = {k: challenge.params[k] for k in ("service",) if k in challenge.params}
        query["scope"] = challenge.params.get("scope", f"repository:{self.source.name}:pull")
        token_url = realm_url.update_query(query)
        headers = {"Authorization": basic(self.credentials)} if self.credentials else {}

        def on_status(status: int, headers: Mapping[str, str]) -> Exception:
            if status in (401, 403):
                return self.failure(401, "credentials refused by the token service" if self.credentials else
                                    "no valid credentials (the token service refused an anonymous pull)", False)
            return self.failure(status, f"token service answered HTTP {status}")

        body = await get_body(self.client, token_url, Request(headers=headers), max_bytes=MAX_TOKEN_BYTES,
                              progress=Progress(), on_status=on_status,
                              what=f"token answer of registry {self.source.host}")
        try:
            answer = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            answer = None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise self.failure(200, "the token service's answer holds no token", False)
        self.secrets.append(token)
        self.authorization = f"Bearer {token}"


class _Unauthorized(Exception):
    """A first 401: answer its challenge and ask again."""

    def __init__(self, challenge: Challenge | None) -> None:
        super().__init__("401")
        self.challenge = challenge


def wasm_layer(manifest: bytes, source: OciSource) -> Mapping[str, Any]:
    """The manifest's one Wasm layer; a ModuleError naming the registry and repository when there is none."""
    where = f"manifest {source.reference} of {source.name} in registry {source.host}"
    try:
        doc = json.loads(manifest)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModuleError(f"{where} is not JSON") from None
    if not isinstance(doc, dict):
        raise ModuleError(f"{where} is not a JSON object")
    if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
        raise ModuleError(f"{where} is an index, not an image manifest: pin a platform manifest's digest instead")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ModuleError(f"{where} has no layers")
    wasm = [layer for layer in layers if isinstance(layer, dict) and layer.get("mediaType") in WASM_LAYER_TYPES]
    if len(wasm) != 1:
        raise ModuleError(f"{where} has {len(wasm)} Wasm layers (media type application/wasm or a Wasm OCI layer "
                          "type), expected exactly one")
    return wasm[0]


def fetch_blob(source: OciSource, sha256: str, max_bytes: int, settings: RuntimeSettings,
               sleep: Callable[[float], None] = time.sleep) -> bytes:
    """The bytes of blob `sha256:<sha256>` of the source's repository, through its manifest when a reference is
    given (whose Wasm layer must be that very blob). Retries and deadlines as for a URL source; errors name the
    registry, repository and HTTP status, never a password or token."""
    if not SHA256_HEX.fullmatch(sha256):
        raise ModuleError(f"module sha256 {sha256!r} is not 64 lowercase hex characters")
    credentials = None
    if source.docker_config is not None:
        try:
            credentials = credentials_for(load_docker_config(source.docker_config), source.host,
                                          f"docker config {source.docker_config}")
        except DockerConfigError as exc:
            raise ModuleUnreachable(f"cannot fetch module {source.describe()}: {exc}") from None
    secrets = [credentials.password, basic(credentials).split(" ", 1)[1]] if credentials else []
    base = URL(f"{'http' if source.insecure else 'https'}://{source.host}/")
    digest = f"sha256:{sha256}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.fetch_timeout_seconds,
                                    sock_read=settings.fetch_timeout_seconds)
    pulls: list[_Pull] = []

    async def attempt(progress: Progress) -> bytes:
        async with session(timeout) as client:
            pull = _Pull(source, client, credentials, base)
            pulls.append(pull)
            if source.reference is not None:
                manifest = await pull.get(f"/v2/{source.name}/manifests/{source.reference}",
                                          max_bytes=MAX_MANIFEST_BYTES, progress=Progress(),
                                          what=f"manifest of {source.describe()}", accept=", ".join(MANIFEST_TYPES),
                                          missing=f"manifest {source.reference} not found")
                if DIGEST.fullmatch(source.reference) and \
                        f"sha256:{hashlib.sha256(manifest).hexdigest()}" != source.reference:
                    raise ModuleError(f"registry {source.host} answered {source.name}@{source.reference} with a "
                                      "manifest of another digest")
                layer = wasm_layer(manifest, source)
                found = layer.get("digest")
                if found != digest:
                    shown = found if isinstance(found, str) and DIGEST.fullmatch(found) else repr(found)[:80]
                    raise ModuleError(
                        f"the Wasm layer of {source.describe()} in registry {source.host} has digest "
                        f"{shown}, but the module is pinned to {digest}")
                size = layer.get("size")
                if isinstance(size, int) and not isinstance(size, bool) and size > max_bytes:
                    raise ModuleTooLarge(f"module {source.describe()} is {size} bytes (its manifest says), over the "
                                         f"{max_bytes}-byte cap")
            return await pull.get(f"/v2/{source.name}/blobs/{digest}", max_bytes=max_bytes, progress=progress,
                                  what=f"module {source.describe()}", missing=f"blob {digest} not found")

    def clean(reason: str) -> str:
        for secret in secrets + [s for pull in pulls for s in pull.secrets]:
            if secret:
                reason = reason.replace(secret, REDACTED)
        return reason

    return retrying(source.describe(), attempt, settings, clean=clean, sleep=sleep)

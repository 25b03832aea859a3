"""A small OCI Distribution client: push and pull blobs and manifests, Basic or Bearer auth, bounded.

Every answer from a registry is treated as hostile: each request has a timeout, manifests and
blobs are read up to a size limit and checked against their digest, and there are no retries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from warmpool.module.credentials import Credentials

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
MAX_MANIFEST_BYTES = 4 << 20
MAX_TOKEN_BYTES = 1 << 20
MAX_ERROR_BYTES = 16 << 10
_CHUNK = 1 << 16
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(RuntimeError):
    """A registry request failed; the message names the registry and what was asked."""


class AuthenticationError(RegistryError):
    """The registry refused the request for want of valid credentials (401/403)."""


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lower-case: basic or bearer."""
    params: Mapping[str, str]


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header, e.g. `Bearer realm="...",service="..."`."""
    match = re.match(r"\s*([A-Za-z]+)\s*(.*)", header or "")
    if match is None:
        return None
    params = {key.lower(): value for key, value in re.findall(r'([A-Za-z_]+)\s*=\s*"([^"]*)"', match.group(2))}
    return Challenge(scheme=match.group(1).lower(), params=params)


def _error_detail(response: requests.Response) -> str:
    """The registry's OCI error codes and messages, if it sent any (bounded, one line)."""
    try:
        raw = response.raw.read(MAX_ERROR_BYTES, decode_content=True) if response.raw else b""
        errors = json.loads(raw).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError, OSError, requests.RequestException):
        return ""
    text = "; ".join(p for p in parts if p)[:300]
    return f" ({text})" if text else ""


class DistributionClient:
    """One registry (host[:port]) over HTTPS, or plain HTTP when insecure."""

    def __init__(self, registry: str, *, insecure: bool = False, credentials: Credentials | None = None,
                 session: requests.Session | None = None) -> None:
        self.registry = registry
        self.insecure = insecure
        self.credentials = credentials
        self.base = f"{'http' if insecure else 'https'}://{registry}"
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxies or netrc from the environment: talk to the named host
        self._authorization: str | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DistributionClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests and auth ------------------------------------------------------------------

    def _send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, data: bytes | None = None,
              stream: bool = True) -> requests.Response:
        sent = dict(headers or {})
        if self._authorization:
            sent["Authorization"] = self._authorization
        try:
            return self._session.request(method, url, headers=sent, data=data, stream=stream,
                                         timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), allow_redirects=True)
        except requests.RequestException as exc:
            # str(exc) may quote an upload URL whose query carries opaque upload state: name the kind only.
            kind = (exc.__class__.__doc__ or "").strip().rstrip(".")
            raise RegistryError(f"registry {self.registry}: {method} {self._shown(url)} failed: "
                                f"{type(exc).__name__}" + (f" ({kind})" if kind else "")) from None

    def _shown(self, url: str) -> str:
        """A URL as errors may show it: path only (upload locations carry opaque state in their query)."""
        return urllib.parse.urlsplit(url).path

    def request(self, method: str, url: str, *, scope: str, headers: Mapping[str, str] | None = None,
                data: bytes | None = None) -> requests.Response:
        """Send, and on a 401 answer its challenge once (Basic credentials or a Bearer token), then resend."""
        response = self._send(method, url, headers=headers, data=data)
        if response.status_code == 401:
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            # A bearer token covers the scopes it was issued for: a request needing more asks for a new one.
            if self._authorization is None or (challenge is not None and challenge.scheme == "bearer"):
                response.close()
                self._authorization = self._answer(challenge, scope)
                response = self._send(method, url, headers=headers, data=data)
        if response.status_code in (401, 403):
            detail = _error_detail(response)
            response.close()
            who = (f"the credentials of user {self.credentials.username!r} from {self.credentials.origin}"
                   if self.credentials else "anonymous access (no credentials were found for it)")
            verb = "401 Unauthorized" if response.status_code == 401 else "403 Forbidden"
            raise AuthenticationError(f"registry {self.registry} refused {who}: {verb} for {method} "
                                      f"{self._shown(url)}{detail}")
        return response

    def _answer(self, challenge: Challenge | None, scope: str) -> str:
        if challenge is None:
            raise AuthenticationError(f"registry {self.registry} answered 401 without a WWW-Authenticate challenge")
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise AuthenticationError(f"registry {self.registry} requires a login and no credentials were "
                                          f"found for it (use --username/--password-stdin or a docker config)")
            return "Basic " + _basic(self.credentials)
        if challenge.scheme == "bearer":
            return "Bearer " + self._token(challenge, scope)
        raise AuthenticationError(f"registry {self.registry} asks for unsupported auth scheme {challenge.scheme!r}")

    def _token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm", "")
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise AuthenticationError(f"registry {self.registry}: token realm {realm[:200]!r} is not an http(s) URL")
        if parsed.scheme == "http" and not self.insecure:
            raise AuthenticationError(f"registry {self.registry}: refusing to send credentials to the plain-HTTP "
                                      f"token realm {parsed.netloc} (pass --insecure to allow)")
        # The scope the whole operation needs (pull,push for a push), not only the one request's.
        params = {"scope": scope or challenge.params.get("scope", "")}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            headers["Authorization"] = "Basic " + _basic(self.credentials)
        try:
            response = self._session.get(realm, params=params, headers=headers, stream=True,
                                         timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.registry}: token request to {parsed.netloc} failed: "
                                f"{type(exc).__name__}") from None
        with response:
            if response.status_code != 200:
                who = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
                raise AuthenticationError(f"registry {self.registry}: the token service {parsed.netloc} refused "
                                          f"{who}: HTTP {response.status_code}")
            body = _read_bounded(response, MAX_TOKEN_BYTES, f"registry {self.registry}: token answer")
        try:
            document = json.loads(body)
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"registry {self.registry}: the token service {parsed.netloc} sent no token")
        return token

    # -- the registry API -------------------------------------------------------------------

    def _url(self, path: str, kind: str, reference: str) -> str:
        return f"{self.base}/v2/{path}/{kind}/{reference}"

    def blob_exists(self, path: str, digest: str) -> bool:
        response = self.request("HEAD", self._url(path, "blobs", digest), scope=f"repository:{path}:pull,push")
        response.close()
        return response.status_code == 200

    def push_blob(self, path: str, data: bytes) -> str:
        """Upload data (monolithic POST then PUT) unless the registry has it already; return its digest."""
        digest = sha256_digest(data)
        if self.blob_exists(path, digest):
            return digest
        scope = f"repository:{path}:pull,push"
        with self.request("POST", f"{self.base}/v2/{path}/blobs/uploads/", scope=scope,
                          headers={"Content-Length": "0"}) as started:
            location = started.headers.get("Location")
            if started.status_code != 202 or not location:
                raise RegistryError(f"registry {self.registry}: starting a blob upload to {path} answered HTTP "
                                    f"{started.status_code}{_error_detail(started)}")
        target = urllib.parse.urljoin(f"{self.base}/", location)
        if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(self.base).netloc:
            raise RegistryError(f"registry {self.registry}: the upload location points to another host")
        separator = "&" if urllib.parse.urlsplit(target).query else "?"
        with self.request("PUT", f"{target}{separator}digest={urllib.parse.quote(digest)}", scope=scope,
                          headers={"Content-Type": "application/octet-stream"}, data=data) as finished:
            if finished.status_code != 201:
                raise RegistryError(f"registry {self.registry}: uploading blob {digest} to {path} answered HTTP "
                                    f"{finished.status_code}{_error_detail(finished)}")
        return digest

    def push_manifest(self, path: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; return its digest."""
        digest = sha256_digest(body)
        with self.request("PUT", self._url(path, "manifests", reference), scope=f"repository:{path}:pull,push",
                          headers={"Content-Type": media_type}, data=body) as response:
            if response.status_code != 201:
                raise RegistryError(f"registry {self.registry}: storing the manifest {path}:{reference} answered "
                                    f"HTTP {response.status_code}{_error_detail(response)}")
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"registry {self.registry}: stored manifest digest {answered} differs from {digest}")
        return digest

    def get_manifest(self, path: str, reference: str, accept: tuple[str, ...]) -> Manifest:
        """Fetch a manifest (at most MAX_MANIFEST_BYTES); a digest reference is verified."""
        response = self.request("GET", self._url(path, "manifests", reference), scope=f"repository:{path}:pull",
                                headers={"Accept": ", ".join(accept)})
        with response:
            if response.status_code == 404:
                raise RegistryError(f"registry {self.registry}: no manifest {path}:{reference} (404 Not Found)")
            if response.status_code != 200:
                raise RegistryError(f"registry {self.registry}: fetching the manifest {path}:{reference} answered "
                                    f"HTTP {response.status_code}{_error_detail(response)}")
            body = _read_bounded(response, MAX_MANIFEST_BYTES, f"registry {self.registry}: manifest {path}")
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        digest = sha256_digest(body)
        if _DIGEST.match(reference) and digest != reference:
            raise RegistryError(f"registry {self.registry}: manifest {path}@{reference} has digest {digest}")
        return Manifest(body=body, media_type=media_type, digest=digest)

    def get_blob(self, path: str, digest: str, max_bytes: int) -> bytes:
        """Fetch a blob of at most max_bytes and check it hashes to its digest."""
        response = self.request("GET", self._url(path, "blobs", digest), scope=f"repository:{path}:pull")
        with response:
            if response.status_code != 200:
                raise RegistryError(f"registry {self.registry}: fetching blob {digest} of {path} answered HTTP "
                                    f"{response.status_code}{_error_detail(response)}")
            data = _read_bounded(response, max_bytes, f"registry {self.registry}: blob {digest}")
        if sha256_digest(data) != digest:
            raise RegistryError(f"registry {self.registry}: blob {digest} of {path} does not match its digest")
        return data


def _basic(credentials: Credentials) -> str:
    return base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def _read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RegistryError(f"{what} is {declared} bytes, over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise RegistryError(f"{what} is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def as_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{what} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return document

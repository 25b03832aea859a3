"""The Kubernetes API adapter: the only module of the operator that talks to the API server.

The asyncio half of the official `kubernetes` client (`kubernetes.aio`, over aiohttp) with the credentials
kopf logs in with: requests run on the event loop, no thread in between. Only its request layer is used
(`param_serialize`, `call_api`), never its generated API classes or models: objects stay plain dicts,
answers parsed with `json.loads` on the loop (a thread would not help: the decoder holds the GIL).
Updates are JSON merge patches (RFC 7386), so that maps merge and owned fields can be deleted, or
server-side apply.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from kubernetes.aio.client.api_client import ApiClient
from kubernetes.aio.client.configuration import Configuration
from kubernetes.aio.client.exceptions import ApiException
from prometheus_client import Counter

from warmpool_operator.kinds import (
    DEPLOYMENTS,
    ApiError,
    Conflict,
    Forbidden,
    Invalid,
    Kind,
    NotFound,
    Unreachable,
    describe,
    request_resource,
    request_verb,
)

FIELD_MANAGER = "warmpool-operator"
USER_AGENT = "warmpool-operator/0.1.0"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# The client serializes a structured body as JSON for this content type too (JSON is YAML).
APPLY_PATCH = "application/apply-patch+yaml"
API_CONNECTIONS = 32
"""Requests in flight at once, each on a pooled connection; more wait for a free one."""
AUTH = ["BearerToken"]
"""The client's name for the `Authorization` header it fills from `Configuration.api_key`."""
NO_ANSWER = "<error>"
"""`code` of a request that got no HTTP answer (as client-go counts it)."""

TRANSIENT = (ApiError, TimeoutError)
"""Failures a later attempt may not meet: the API server refused or was unreachable, or time ran out."""


LoginFn = Callable[[], Awaitable[kopf.ConnectionInfo]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    request_seconds: float = 30.0
    connect_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any


class _Client:
    """One `ApiClient` (one aiohttp session) for one set of credentials, and the private files its TLS needs."""

    def __init__(self, info: kopf.ConnectionInfo, *, user_agent: str, timeouts: Timeouts) -> None:
        self._files: Path | None = None
        self._busy = 0
        self._retired = False
        self.closed = False
        config = Configuration(
            host=info.server.rstrip("/"),
            retries=None,
            connection_pool_maxsize=API_CONNECTIONS,
            # Like kopf's own session: the environment's proxy only when the credentials say so.
            client_session_kwargs={"trust_env": info.trust_env},
        )
        config.proxy = info.proxy_url
        config.verify_ssl = not info.insecure
        if info.ca_path:
            config.ssl_ca_cert = os.fsdecode(info.ca_path)
        elif info.ca_data:
            config.ca_cert_data = _pem(info.ca_data)
        config.cert_file = self._path(info.certificate_path, info.certificate_data, "client.crt")
        config.key_file = self._path(info.private_key_path, info.private_key_data, "client.key")
        authorization = info.as_http_headers().get("Authorization")
        if authorization:
            config.api_key = {"authorization": authorization}
        self._api = ApiClient(config)
        self._api.user_agent = user_agent
        # `total` covers waiting for a pooled connection, connecting, sending and reading the whole answer.
        self._timeout = aiohttp.ClientTimeout(total=timeouts.request_seconds, sock_connect=timeouts.connect_seconds)

    def _path(self, path: Any, data: str | bytes | None, name: str) -> str | None:
        """A file the client can load: the given path, else `data` written to a private temporary file."""
        if path:
            return os.fsdecode(path)
        if not data:
            return None
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix="warmpool-operator-"))  # mode 0700
        target = self._files / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(_pem(data))
        return str(target)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[_Client]:
        """The client for one request; a retired client closes once its last request is done."""
        self._busy += 1
        try:
            yield self
        finally:
            self._busy -= 1
            if self._retired and not self._busy:
                await self.close()

    async def retire(self) -> None:
        """Close now if idle, else after the requests still running on it."""
        self._retired = True
        if not self._busy:
            await self.close()

    async def call(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Any, content_type: str
    ) -> _Answer:
        """One request; raises `ApiException` for an error status, aiohttp's errors when no answer came."""
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        # The body goes past `param_serialize`: it is plain JSON already, and the client's walk to turn
        # models into dicts costs a tenth of the request's CPU time; `call_api` serializes it with json.dumps.
        method, url, headers, _, _ = await self._api.param_serialize(
            method, path, query_params=list((params or {}).items()), header_params=headers, auth_settings=AUTH,
        )
        response = await self._api.call_api(method, url, headers, body, _request_timeout=self._timeout)
        try:
            raw: bytes = await response.read()
        finally:
            response.response.release()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        try:
            answer: Any = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode(errors="replace")
        return _Answer(response.status, answer)

    async def close(self) -> None:
        self.closed = True
        files, self._files = self._files, None
        try:
            await self._api.close()
        finally:
            if files is not None:
                shutil.rmtree(files, ignore_errors=True)


def _pem(data: str | bytes) -> str:
    """PEM text from kubeconfig-style data: PEM already, or base64 of PEM."""
    text = data.decode("ascii") if isinstance(data, bytes) else data
    return text if text.startswith("-----BEGIN ") else base64.b64decode(text).decode("ascii")


class KubeApi:
    """CRUD on namespaced objects; re-logs in once when the credentials expire (401)."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        login: LoginFn | None = None,
        timeouts: Timeouts,
        user_agent: str = USER_AGENT,
        requests: Counter | None = None,
    ) -> None:
        """`requests` counts every request by `verb`, `resource` and `code` (see docs/metrics.md)."""
        self._info = info
        self._user_agent = user_agent
        self._login = login
        self._timeouts = timeouts
        self._requests = requests
        self._client: _Client | None = None
        self._retired: set[_Client] = set()
        self._log = logging.getLogger(__name__)

    async def use(self, info: kopf.ConnectionInfo) -> None:
        """Switch to fresh credentials (from kopf's re-login); requests under way finish on the old session."""
        self._info = info
        client, self._client = self._client, None
        self._retired = {c for c in self._retired if not c.closed}
        if client is not None:
            self._retired.add(client)
            await client.retire()

    async def close(self) -> None:
        """Close every session now, requests still under way included."""
        clients = [c for c in (self._client, *self._retired) if c is not None]
        self._client = None
        self._retired.clear()
        for client in clients:
            await client.close()

    def _open(self) -> _Client:
        if self._client is None:
            self._client = _Client(self._info, user_agent=self._user_agent, timeouts=self._timeouts)
        return self._client

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        verb: str | None = None,
    ) -> Any:
        for attempt in (1, 2):
            code = NO_ANSWER
            try:
                async with self._open().lease() as client:
                    answer = await client.call(method, path, params, body, content_type)
                code = str(answer.status)
                return answer.body
            except ApiException as exc:
                code = str(exc.status)
                if exc.status == 401 and attempt == 1 and self._login is not None:
                    self._log.info("API credentials rejected; logging in again")
                    await self.use(await self._login())
                    continue
                raise _error(exc, method, path) from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise Unreachable(method, path, self._why(exc)) from exc
            finally:
                self._count(verb or request_verb(method, path), path, code)
        raise ApiError(401, "Unauthorized", "credentials rejected after a fresh login", method=method, path=path)

    def _why(self, exc: BaseException) -> str:
        why = describe(exc)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"{why} (no connection within {self._timeouts.connect_seconds:g}s)"
        if isinstance(exc, TimeoutError):
            return f"{why} (no complete answer within {self._timeouts.request_seconds:g}s)"
        return why

    def _count(self, verb: str, path: str, code: str) -> None:
        if self._requests is not None:
            self._requests.labels(verb, request_resource(path), code).inc()

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._request("GET", kind.path(namespace, name))
        except NotFound:
            return None
        return found

    async def list(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if limit is not None:
            params["limit"] = str(limit)
        data = await self._request("GET", kind.path(namespace), params=params)
        items: list[dict[str, Any]] = list((data or {}).get("items") or [])
        return items

    async def create(self, kind: Kind, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """`namespace=None` creates a cluster-scoped object."""
        created: dict[str, Any] = await self._request(
            "POST", kind.path(namespace), params={"fieldManager": FIELD_MANAGER}, body=dict(body)
        )
        return created

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        patched: dict[str, Any] = await self._request(
            "PATCH",
            kind.path(namespace, name, subresource),
            params={"fieldManager": FIELD_MANAGER},
            body=dict(patch),
            content_type=MERGE_PATCH,
        )
        return patched

    async def apply(self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of `body` (the fields the operator owns), creating the object if missing.

        `force` takes over fields another manager changed by hand; fields others added alone stay.
        """
        applied: dict[str, Any] = await self._request(
            "PATCH",
            kind.path(namespace, name),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=dict(body),
            content_type=APPLY_PATCH,
            verb="apply",
        )
        return applied

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """False when it was already gone."""
        try:
            await self._request("DELETE", kind.path(namespace, name))
        except NotFound:
            return False
        return True

    async def patch_status(self, kind: Kind, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `status` into the object's status subresource."""
        return await self.merge_patch(kind, namespace, name, {"status": dict(status)}, subresource="status")

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set `Deployment.spec.replicas` (the autoscaler's write, see `ownership`)."""
        return await self.merge_patch(DEPLOYMENTS, namespace, name, {"spec": {"replicas": replicas}})


def _error(exc: ApiException, method: str, path: str) -> ApiError:
    """The API server's refusal as an `ApiError`: its Status object's reason and message when it sent one."""
    status = int(exc.status)
    data: Any = None
    if exc.body:
        with contextlib.suppress(ValueError):
            data = json.loads(exc.body)
    if isinstance(data, Mapping):
        reason = str(data.get("reason") or exc.reason or "")
        message = str(data.get("message") or data)
    else:
        reason = str(exc.reason or "")
        message = str(exc.body or "")
    cls = {403: Forbidden, 404: NotFound, 409: Conflict, 422: Invalid}.get(status, ApiError)
    return cls(status, reason, message.strip(), method=method, path=path)


async def login(settings: kopf.OperatorSettings, logger: kopf.Logger) -> kopf.ConnectionInfo:
    """In-cluster service account first, then the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    info = kopf.login_with_service_account(settings=settings, logger=logger)
    if info is None:
        info = kopf.login_with_kubeconfig(settings=settings, logger=logger)
    if info is None:
        raise kopf.LoginError("no in-cluster service account and no kubeconfig found")
    return info

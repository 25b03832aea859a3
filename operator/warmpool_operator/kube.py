"""The Kubernetes API adapter: the only module of the operator that talks to the API server.

Plain REST over aiohttp with the credentials kopf logs in with, objects as plain dicts, and JSON
merge patches (RFC 7386) for every update, so that maps merge and owned fields can be deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

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
)

FIELD_MANAGER = "warmpool-operator"
USER_AGENT = "warmpool-operator/0.1.0"
MERGE_PATCH = "application/merge-patch+json"
# JSON is YAML: server-side apply accepts the same body.
APPLY_PATCH = "application/apply-patch+yaml"

TRANSIENT = (ApiError, aiohttp.ClientError, TimeoutError)
"""Failures a later attempt may not meet: the API server refused or was unreachable, or time ran out."""


LoginFn = Callable[[], Awaitable[kopf.ConnectionInfo]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    request_seconds: float = 30.0
    connect_seconds: float = 5.0


class KubeApi:
    """CRUD on namespaced objects; re-logs in once when the credentials expire (401)."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        login: LoginFn | None = None,
        timeouts: Timeouts,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._info = info
        self._user_agent = user_agent
        self._login = login
        self._timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None
        self._log = logging.getLogger(__name__)

    async def use(self, info: kopf.ConnectionInfo) -> None:
        """Switch to fresh credentials (from kopf's re-login); the next request reconnects."""
        self._info = info
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            info = self._info
            ssl: Any = info.as_ssl_context() if info.server.startswith("https") else None
            self._session = aiohttp.ClientSession(
                base_url=info.server.rstrip("/") + "/",
                headers={**info.as_http_headers(), "User-Agent": self._user_agent, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(
                    total=self._timeouts.request_seconds, sock_connect=self._timeouts.connect_seconds
                ),
                connector=aiohttp.TCPConnector(ssl=ssl),
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        for attempt in (1, 2):
            session = self._open()
            headers = {"Content-Type": content_type} if body is not None else {}
            data = None if body is None else json.dumps(body)
            try:
                async with session.request(
                    method, path.lstrip("/"), params=params, data=data, headers=headers
                ) as resp:
                    status = resp.status
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = describe(exc)
                if isinstance(exc, TimeoutError):
                    why += f" (no complete answer within {self._timeouts.request_seconds:g}s)"
                raise Unreachable(method, path, why) from exc
            if status == 401 and attempt == 1 and self._login is not None:
                self._log.info("API credentials rejected; logging in again")
                await self.use(await self._login())
                continue
            try:
                answer: Any = json.loads(text) if text else None
            except ValueError:
                answer = text
            if status >= 400:
                raise _error(status, answer, method, path)
            return answer
        raise ApiError(401, "Unauthorized", "credentials rejected after a fresh login", method=method, path=path)

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
            "POST", kind.path(namespace), params={"fieldManager": FIELD_MANAGER}, body=body
        )
        return created

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        patched: dict[str, Any] = await self._request(
            "PATCH",
            kind.path(namespace, name, subresource),
            params={"fieldManager": FIELD_MANAGER},
            body=patch,
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
            body=body,
            content_type=APPLY_PATCH,
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


def _error(status: int, data: Any, method: str, path: str) -> ApiError:
    reason = str((data or {}).get("reason") or "") if isinstance(data, Mapping) else ""
    message = str((data or {}).get("message") or data) if isinstance(data, Mapping) else str(data or "")
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

"""A small aiohttp client for the Kubernetes API: token auth from a kubeconfig, JSON calls, watches."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class ApiAccess:
    server: str
    token: str
    ca_pem: bytes | None
    insecure: bool


def access_from_kubeconfig(document: Mapping[str, Any], base_dir: Path) -> ApiAccess:
    """Server, bearer token and CA of the kubeconfig's current context (token users only)."""
    def named(section: str, name: str) -> Mapping[str, Any]:
        for entry in document.get(section) or ():
            if entry.get("name") == name:
                return dict(entry.get(section[:-1]) or {})
        raise ValueError(f"kubeconfig: no {section[:-1]} named {name!r}")

    context = named("contexts", str(document.get("current-context") or ""))
    cluster = named("clusters", str(context.get("cluster")))
    user = named("users", str(context.get("user")))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base_dir / str(user["tokenFile"])).read_text().strip()
    if not token:
        raise ValueError("kubeconfig: the node agent needs a token user")
    ca: bytes | None = None
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(cluster["certificate-authority-data"])
    elif cluster.get("certificate-authority"):
        ca = (base_dir / str(cluster["certificate-authority"])).read_bytes()
    return ApiAccess(server=str(cluster["server"]).rstrip("/"), token=str(token), ca_pem=ca,
                     insecure=bool(cluster.get("insecure-skip-tls-verify")))


def load_access(path: Path) -> ApiAccess:
    return access_from_kubeconfig(yaml.safe_load(path.read_text()) or {}, path.parent)


class KubeApi:
    """JSON calls against one API server; one aiohttp session, closed with close()."""

    def __init__(self, access: ApiAccess) -> None:
        context = ssl.create_default_context()
        if access.ca_pem is not None:
            context.load_verify_locations(cadata=access.ca_pem.decode())
        if access.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._server = access.server
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {access.token}", "Accept": "application/json"},
            connector=aiohttp.TCPConnector(ssl=context),
            read_bufsize=4 * 1024 * 1024,  # one watch event is one line; pods with managedFields are long
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
        content_type: str = "application/json", allow: tuple[int, ...] = (),
    ) -> dict[str, Any] | None:
        """The decoded JSON answer; None for an allowed error status (e.g. 404); ApiError otherwise."""
        data = None if body is None else json.dumps(body)
        async with self._session.request(
            method, self._server + path, data=data, params=params,
            headers={"Content-Type": content_type}, timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            text = await response.text()
            if response.status in allow:
                return None
            if response.status >= 400:
                raise ApiError(response.status, text, f"{method} {path}")
            decoded: dict[str, Any] = json.loads(text) if text else {}
            return decoded

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Events of a watch request, one dict per line, until the server ends the stream."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        async with self._session.get(
            self._server + path, params=query, timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as response:
            if response.status >= 400:
                raise ApiError(response.status, await response.text(), f"watch {path}")
            async for line in response.content:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event

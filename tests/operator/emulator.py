"""A kmock Kubernetes API emulator with the API-server behaviour the operator relies on.

kmock stores objects and streams watch events; on top of that this subclass stamps what a real
API server does: `uid`, `creationTimestamp`, `generation` (bumped when `spec` changes),
`resourceVersion` (bumped on every write), `generateName`, status-subresource semantics (a `/status` write only
touches `status`, a main-endpoint write never does), label-selector filtering of lists, and server-side
apply as far as the operator relies on it: an apply creates a missing object, and fields a field manager
applied before and leaves out now are removed (lists are replaced whole, not merged by key).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import kmock
from aiohttp import web

OPERATOR_USER_AGENT_PREFIX = "warmpool-operator/"
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
APPLY_PATCH = "application/apply-patch+yaml"
# Maps server-side apply replaces whole (atomic in the API's schema), by resource plural.
ATOMIC_MAPS = {"services": (("spec", "selector"),)}

RESOURCES: dict[str, kmock.ResourceInfo] = {
    "tensorwasm.dev/v1alpha1/warmpools": kmock.ResourceInfo(
        kind="WarmPool",
        singular="warmpool",
        namespaced=True,
        shortnames={"wp"},
        subresources={"status", "scale"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "tensorwasm.dev/v1alpha1/runtimefleets": kmock.ResourceInfo(
        kind="RuntimeFleet",
        singular="runtimefleet",
        namespaced=True,
        shortnames={"rf"},
        subresources={"status", "scale"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "v1/secrets": kmock.ResourceInfo(
        kind="Secret", singular="secret", namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "apps/v1/deployments": kmock.ResourceInfo(
        kind="Deployment", singular="deployment", namespaced=True, subresources={"status", "scale"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "v1/services": kmock.ResourceInfo(
        kind="Service", singular="service", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "v1/configmaps": kmock.ResourceInfo(
        kind="ConfigMap", singular="configmap", namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "policy/v1/poddisruptionbudgets": kmock.ResourceInfo(
        kind="PodDisruptionBudget", singular="poddisruptionbudget", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod", singular="pod", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "v1/events": kmock.ResourceInfo(
        kind="Event", singular="event", namespaced=True, verbs={"get", "list", "watch", "create", "patch"}
    ),
    "kopf.dev/v1/kopfpeerings": kmock.ResourceInfo(
        kind="KopfPeering", singular="kopfpeering", namespaced=True, verbs={"get", "list", "watch", "create", "patch"}
    ),
    "kopf.dev/v1/clusterkopfpeerings": kmock.ResourceInfo(
        kind="ClusterKopfPeering", singular="clusterkopfpeering", namespaced=False,
        verbs={"get", "list", "watch", "create", "patch"},
    ),
    "v1/namespaces": kmock.ResourceInfo(
        kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"}
    ),
}


class ApiServerEmulator(kmock.KubernetesEmulator):
    """Use as `async with ApiServerEmulator() as api, kmock.Server(api): ...`."""

    def declare_resources(self, namespaces: tuple[str, ...]) -> None:
        for key, info in RESOURCES.items():
            self.resources[key] = info
        self.namespace_names = namespaces

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        # kmock reads "/api/v1/namespaces" as a namespace prefix; serve that one path here.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._serve_namespaces(raw_request)
        response: web.StreamResponse = await super().__call__(raw_request)
        return response

    async def _serve_namespaces(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        if raw_request.query.get("watch") != "true":
            items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in self.namespace_names]
            return web.json_response({"kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items})
        stream = web.StreamResponse(headers={"Content-Type": "application/json"})
        await stream.prepare(raw_request)
        await asyncio.Event().wait()  # namespaces never change here; the client ends the stream
        return stream

    def _next_version(self) -> str:
        counter: itertools.count[int] | None = getattr(self, "_versions", None)
        if counter is None:
            counter = self._versions = itertools.count(1)
        return str(next(counter))

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and _is_apply(request):
            # aiohttp parses JSON bodies of JSON content types only; an apply body is YAML (here JSON).
            original = request
            request = await self._as_merge(attrs.evolve(request, data=json.loads(request.text)))
            # kmock routes a request only while it is the one in its log (by identity).
            self._requests[self._requests.index(original)] = request
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._stamp_create(request)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._stamp_update(request)
        return await super()._handle(request)

    async def _as_merge(self, request: Any) -> Any:
        """A server-side apply as the merge patch it amounts to for this manager (a missing object
        is created first, from the applied body)."""
        applied: dict[tuple[Any, ...], Any] | None = getattr(self, "_applied", None)
        if applied is None:
            applied = self._applied = {}
        manager = (request.params or {}).get("fieldManager", "")
        key = (str(request.resource), request.namespace, request.name, manager)
        body = copy.deepcopy(request.data)
        exists = self._current(request) is not None
        previous = applied.get(key) if exists else None
        applied[key] = copy.deepcopy(body)
        if not exists:
            created = attrs.evolve(request, data=body)
            self._stamp_create(created)
            async with self._lock:
                self._objects[(request.resource, request.namespace, request.name)] = body
                await self._buses[request.resource].put({"type": "ADDED", "object": body})
            return attrs.evolve(request, data={})
        patch = merged(_removals(previous, body), body) if previous else body
        current = self._current(request) or {}
        for path in ATOMIC_MAPS.get(str(getattr(request.resource, "plural", "")), ()):
            want, have, into = body, current, patch
            for part in path[:-1]:
                want, have = want.get(part) or {}, have.get(part) or {}
                into = into.setdefault(part, {})
            leaf = path[-1]
            if isinstance(want.get(leaf), dict):
                into[leaf] = {**{k: None for k in have.get(leaf) or {}}, **want[leaf]}
        return attrs.evolve(request, data=patch)

    def _stamp_create(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_version()

    def _stamp_update(self, request: Any) -> None:
        data: dict[str, Any] = request.data
        if request.subresource == "status":
            for key in [k for k in data if k != "status"]:
                del data[key]
        elif "status" in self._subresources(request):
            data.pop("status", None)
        current = self._current(request)
        meta = data.setdefault("metadata", {})
        if current is not None and request.subresource is None and "spec" in data:
            old_spec = current.get("spec") or {}
            if merged(old_spec, data["spec"]) != old_spec:
                meta["generation"] = int((current.get("metadata") or {}).get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_version()

    def _subresources(self, request: Any) -> set[str]:
        for resource in self.resources:
            if resource == request.resource:
                return set(self.resources[resource].subresources)
        return set()

    def _current(self, request: Any) -> Mapping[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        raw: Mapping[str, Any] = self.objects[key].raw
        return raw

    async def _serve_list(self, request: Any) -> Any:
        payload: dict[str, Any] = await super()._serve_list(request)  # type: ignore[assignment]
        selector = (request.params or {}).get("labelSelector")
        if selector:
            payload["items"] = [item for item in payload["items"] if matches(selector, item)]
        limit = (request.params or {}).get("limit")
        if limit:
            payload["items"] = payload["items"][: int(limit)]
        return payload


def merged(base: Any, patch: Any) -> Any:
    """RFC 7386 merge of `patch` into `base`, without touching either."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


def _removals(previous: Any, current: Any) -> Any:
    """A merge patch deleting what `previous` set and `current` no longer does."""
    if not isinstance(previous, Mapping) or not isinstance(current, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in previous.items():
        if key not in current:
            out[key] = None
        elif isinstance(value, Mapping):
            out[key] = _removals(value, current[key])
    return out


def _is_apply(request: Any) -> bool:
    method = str(getattr(request.method, "value", request.method)).upper()
    content_type = (request.headers or {}).get("Content-Type", "")
    return method == "PATCH" and content_type.startswith(APPLY_PATCH)


def matches(selector: str, obj: Mapping[str, Any]) -> bool:
    """Equality-based label selectors (`a=b,c!=d,e`), as list requests use them."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def is_operator_write(request: Any) -> bool:
    agent = (request.headers or {}).get("User-Agent", "")
    method = str(getattr(request.method, "value", request.method)).upper()
    return method in WRITE_METHODS and agent.startswith(OPERATOR_USER_AGENT_PREFIX)

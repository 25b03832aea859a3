"""The resources the operator reads and writes, and the API server's refusals, as plain values (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from warmpool_operator.spec import GROUP, PLURAL, VERSION


@dataclass(frozen=True, slots=True)
class Kind:
    """A namespaced resource: where its objects live in the REST tree."""

    api_version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """`namespace=None` addresses the resource across all namespaces (lists only)."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        scope = f"/namespaces/{namespace}" if namespace is not None else ""
        path = f"{prefix}{scope}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


WARMPOOLS = Kind(f"{GROUP}/{VERSION}", PLURAL)
DEPLOYMENTS = Kind("apps/v1", "deployments")
SERVICES = Kind("v1", "services")
CONFIGMAPS = Kind("v1", "configmaps")
SECRETS = Kind("v1", "secrets")
PODS = Kind("v1", "pods")
PEERINGS = Kind("kopf.dev/v1", "kopfpeerings")
CLUSTER_PEERINGS = Kind("kopf.dev/v1", "clusterkopfpeerings")
NAMESPACES = Kind("v1", "namespaces")
LEASES = Kind("coordination.k8s.io/v1", "leases")
DISRUPTION_BUDGETS = Kind("policy/v1", "poddisruptionbudgets")
RUNTIMEFLEETS = Kind(f"{GROUP}/{VERSION}", "runtimefleets")
KINDS_BY_NAME = {
    "ConfigMap": CONFIGMAPS,
    "Service": SERVICES,
    "Deployment": DEPLOYMENTS,
    "Pod": PODS,
    "PodDisruptionBudget": DISRUPTION_BUDGETS,
    "Secret": SECRETS,
}


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def request_verb(method: str, path: str) -> str:
    """The RBAC verb of a REST request: a GET of a collection is a list, of one object a get."""
    if method.upper() != "GET":
        return _VERBS.get(method.upper(), method.lower())
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    # /api/v1/<plural> or /apis/<group>/<version>/<plural>, optionally under namespaces/<ns>.
    start = 2 if parts[:1] == ["api"] else 3
    if parts[start : start + 1] == ["namespaces"] and len(parts) > start + 2:
        start += 2
    return "list" if len(parts) <= start + 1 else "get"


def request_resource(path: str) -> str:
    """`services`, `deployments.apps`, `warmpools.tensorwasm.dev/status`: the resource a path names."""
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    group = "" if parts[:1] == ["api"] else (parts[1] if len(parts) > 1 else "")
    start = 2 if parts[:1] == ["api"] else 3
    if parts[start : start + 1] == ["namespaces"] and len(parts) > start + 2:
        start += 2
    plural = parts[start] if len(parts) > start else "?"
    sub = f"/{parts[start + 2]}" if len(parts) > start + 2 else ""
    return f"{plural}.{group}{sub}" if group else f"{plural}{sub}"


# The authorizer's words: `cannot create resource "services" in API group "" in the namespace "x"`
# (a server-side apply is a PATCH, yet what RBAC refused may be the create it implies).
_RBAC_REFUSAL = re.compile(r'cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?')


class ApiError(Exception):
    """A non-success answer from the API server; the message carries status, reason, request and cause."""

    def __init__(self, status: int, reason: str, message: str, *, method: str = "", path: str = "") -> None:
        request = f" on {method} {path}" if method else ""
        super().__init__(f"{status} {reason or 'error'}{request}: {message or '(no message from the API server)'}")
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path

    @property
    def verb(self) -> str:
        """The verb RBAC refused as the API server names it, else the request's own."""
        said = _RBAC_REFUSAL.search(self.message)
        if said:
            return said[1]
        return request_verb(self.method, self.path) if self.method else "?"

    @property
    def resource(self) -> str:
        said = _RBAC_REFUSAL.search(self.message)
        if said:
            return f"{said[2]}.{said[3]}" if said[3] else said[2]
        return request_resource(self.path) if self.path else "?"


def describe(exc: BaseException) -> str:
    """An exception as one line that never comes out empty (a bare TimeoutError has no message)."""
    text = str(exc).strip()
    line = text if isinstance(exc, ApiError) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and str(cause).strip() and str(cause).strip() not in line:
        line += f" (caused by {type(cause).__name__}: {str(cause).strip()})"
    return line


class Unreachable(ApiError):
    """No answer from the API server at all: connection refused or reset, or the request timed out."""

    def __init__(self, method: str, path: str, why: str) -> None:
        super().__init__(0, "Unreachable", why, method=method, path=path)
        self.args = (f"API server unreachable on {method} {path}: {why}",)

    def __str__(self) -> str:
        return str(self.args[0])


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Forbidden(ApiError):
    """RBAC refused the request (403)."""


class Invalid(ApiError):
    """The API server refused the object itself (422): retrying the same request cannot help."""

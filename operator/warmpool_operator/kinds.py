"""The resources the operator reads and writes, and the API server's refusals, as plain values (no I/O)."""

from __future__ import annotations

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
PODS = Kind("v1", "pods")
PEERINGS = Kind("kopf.dev/v1", "kopfpeerings")
CLUSTER_PEERINGS = Kind("kopf.dev/v1", "clusterkopfpeerings")
NAMESPACES = Kind("v1", "namespaces")
KINDS_BY_NAME = {"ConfigMap": CONFIGMAPS, "Service": SERVICES, "Deployment": DEPLOYMENTS, "Pod": PODS}


class ApiError(Exception):
    """A non-success answer from the API server."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Forbidden(ApiError):
    """RBAC refused the request (403)."""


class Invalid(ApiError):
    """The API server refused the object itself (422): retrying the same request cannot help."""

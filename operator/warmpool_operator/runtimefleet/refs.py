"""A WarmPool's `spec.fleetRef` and `spec.auth`, parsed once into frozen dataclasses (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_FLEET_NAME = 55
"""A fleet's children are named `<fleet>-runtime[-config]`; Service names stop at 63 characters."""


class RefError(ValueError):
    """A fleetRef or auth value that cannot work; `field` names the offending path."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"{field_path}: {problem}")
        self.field = field_path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FleetRef:
    """The RuntimeFleet a WarmPool joins; `namespace` None means the pool's own."""

    name: str
    namespace: str | None = None

    def resolve(self, pool_namespace: str) -> tuple[str, str]:
        """(namespace, name) of the fleet."""
        return (self.namespace or pool_namespace, self.name)


@dataclass(frozen=True, slots=True)
class PoolAuth:
    """Calls need a bearer token among the values of this Secret (in the pool's namespace)."""

    secret_name: str


def parse_fleet_ref(raw: Any, where: str = "spec.fleetRef") -> FleetRef | None:
    if raw is None:
        return None
    obj = _object(raw, where)
    _no_unknown(obj, where, {"name", "namespace"})
    name = _string(obj, "name", where)
    if len(name) > MAX_FLEET_NAME or not DNS1035_LABEL.match(name):
        raise RefError(f"{where}.name", f"must be a DNS-1035 label of at most {MAX_FLEET_NAME} characters")
    namespace = obj.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not DNS1123_LABEL.match(namespace)
    ):
        raise RefError(f"{where}.namespace", "must be a DNS-1123 label")
    return FleetRef(name=name, namespace=namespace)


def parse_auth(raw: Any, where: str = "spec.auth") -> PoolAuth | None:
    if raw is None:
        return None
    obj = _object(raw, where)
    _no_unknown(obj, where, {"secretRef"})
    ref = _object(obj.get("secretRef"), f"{where}.secretRef")
    _no_unknown(ref, f"{where}.secretRef", {"name"})
    name = _string(ref, "name", f"{where}.secretRef")
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise RefError(f"{where}.secretRef.name", "must be a DNS-1123 subdomain")
    return PoolAuth(secret_name=name)


def _object(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        raise RefError(where, "is required")
    if not isinstance(raw, Mapping):
        raise RefError(where, "must be an object")
    return raw


def _no_unknown(obj: Mapping[str, Any], where: str, known: set[str]) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise RefError(where, f"unknown field(s) {', '.join(unknown)}")


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None or value == "":
        raise RefError(f"{where}.{key}", "is required")
    if not isinstance(value, str):
        raise RefError(f"{where}.{key}", f"must be a string, got {value!r}")
    return value

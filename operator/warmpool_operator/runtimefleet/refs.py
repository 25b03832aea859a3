"""A WarmPool's `spec.fleetRef` and `spec.auth`, parsed once into frozen dataclasses (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from warmpool_operator.fields import SpecError, no_unknown, require_object, require_string

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_FLEET_NAME = 55
"""A fleet's children are named `<fleet>-runtime[-config]`; Service names stop at 63 characters."""



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
    obj = require_object(raw, where)
    no_unknown(obj, where, {"name", "namespace"})
    name = require_string(obj, "name", where)
    if len(name) > MAX_FLEET_NAME or not DNS1035_LABEL.match(name):
        raise SpecError(f"{where}.name", f"must be a DNS-1035 label of at most {MAX_FLEET_NAME} characters")
    namespace = obj.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not DNS1123_LABEL.match(namespace)
    ):
        raise SpecError(f"{where}.namespace", "must be a DNS-1123 label")
    return FleetRef(name=name, namespace=namespace)


def parse_auth(raw: Any, where: str = "spec.auth") -> PoolAuth | None:
    if raw is None:
        return None
    obj = require_object(raw, where)
    no_unknown(obj, where, {"secretRef"})
    ref = require_object(obj.get("secretRef"), f"{where}.secretRef")
    no_unknown(ref, f"{where}.secretRef", {"name"})
    name = require_string(ref, "name", f"{where}.secretRef")
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise SpecError(f"{where}.secretRef.name", "must be a DNS-1123 subdomain")
    return PoolAuth(secret_name=name)

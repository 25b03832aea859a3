"""Which WarmPools naming a RuntimeFleet it hosts, and why the others are refused (pure).

A member is admitted when its namespace passes the fleet's policy, its module source can be
loaded by pods of another namespace, it has bearer tokens when the fleet requires them, and its
tenant and tuple are not already another namespace's or pool's in this fleet (the oldest wins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warmpool_operator.health import Problem
from warmpool_operator.runtimefleet.policy import namespace_refusal
from warmpool_operator.runtimefleet.spec import RuntimeFleet
from warmpool_operator.spec import WarmPool

NOT_ADMITTED = "NotAdmitted"
SOURCE_NOT_SHAREABLE = "SourceNotShareable"
TOKENS_REQUIRED = "TokensRequired"
AUTH_SECRET_MISSING = "AuthSecretMissing"
TENANT_CONFLICT = "TenantConflict"
TUPLE_CONFLICT = "TupleConflict"
FLEET_MISSING = "FleetMissing"
FLEET_INVALID = "FleetInvalid"


@dataclass(frozen=True, slots=True)
class Member:
    """An admitted WarmPool: its tuple is in the fleet's config."""

    pool: WarmPool
    token_digests: tuple[str, ...] | None
    """sha256 hex digests of its accepted bearer tokens; None when it has no `spec.auth`."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.pool.meta.namespace, self.pool.meta.name)


@dataclass(frozen=True, slots=True)
class Admission:
    members: tuple[Member, ...]
    refused: Mapping[tuple[str, str], Problem]
    refused_pools: tuple[WarmPool, ...] = ()


def fleet_missing(where: str) -> Problem:
    return Problem(FLEET_MISSING, f"RuntimeFleet {where} (spec.fleetRef) does not exist")


def admit(
    fleet: RuntimeFleet,
    candidates: Sequence[WarmPool],
    *,
    namespace_labels: Mapping[str, Mapping[str, str] | None],
    digests: Mapping[tuple[str, str], tuple[str, ...] | None],
) -> Admission:
    """`candidates` oldest first; `digests[(namespace, secret)]` None when the Secret does not exist."""
    members: list[Member] = []
    refused: dict[tuple[str, str], Problem] = {}
    refused_pools: list[WarmPool] = []
    tenants: dict[str, str] = {}
    tuples: dict[tuple[str, str], str] = {}
    for pool in candidates:
        meta, spec = pool.meta, pool.spec
        key = (meta.namespace, meta.name)
        problem, token_digests = _check(fleet, pool, namespace_labels, digests)
        if problem is None:
            owner_ns = tenants.get(spec.tenant)
            holder = tuples.get((spec.tenant, spec.module.sha256))
            if owner_ns is not None and owner_ns != meta.namespace:
                problem = Problem(TENANT_CONFLICT, f"tenant {spec.tenant} is already hosted by RuntimeFleet "
                                  f"{fleet.where} for WarmPools of namespace {owner_ns}", True)
            elif holder is not None:
                problem = Problem(TUPLE_CONFLICT, f"RuntimeFleet {fleet.where} already hosts tenant {spec.tenant} "
                                  f"module {spec.module.short_hash} for WarmPool {holder}", True)
        if problem is not None:
            refused[key] = problem
            refused_pools.append(pool)
            continue
        tenants[spec.tenant] = meta.namespace
        tuples[(spec.tenant, spec.module.sha256)] = f"{meta.namespace}/{meta.name}"
        members.append(Member(pool=pool, token_digests=token_digests))
    return Admission(members=tuple(members), refused=refused, refused_pools=tuple(refused_pools))


def _check(
    fleet: RuntimeFleet,
    pool: WarmPool,
    namespace_labels: Mapping[str, Mapping[str, str] | None],
    digests: Mapping[tuple[str, str], tuple[str, ...] | None],
) -> tuple[Problem | None, tuple[str, ...] | None]:
    meta, spec = pool.meta, pool.spec
    why = namespace_refusal(fleet, meta.namespace, namespace_labels.get(meta.namespace))
    if why is not None:
        return Problem(NOT_ADMITTED, why, True), None
    if spec.module.source.config_map is not None:
        return Problem(
            SOURCE_NOT_SHAREABLE,
            f"RuntimeFleet {fleet.where} cannot host a module from a ConfigMap (spec.module.source.configMapRef): "
            "it cannot be mounted into pods of another namespace, and one mount per pool would restart the "
            "fleet's pods on every change; use a url or oci source",
            True,
        ), None
    if spec.auth is None:
        if fleet.spec.require_tokens:
            return Problem(TOKENS_REQUIRED, f"RuntimeFleet {fleet.where} requires bearer tokens "
                           "(spec.requireTokens); set spec.auth.secretRef", True), None
        return None, None
    found = digests.get((meta.namespace, spec.auth.secret_name))
    if found is None:
        return Problem(AUTH_SECRET_MISSING, f"Secret {meta.namespace}/{spec.auth.secret_name} "
                       "(spec.auth.secretRef) does not exist"), None
    if not found:
        return Problem(AUTH_SECRET_MISSING, f"Secret {meta.namespace}/{spec.auth.secret_name} "
                       "(spec.auth.secretRef) holds no token"), None
    return None, found

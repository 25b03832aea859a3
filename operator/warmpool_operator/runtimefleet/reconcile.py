"""One level-based reconciliation of a RuntimeFleet: admit members, apply children, observe, write statuses.

Through the `FleetStore` protocol only (implemented by `KubeApi`); children are applied by
server-side apply and only when their intent or an owned field changed, so a settled fleet costs
no writes. Members are written into the ConfigMap and the digest Secret, never into the pod
template: adding or removing one restarts no pod.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from warmpool_operator.defaults import ClusterDefaults
from warmpool_operator.diff import drift
from warmpool_operator.fields import SpecError
from warmpool_operator.health import Problem, Progress, pod_is_ready, progress_of
from warmpool_operator.kinds import (
    DEPLOYMENTS,
    KINDS_BY_NAME,
    NAMESPACES,
    PODS,
    RUNTIMEFLEETS,
    SECRETS,
    WARMPOOLS,
    Kind,
)
from warmpool_operator.probing import probe_target
from warmpool_operator.reconcile import Write, apply, remove_dropped_budget
from warmpool_operator.render import RenderOptions
from warmpool_operator.runtimefleet.members import FLEET_INVALID, Admission, admit, fleet_missing
from warmpool_operator.runtimefleet.moves import HOST_FIELD, fleet_key, host_after, host_of, is_leaving, moved_status
from warmpool_operator.runtimefleet.render import deployment_name, render_children, selector_string
from warmpool_operator.runtimefleet.spec import From, RuntimeFleet
from warmpool_operator.runtimefleet.specs import ParsedSpecs, parse_members
from warmpool_operator.runtimefleet.status import fleet_status, member_status, stalled_member_status
from warmpool_operator.runtimefleet.tokens import TokenSecrets
from warmpool_operator.runtimefleet.tuples import Reports, TupleReport
from warmpool_operator.spec import WarmPool
from warmpool_operator.status import Notice, invalid_spec_status, notices

MAX_TOKENS_PER_SECRET = 64


class FleetStore(Protocol):
    """The API operations fleet reconciliation needs (implemented by `warmpool_operator.kube.KubeApi`)."""

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def list(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]: ...

    async def apply(self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch_status(
        self, kind: Kind, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool: ...


class TupleReader(Protocol):
    async def tuples(self, ip: str, port: int) -> tuple[TupleReport, ...] | None: ...


@dataclass(frozen=True, slots=True)
class MemberOutcome:
    status: dict[str, Any]
    problem: Problem | None
    notices: tuple[Notice, ...]
    uid: str = ""
    """The member WarmPool's uid, for the Events posted on it."""
    arrived_from: str | None = None
    """Set when this reconciliation recorded the tuple warm here (`status.fleet` became this fleet): the
    host it had before ("" for the pool's own Deployment), which now lets go."""


@dataclass(frozen=True, slots=True)
class FleetOutcome:
    status: dict[str, Any]
    problem: Problem | None
    notices: tuple[Notice, ...]
    writes: tuple[Write, ...]
    members: Mapping[tuple[str, str], MemberOutcome]
    hosted: tuple[tuple[str, str], ...] = ()
    """(tenant, sha256) of every tuple in the fleet's config."""


def names_fleet(pool: Mapping[str, Any], namespace: str, name: str) -> bool:
    """Whether a raw WarmPool's `spec.fleetRef` points at this fleet (before parsing it)."""
    ref = (pool.get("spec") or {}).get("fleetRef")
    if not isinstance(ref, Mapping):
        return False
    pool_ns = (pool.get("metadata") or {}).get("namespace")
    return ref.get("name") == name and (ref.get("namespace") or pool_ns) == namespace


async def naming_pools(
    store: FleetStore, namespace: str, name: str, watched: Sequence[str]
) -> list[dict[str, Any]]:
    """The WarmPools naming this fleet, oldest first, across the watched namespaces (all when empty)."""
    scopes: Sequence[str | None] = list(watched) or [None]
    found: list[dict[str, Any]] = []
    for scope in scopes:
        found += [p for p in await store.list(WARMPOOLS, scope) if names_fleet(p, namespace, name)]
    found.sort(key=lambda p: (str(p["metadata"].get("creationTimestamp", "")), p["metadata"]["namespace"],
                              p["metadata"]["name"]))
    return found


async def fleet_pools(
    store: FleetStore, namespace: str, name: str, watched: Sequence[str], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One list of the WarmPools per watched scope: those naming this fleet (oldest first), and those
    warm on it that name another host now (it keeps their tuples until they are warm there)."""
    scopes: Sequence[str | None] = list(watched) or [None]
    here = fleet_key(namespace, name)
    naming: list[dict[str, Any]] = []
    leaving: list[dict[str, Any]] = []
    for scope in scopes:
        for pool in await store.list(WARMPOOLS, scope):
            if names_fleet(pool, namespace, name):
                naming.append(pool)
            elif is_leaving(pool, here, now):
                leaving.append(pool)
    naming.sort(key=lambda p: (str(p["metadata"].get("creationTimestamp", "")), p["metadata"]["namespace"],
                               p["metadata"]["name"]))
    return naming, leaving


def token_digests(secret: Mapping[str, Any]) -> tuple[str, ...]:
    """sha256 hex of every value of a Secret; the tokens themselves go no further than this function."""
    out = set()
    for value in list((secret.get("data") or {}).values())[:MAX_TOKENS_PER_SECRET]:
        try:
            token = base64.b64decode(str(value), validate=True).strip()
        except (binascii.Error, ValueError):
            continue
        if token:
            out.add(hashlib.sha256(token).hexdigest())
    return tuple(sorted(out))


async def reconcile_fleet(
    fleet: RuntimeFleet,
    *,
    store: FleetStore,
    reader: TupleReader,
    options: RenderOptions,
    now: datetime,
    watched: Sequence[str] = (),
    warm: Mapping[tuple[str, str], int] | None = None,
    defaults: ClusterDefaults | None = None,
    tokens: TokenSecrets | None = None,
    specs: ParsedSpecs | None = None,
) -> FleetOutcome:
    """`warm` holds the autoscaler's warm counts per (tenant, sha256), over the members' own; `tokens`
    the token Secrets' digests as a Secret watch keeps them (read by name when absent); `specs` the
    members' specs parsed by earlier reconciliations of this fleet (kept to those read now)."""
    meta = fleet.meta
    raw_pools, raw_leaving = await fleet_pools(store, meta.namespace, meta.name, watched, now)
    leaving = _parse_members(raw_leaving, defaults, specs)
    pools = _parse_members(raw_pools, defaults, specs)
    if specs is not None:
        specs.retain(p.meta.uid for p in [*pools, *leaving])
    labels = await _namespace_labels(store, fleet, [*pools, *leaving])
    digests = await _digests(store, [*pools, *leaving], tokens, (meta.namespace, meta.name))
    # Leaving pools come last: they never take a tenant or tuple from a member, and their status is the new host's.
    admission = admit(fleet, [*pools, *leaving], namespace_labels=labels, digests=digests)
    departing = {(p.meta.namespace, p.meta.name) for p in leaving}

    deployment = await store.get(DEPLOYMENTS, meta.namespace, deployment_name(meta.name))
    replicas: int | None = fleet.spec.min_replicas
    carried = None
    if fleet.spec.autoscaling.enabled:
        replicas = None
        current = (deployment or {}).get("spec", {}).get("replicas") if deployment else None
        carried = {"spec": {"replicas": current if isinstance(current, int) else max(1, fleet.spec.min_replicas)}}
    children = render_children(fleet, admission.members, options=options, replicas=replicas, warm=warm)
    writes: list[Write] = []
    problem: Problem | None = None
    removed = await remove_dropped_budget(store, meta.namespace, meta.uid, children.disruption_budget, deployment)
    if removed is not None:
        writes.append(removed)
    for rendered in children.all():
        kind = KINDS_BY_NAME[rendered["kind"]]
        child = rendered["metadata"]["name"]
        actual = deployment if kind is DEPLOYMENTS else await store.get(kind, meta.namespace, child)
        obj, write, found = await apply(store, rendered, actual, meta.uid,
                                        carried=carried if kind is DEPLOYMENTS else None)
        if write is not None:
            writes.append(write)
        if kind is DEPLOYMENTS:
            deployment = obj
        problem = problem or found

    reports = await _read_ready_pods(store, reader, fleet)
    progress = progress_of(deployment)
    warm_total = sum(t.warm for tuples in reports.values() for t in tuples)
    status = fleet_status(fleet, progress=progress, problem=problem, tuples=len(admission.members),
                          refused=len(admission.refused), warm_instances=warm_total, now=now)
    if drift(status, fleet.status):
        await store.patch_status(RUNTIMEFLEETS, meta.namespace, meta.name, status)
    members = await _write_members(store, fleet, admission, progress=progress, reports=reports, now=now,
                                   departing=departing)
    hosted = tuple((m.pool.spec.tenant, m.pool.spec.module.sha256) for m in admission.members)
    return FleetOutcome(status=status, problem=problem, notices=tuple(notices(fleet.status, status)),
                        writes=tuple(writes), members=members, hosted=hosted)


async def stall_members(
    store: FleetStore, pools: Sequence[Mapping[str, Any]], problem: Problem, now: datetime
) -> dict[tuple[str, str], MemberOutcome]:
    """Members of a fleet that is gone or invalid: each Stalled naming why."""
    out = {}
    for pool in _parse_members(pools):
        status = stalled_member_status(pool, problem, now)
        if drift(status, pool.status):
            await store.patch_status(WARMPOOLS, pool.meta.namespace, pool.meta.name, status)
        out[(pool.meta.namespace, pool.meta.name)] = MemberOutcome(
            status, problem, tuple(notices(pool.status, status)), pool.meta.uid)
    return out


def stalled_fleet_status(body: Mapping[str, Any], problem: Problem, now: datetime) -> dict[str, Any]:
    """A fleet that cannot progress until its spec (or the operator's RBAC) changes."""
    generation = (body.get("metadata") or {}).get("generation")
    previous = body.get("status") if isinstance(body.get("status"), Mapping) else {}
    assert isinstance(previous, Mapping)
    return invalid_spec_status(generation=generation if isinstance(generation, int) else 0,
                               reason=problem.reason, message=problem.message, previous=previous, now=now)


def invalid_fleet_problem(where: str, error: SpecError) -> Problem:
    return Problem(FLEET_INVALID, f"RuntimeFleet {where} is invalid: {error}", True)


def missing_fleet_problem(namespace: str, name: str) -> Problem:
    return fleet_missing(f"{namespace}/{name}")


def _parse_members(
    raw_pools: Sequence[Mapping[str, Any]], defaults: ClusterDefaults | None = None, specs: ParsedSpecs | None = None
) -> list[WarmPool]:
    return parse_members(raw_pools, defaults or ClusterDefaults(), specs)


async def _namespace_labels(
    store: FleetStore, fleet: RuntimeFleet, pools: Sequence[WarmPool]
) -> dict[str, Mapping[str, str] | None]:
    if fleet.spec.allowed.source is not From.SELECTOR or not pools:
        return {}
    found = {
        str(ns["metadata"]["name"]): dict((ns.get("metadata") or {}).get("labels") or {})
        for ns in await store.list(NAMESPACES, None)
    }
    return {pool.meta.namespace: found.get(pool.meta.namespace) for pool in pools}


async def _digests(
    store: FleetStore, pools: Sequence[WarmPool], tokens: TokenSecrets | None, fleet: tuple[str, str]
) -> dict[tuple[str, str], tuple[str, ...] | None]:
    wanted = {(pool.meta.namespace, pool.spec.auth.secret_name) for pool in pools if pool.spec.auth is not None}
    if tokens is not None:
        tokens.record(fleet, wanted)
    out: dict[tuple[str, str], tuple[str, ...] | None] = {}
    for key in sorted(wanted):
        found, digests = (False, None) if tokens is None else tokens.cached(key)
        if not found:
            secret = await store.get(SECRETS, *key)
            digests = None if secret is None else token_digests(secret)
            if tokens is not None:
                tokens.remember(key, digests)
        out[key] = digests
    return out


async def _read_ready_pods(
    store: FleetStore, reader: TupleReader, fleet: RuntimeFleet
) -> dict[str, tuple[TupleReport, ...]]:
    pods = await store.list(PODS, fleet.meta.namespace, label_selector=selector_string(fleet.meta.name))
    targets: list[tuple[str, tuple[str, int]]] = []
    for pod in pods:
        target = probe_target(pod)
        if target is not None and pod_is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            targets.append((str(pod["metadata"]["name"]), target))
    found = await asyncio.gather(*(reader.tuples(*target) for _, target in targets))
    return {name: tuples for (name, _), tuples in zip(targets, found, strict=True) if tuples is not None}


async def _write_members(
    store: FleetStore,
    fleet: RuntimeFleet,
    admission: Admission,
    *,
    progress: Progress,
    reports: Mapping[str, tuple[TupleReport, ...]],
    now: datetime,
    departing: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
) -> dict[tuple[str, str], MemberOutcome]:
    out: dict[tuple[str, str], MemberOutcome] = {}
    indexed = Reports(reports)
    for member in admission.members:
        pool = member.pool
        if member.key in departing:
            continue
        where = indexed.standing(pool.spec.tenant, pool.spec.module.sha256)
        status = member_status(pool, fleet, progress, where, now)
        warm_everywhere = where.failure is None and 0 < where.pods == where.warm_pods
        previous = host_of(pool.status)
        host = host_after(previous, fleet_key(fleet.meta.namespace, fleet.meta.name), warm_everywhere)
        if host is not None:
            status[HOST_FIELD] = host
        arrived = None
        if host != previous:
            status.update(moved_status(previous, now))
            arrived = previous or ""
        out[member.key] = await _write_member(store, pool, status, None, arrived)
    for pool in admission.refused_pools:
        key = (pool.meta.namespace, pool.meta.name)
        if key in departing:
            continue
        problem = admission.refused[key]
        out[key] = await _write_member(store, pool, stalled_member_status(pool, problem, now), problem)
    return out


async def _write_member(
    store: FleetStore, pool: WarmPool, status: dict[str, Any], problem: Problem | None, arrived: str | None = None
) -> MemberOutcome:
    if drift(status, pool.status):
        await store.patch_status(WARMPOOLS, pool.meta.namespace, pool.meta.name, status)
    if problem is None:
        stalled = next((c for c in status["conditions"] if c["type"] == "Stalled"), None)
        if stalled is not None and stalled["status"] == "True":
            problem = Problem(str(stalled["reason"]), str(stalled["message"]))
    return MemberOutcome(status, problem, tuple(notices(pool.status, status)), pool.meta.uid, arrived)


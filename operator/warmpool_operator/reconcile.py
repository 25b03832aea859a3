"""One level-based reconciliation of a WarmPool: apply its children, observe, write status.

Idempotent: it compares the rendered fields with what the API holds and writes only on drift,
so running it again (timer, child event, restart) with nothing changed makes no write at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from warmpool_operator.diff import creation_body, drift, is_controlled_by, merge_patch
from warmpool_operator.health import Problem, current_pods, diagnose, progress_of
from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, KINDS_BY_NAME, PODS, WARMPOOLS, Conflict, Invalid, Kind
from warmpool_operator.ownership import deployment_replicas
from warmpool_operator.probing import Prober
from warmpool_operator.render import (
    ANNOTATION_CONFIG_HASH,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGED_BY,
    RenderOptions,
    deployment_name,
    forget_dropped_pod_metadata,
    render_children,
    selector_string,
)
from warmpool_operator.spec import WarmPool
from warmpool_operator.status import Notice, compute_status, notices


class Store(Protocol):
    """The API operations reconciliation needs (implemented by `warmpool_operator.kube.KubeApi`)."""

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def list(self, kind: Kind, namespace: str, *, label_selector: str | None = None) -> list[dict[str, Any]]: ...

    async def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]: ...

    async def patch_status(
        self, kind: Kind, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Write:
    verb: str  # "create" or "patch"
    kind: str
    name: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one reconciliation did and found."""

    status: dict[str, Any]
    problem: Problem | None
    notices: tuple[Notice, ...]
    writes: tuple[Write, ...]
    status_written: bool


async def check_module_source(pool: WarmPool, store: Store) -> Problem | None:
    """A module in a ConfigMap must exist under its key before pods can mount it."""
    ref = pool.spec.module.source.config_map
    if ref is None:
        return None
    found = await store.get(CONFIGMAPS, pool.meta.namespace, ref.name)
    if found is None:
        return Problem("ConfigMapMissing", f"ConfigMap {ref.name} (spec.module.source.configMapRef) does not exist")
    if ref.key not in (found.get("binaryData") or {}) and ref.key not in (found.get("data") or {}):
        return Problem("ConfigMapKeyMissing", f"ConfigMap {ref.name} has no key {ref.key} in binaryData")
    return None


def check_tenant_unchanged(pool: WarmPool, deployment: Mapping[str, Any] | None) -> Problem | None:
    """`spec.tenant` is immutable; the API enforces it, this catches specs that bypassed it."""
    if deployment is None or not is_controlled_by(deployment, pool.meta.uid):
        return None
    before = ((deployment.get("metadata") or {}).get("labels") or {}).get(LABEL_TENANT)
    if before is None or before == pool.spec.tenant:
        return None
    return Problem("TenantImmutable", f"spec.tenant changed from {before} to {pool.spec.tenant}; it is immutable", True)


async def apply(
    store: Store, desired: Mapping[str, Any], actual: Mapping[str, Any] | None, owner_uid: str
) -> tuple[dict[str, Any] | None, Write | None, Problem | None]:
    """Create or patch one child; returns (object now, write made, problem)."""
    kind = KINDS_BY_NAME[desired["kind"]]
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    if actual is not None and not is_controlled_by(actual, owner_uid):
        labels = (actual.get("metadata") or {}).get("labels") or {}
        pool_name = desired["metadata"]["labels"][LABEL_INSTANCE]
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or labels.get(LABEL_INSTANCE) != pool_name:
            message = f"{desired['kind']} {name} exists and is not managed by this WarmPool"
            return dict(actual), None, Problem("NameConflict", message)
    try:
        if actual is None:
            try:
                created = await store.create(kind, namespace, creation_body(desired))
                return created, Write("create", desired["kind"], name), None
            except Conflict:
                # Created meanwhile (another reconcile, or a restart racing its predecessor).
                actual = await store.get(kind, namespace, name)
                if actual is None:
                    raise
        changed = drift(desired, actual)
        if not changed:
            return dict(actual), None, None
        patched = await store.merge_patch(kind, namespace, name, merge_patch(desired, actual))
        return patched, Write("patch", desired["kind"], name, tuple(changed)), None
    except Invalid as exc:
        return None, None, Problem("Rejected", f"the API server refused {desired['kind']} {name}: {exc.message}", True)


async def reconcile(
    pool: WarmPool, *, store: Store, prober: Prober, options: RenderOptions, now: datetime
) -> Outcome:
    meta, spec = pool.meta, pool.spec
    writes: list[Write] = []
    problem = await check_module_source(pool, store)
    deployment = await store.get(DEPLOYMENTS, meta.namespace, deployment_name(meta.name))
    problem = check_tenant_unchanged(pool, deployment) or problem
    children = render_children(meta, spec, options=options, replicas=deployment_replicas(spec, deployment))
    if problem is None:
        # On a problem found beforehand the children stay as they are: the pods already
        # running keep serving the previous module rather than rolling to pods that cannot start.
        for rendered in children.all():
            kind = KINDS_BY_NAME[rendered["kind"]]
            child_name = rendered["metadata"]["name"]
            actual = deployment if kind is DEPLOYMENTS else await store.get(kind, meta.namespace, child_name)
            desired = forget_dropped_pod_metadata(rendered, actual) if kind is DEPLOYMENTS else rendered
            obj, write, found = await apply(store, desired, actual, meta.uid)
            if write is not None:
                writes.append(write)
            if kind is DEPLOYMENTS:
                deployment = obj
            problem = problem or found
    digest = children.deployment["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
    pods = current_pods(await store.list(PODS, meta.namespace, label_selector=selector_string(meta.name)), digest)
    reports = await prober.read_pods(pods)
    problem = problem or diagnose(deployment=deployment, pods=pods, reports=reports)
    status = compute_status(
        name=meta.name,
        generation=meta.generation,
        spec=spec,
        progress=progress_of(deployment),
        problem=problem,
        previous=pool.status,
        now=now,
    )
    written = False
    if drift(status, pool.status):
        await store.patch_status(WARMPOOLS, meta.namespace, meta.name, status)
        written = True
    return Outcome(
        status=status,
        problem=problem,
        notices=tuple(notices(pool.status, status)),
        writes=tuple(writes),
        status_written=written,
    )

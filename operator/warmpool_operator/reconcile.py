"""One level-based reconciliation of a WarmPool: apply its children, observe, write status.

Children are written by server-side apply, so fields other managers add (a sidecar, a volume,
an annotation) stay. Idempotent: a child is applied only when its intent changed (its applied-hash
annotation differs) or a field the operator owns drifted, so running it again (timer, child event,
restart) with nothing changed makes no write at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from warmpool_operator.diff import drift, is_controlled_by
from warmpool_operator.health import Problem, current_pods, diagnose, progress_of
from warmpool_operator.kinds import (
    CONFIGMAPS,
    DEPLOYMENTS,
    DISRUPTION_BUDGETS,
    KINDS_BY_NAME,
    PODS,
    SECRETS,
    WARMPOOLS,
    Invalid,
    Kind,
)
from warmpool_operator.ownership import ReplicaOwner, carried_replicas, replica_owner
from warmpool_operator.probing import Prober
from warmpool_operator.render import (
    ANNOTATION_BUDGET,
    ANNOTATION_CONFIG_HASH,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGED_BY,
    RenderOptions,
    deployment_name,
    render_children,
    selector_string,
)
from warmpool_operator.spec import WarmPool
from warmpool_operator.status import Notice, compute_status, notices


class Store(Protocol):
    """The API operations reconciliation needs (implemented by `warmpool_operator.kube.KubeApi`)."""

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def list(self, kind: Kind, namespace: str, *, label_selector: str | None = None) -> list[dict[str, Any]]: ...

    async def apply(self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch_status(
        self, kind: Kind, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Write:
    verb: str  # "create" (the apply made the object), "patch" or "delete"
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


PULL_SECRET_TYPE = "kubernetes.io/dockerconfigjson"


async def check_module_source(pool: WarmPool, store: Store) -> Problem | None:
    """What the runtime pods would mount for the module source must exist first: a pod cannot start
    without it, and would say so only in kubelet Events. Of a Secret only its type is looked at."""
    source, namespace = pool.spec.module.source, pool.meta.namespace
    where = "spec.module.source"
    if source.config_map is not None:
        ref = source.config_map
        found = await store.get(CONFIGMAPS, namespace, ref.name)
        if found is None:
            return Problem("ConfigMapMissing", f"ConfigMap {ref.name} ({where}.configMapRef) does not exist")
        if ref.key not in (found.get("binaryData") or {}) and ref.key not in (found.get("data") or {}):
            return Problem("ConfigMapKeyMissing", f"ConfigMap {ref.name} has no key {ref.key} in binaryData")
    if source.oci is not None and source.oci.pull_secret is not None:
        name = source.oci.pull_secret
        secret = await store.get(SECRETS, namespace, name)
        if secret is None:
            return Problem("SecretMissing", f"Secret {name} ({where}.oci.pullSecretRef) does not exist")
        kind = _printable(secret.get("type"))
        if kind != PULL_SECRET_TYPE:
            return Problem(
                "PullSecretWrongType",
                f"Secret {name} ({where}.oci.pullSecretRef) is of type {kind}; "
                f"a pull secret must be of type {PULL_SECRET_TYPE}",
            )
    if source.headers_secret is not None:
        name = source.headers_secret
        if await store.get(SECRETS, namespace, name) is None:
            return Problem("SecretMissing", f"Secret {name} ({where}.headersFrom.secretRef) does not exist")
    if source.ca_bundle is not None:
        bundle = source.ca_bundle
        found = await store.get(CONFIGMAPS, namespace, bundle.name)
        if found is None:
            message = f"ConfigMap {bundle.name} ({where}.caBundle.configMapRef) does not exist"
            return Problem("ConfigMapMissing", message)
        if bundle.key not in (found.get("data") or {}) and bundle.key not in (found.get("binaryData") or {}):
            return Problem(
                "ConfigMapKeyMissing",
                f"ConfigMap {bundle.name} has no key {bundle.key} ({where}.caBundle.configMapRef)",
            )
    return None


def _printable(value: object, limit: int = 100) -> str:
    """A Secret's `type` fit for a message: any string can be put there."""
    text = value if isinstance(value, str) and value else "Opaque"
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def check_tenant_unchanged(pool: WarmPool, deployment: Mapping[str, Any] | None) -> Problem | None:
    """`spec.tenant` is immutable; the API enforces it, this catches specs that bypassed it."""
    if deployment is None or not is_controlled_by(deployment, pool.meta.uid):
        return None
    before = ((deployment.get("metadata") or {}).get("labels") or {}).get(LABEL_TENANT)
    if before is None or before == pool.spec.tenant:
        return None
    return Problem("TenantImmutable", f"spec.tenant changed from {before} to {pool.spec.tenant}; it is immutable", True)


async def apply(
    store: Store,
    desired: Mapping[str, Any],
    actual: Mapping[str, Any] | None,
    owner_uid: str,
    *,
    carried: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, Write | None, Problem | None]:
    """Apply one child when needed; returns (object now, write made, problem).

    `carried` holds fields sent along without being owned intent (see `ownership.carried_replicas`):
    they are merged into the body but never cause a write.
    """
    kind = KINDS_BY_NAME[desired["kind"]]
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    if actual is not None and not is_controlled_by(actual, owner_uid):
        labels = (actual.get("metadata") or {}).get("labels") or {}
        pool_name = desired["metadata"]["labels"][LABEL_INSTANCE]
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or labels.get(LABEL_INSTANCE) != pool_name:
            message = f"{desired['kind']} {name} exists and is not managed by this WarmPool"
            return dict(actual), None, Problem("NameConflict", message)
    changed = ["."] if actual is None else drift(desired, actual)
    if not changed:
        return dict(actual or {}), None, None
    body = _with(desired, carried) if carried else desired
    try:
        applied = await store.apply(kind, namespace, name, body)
    except Invalid as exc:
        return None, None, Problem("Rejected", f"the API server refused {desired['kind']} {name}: {exc.message}", True)
    verb = "create" if actual is None else "patch"
    return applied, Write(verb, desired["kind"], name, tuple(changed) if actual is not None else ()), None


async def remove_dropped_budget(
    store: Store, namespace: str, owner_uid: str, budget: Mapping[str, Any] | None, deployment: Mapping[str, Any] | None
) -> Write | None:
    """Delete the owner's PodDisruptionBudget once spec.runtime.podDisruptionBudget is gone (`budget` None).

    Done before the Deployment loses its annotation, so a failed delete is retried, never forgotten.
    """
    if budget is not None or deployment is None:
        return None
    name = ((deployment.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_BUDGET)
    if not name or not is_controlled_by(deployment, owner_uid):
        return None
    found = await store.get(DISRUPTION_BUDGETS, namespace, name)
    if found is None or not is_controlled_by(found, owner_uid):
        return None
    await store.delete(DISRUPTION_BUDGETS, namespace, name)
    return Write("delete", "PodDisruptionBudget", name)


def _with(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        out[key] = _with(current, value) if isinstance(current, Mapping) and isinstance(value, Mapping) else value
    return out


async def reconcile(
    pool: WarmPool, *, store: Store, prober: Prober, options: RenderOptions, now: datetime
) -> Outcome:
    meta, spec = pool.meta, pool.spec
    writes: list[Write] = []
    problem = await check_module_source(pool, store)
    deployment = await store.get(DEPLOYMENTS, meta.namespace, deployment_name(meta.name))
    problem = check_tenant_unchanged(pool, deployment) or problem
    owned = spec.replicas if replica_owner(spec) is ReplicaOwner.SPEC else None
    children = render_children(meta, spec, options=options, replicas=owned)
    if problem is None:
        # On a problem found beforehand the children stay as they are: the pods already
        # running keep serving the previous module rather than rolling to pods that cannot start.
        removed = await remove_dropped_budget(store, meta.namespace, meta.uid, children.disruption_budget, deployment)
        if removed is not None:
            writes.append(removed)
        for rendered in children.all():
            kind = KINDS_BY_NAME[rendered["kind"]]
            child_name = rendered["metadata"]["name"]
            actual = deployment if kind is DEPLOYMENTS else await store.get(kind, meta.namespace, child_name)
            carried = None
            if kind is DEPLOYMENTS and (current := carried_replicas(spec, actual)) is not None:
                carried = {"spec": {"replicas": current}}
            obj, write, found = await apply(store, rendered, actual, meta.uid, carried=carried)
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

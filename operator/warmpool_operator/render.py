"""Pure rendering of a WarmPool's children (ConfigMap, Service, Deployment, PDB) from its parsed spec.

Each rendered object is the operator's server-side apply intent: only the fields it owns. A field
left out of a later intent is removed by the API server unless another field manager also set it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warmpool_contract import (
    CA_BUNDLES_DIR,
    DOCKER_CONFIG_KEY,
    HEADERS_DIR,
    HEALTHZ_PATH,
    HTTP_PORT,
    LOG_FORMAT_FLAG,
    PULL_SECRETS_DIR,
    READYZ_PATH,
)
from warmpool_operator.diff import Exact, parse_quantity
from warmpool_operator.runtime_config import (
    CONFIG_DIR,
    CONFIG_FILE,
    CONFIG_PATH,
    MODULES_DIR,
    config_hash,
    render_runtime_yaml,
    termination_grace_seconds,
)
from warmpool_operator.spec import (
    API_VERSION,
    GROUP,
    KIND,
    DisruptionBudget,
    ModuleSource,
    PoolMeta,
    RuntimeSpec,
    WarmPoolSpec,
)

CONTAINER_NAME = "runtime"
RUN_AS_USER = 65532

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TENANT = f"{GROUP}/tenant"
LABEL_MODULE = f"{GROUP}/module"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
# Hash of the whole apply intent on each child: a changed intent (a field dropped from it included)
# is applied even when every field still rendered already holds its value.
ANNOTATION_APPLIED = f"{GROUP}/applied-hash"
# On the Deployment while the pool has a PodDisruptionBudget: when the field goes, the operator
# knows there is one to delete without looking for it on every reconciliation.
ANNOTATION_BUDGET = f"{GROUP}/disruption-budget"

# Runtime pod sizing when spec.runtime.resources does not say otherwise (docs/operator.md).
DEFAULT_CPU_REQUEST = "100m"
DEFAULT_MEMORY_REQUEST = "128Mi"
BASE_MEMORY_BYTES = 256 << 20
"""The runtime's own memory: interpreter, wasmtime, compiled modules, HTTP buffers, freed slots kept hot."""
COLD_INSTANCES = 5
"""Instances beyond the warm set that can touch memory at once: misses served cold run only on the
runtime's 4 worker threads and its inline lane (its default `workers` setting plus one)."""
TUPLES_PER_POD = 1

# Probe timing: a loaded node answers slowly, and a slow answer is no reason to restart.
PROBE_TIMEOUT_SECONDS = 5
STARTUP_PERIOD_SECONDS = 5
LIVENESS_PERIOD_SECONDS = 10
LIVENESS_FAILURES = 6

APP_NAME = "warmpool-runtime"
MANAGED_BY = "warmpool-operator"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Operator-wide inputs to rendering that do not come from the WarmPool."""

    default_image: str
    image_pull_policy: str = "IfNotPresent"
    log_format: str = "json"
    """The runtime's `--log-format` (warmpool_contract.LOG_FORMATS)."""


@dataclass(frozen=True, slots=True)
class Children:
    """The desired child objects of one WarmPool or RuntimeFleet, as plain JSON-ready dicts."""

    config_map: dict[str, Any]
    service: dict[str, Any]
    deployment: dict[str, Any]
    tokens: dict[str, Any] | None = None
    """The Secret of accepted token digests the pods mount (a fleet's), or None when there is none."""
    disruption_budget: dict[str, Any] | None = None
    """None when spec.runtime.podDisruptionBudget is unset: an existing one is then deleted."""

    def all(self) -> tuple[dict[str, Any], ...]:
        """In apply order: what the pods mount before the pods."""
        tokens = () if self.tokens is None else (self.tokens,)
        budget = () if self.disruption_budget is None else (self.disruption_budget,)
        return (self.config_map, *tokens, self.service, self.deployment, *budget)


def deployment_name(pool_name: str) -> str:
    return pool_name


def service_name(pool_name: str) -> str:
    return pool_name


def config_map_name(pool_name: str) -> str:
    return f"{pool_name}-runtime"


def disruption_budget_name(pool_name: str) -> str:
    return pool_name


def selector_labels(pool_name: str) -> dict[str, str]:
    """Stable labels selecting a pool's pods; never includes anything a spec change can alter."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: pool_name}


def selector_string(pool_name: str) -> str:
    """The same selector in the string form used by `status.selector` and list requests."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(pool_name).items()))


def common_labels(pool_name: str, spec: WarmPoolSpec) -> dict[str, str]:
    return {
        **selector_labels(pool_name),
        LABEL_COMPONENT: "runtime",
        LABEL_PART_OF: "warmpool",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TENANT: spec.tenant,
        LABEL_MODULE: spec.module.short_hash,
    }


def owner_reference(meta: PoolMeta, api_version: str = API_VERSION, kind: str = KIND) -> dict[str, Any]:
    """Children are deleted with their WarmPool (or the owner of `kind`) by the garbage collector."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render_children(
    meta: PoolMeta, spec: WarmPoolSpec, *, options: RenderOptions, replicas: int | None
) -> Children:
    """`replicas=None` leaves `Deployment.spec.replicas` out: someone else (the autoscaler) owns it."""
    config_text = render_runtime_yaml(spec)
    return Children(
        config_map=stamped(render_config_map(meta, spec, config_text)),
        service=stamped(render_service(meta, spec)),
        deployment=stamped(
            render_deployment(meta, spec, options=options, replicas=replicas, config_digest=config_hash(config_text))
        ),
        disruption_budget=None if (budget := render_disruption_budget(meta, spec)) is None else stamped(budget),
    )


def applied_hash(obj: Mapping[str, Any]) -> str:
    """Content hash of an apply intent, its own hash annotation left out."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_APPLIED}
    meta["annotations"] = annotations
    text = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamped(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with its applied-hash annotation set."""
    digest = applied_hash(obj)
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED] = digest
    return obj


def _metadata(meta: PoolMeta, spec: WarmPoolSpec, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": meta.namespace,
        "labels": common_labels(meta.name, spec),
        "ownerReferences": [owner_reference(meta)],
    }


def render_config_map(meta: PoolMeta, spec: WarmPoolSpec, config_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(meta, spec, config_map_name(meta.name)),
        "data": {CONFIG_FILE: config_text},
    }


def render_service(meta: PoolMeta, spec: WarmPoolSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(meta, spec, service_name(meta.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": Exact(selector_labels(meta.name)),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_disruption_budget(meta: PoolMeta, spec: WarmPoolSpec) -> dict[str, Any] | None:
    """The pool's PodDisruptionBudget, if spec.runtime.podDisruptionBudget asks for one."""
    budget = spec.runtime.pod_disruption_budget
    if budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(meta, spec, disruption_budget_name(meta.name)),
        "spec": disruption_budget_spec(budget, selector_labels(meta.name)),
    }


def disruption_budget_spec(budget: DisruptionBudget, selector: Mapping[str, str]) -> dict[str, Any]:
    """The spec of a PodDisruptionBudget over the pods `selector` matches."""
    out: dict[str, Any] = {"selector": {"matchLabels": dict(selector)}}
    if budget.min_available is not None:
        out["minAvailable"] = budget.min_available
    else:
        out["maxUnavailable"] = budget.max_unavailable
    return out


def render_deployment(
    meta: PoolMeta,
    spec: WarmPoolSpec,
    *,
    options: RenderOptions,
    replicas: int | None,
    config_digest: str,
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {
            "labels": {**spec.runtime.pod_labels, **common_labels(meta.name, spec)},
            "annotations": {**spec.runtime.pod_annotations, ANNOTATION_CONFIG_HASH: config_digest},
        },
        "spec": _pod_spec(meta, spec, options),
    }
    deployment_spec = rolling_deployment_spec(selector_labels(meta.name), template, replicas)
    metadata = _metadata(meta, spec, deployment_name(meta.name))
    if spec.runtime.pod_disruption_budget is not None:
        metadata["annotations"] = {ANNOTATION_BUDGET: disruption_budget_name(meta.name)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def rolling_deployment_spec(
    selector: Mapping[str, str], template: dict[str, Any], replicas: int | None
) -> dict[str, Any]:
    """A runtime Deployment's spec; `replicas=None` leaves the count to whoever scales it."""
    deployment_spec: dict[str, Any] = {}
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec.update(
        {
            "selector": {"matchLabels": dict(selector)},
            # Old pods keep serving until new ones are Ready, and Ready means warm: no cold serving.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "template": template,
        }
    )
    return deployment_spec


def memory_limit_bytes(spec: WarmPoolSpec) -> int:
    """tuples x warm instances x limits.memoryBytes, plus headroom: BASE_MEMORY_BYTES and
    COLD_INSTANCES more instances. Every instance's memory is capped by the runtime at memoryBytes,
    so a guest that grows past it is refused by the runtime before the pod nears this limit."""
    warm = min(TUPLES_PER_POD * spec.warm_instances_per_tuple, spec.max_total_warm)
    return (warm + COLD_INSTANCES) * spec.limits.memory_bytes + BASE_MEMORY_BYTES


def runtime_resources(spec: WarmPoolSpec) -> dict[str, Any]:
    """Default requests and memory limit, under what spec.runtime.resources sets (which wins).

    A resource the user limits but does not request gets no default request (the API server then
    requests the limit); a memory request above the derived limit raises the limit to it.
    """
    given, requests, limits = default_requests(spec.runtime.resources)
    if "memory" not in limits:
        limit = memory_limit_bytes(spec)
        wanted = parse_quantity(str(requests.get("memory", "0")))
        if wanted is not None and wanted > limit:
            limit = int(wanted)
        limits["memory"] = f"{math.ceil(limit / 2**20)}Mi"
    return {**given, "requests": requests, "limits": limits}


def default_requests(resources: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """`spec.runtime.resources` thawed, with its requests and limits: the default cpu and memory
    requests added for each resource it neither requests nor limits."""
    given = thaw(resources)
    requests: dict[str, Any] = dict(given.get("requests") or {})
    limits: dict[str, Any] = dict(given.get("limits") or {})
    for resource, default in (("cpu", DEFAULT_CPU_REQUEST), ("memory", DEFAULT_MEMORY_REQUEST)):
        if resource not in requests and resource not in limits:
            requests[resource] = default
    return given, requests, limits


def runtime_container(
    *, image: str, options: RenderOptions, args: Sequence[str], startup_seconds: float, resources: dict[str, Any],
    mounts: list[dict[str, Any]], env: Sequence[Any],
) -> dict[str, Any]:
    """The runtime container of a pool's or a fleet's pods: `warmpool runtime serve ARGS`, probes, restricted."""
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["warmpool", "runtime", "serve"],
        "args": [*args, "--port", str(HTTP_PORT), LOG_FORMAT_FLAG, options.log_format],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # /readyz answers 200 once the pod can serve (a dedicated pool's: every tuple prewarmed).
        # It fails at once on SIGTERM while the runtime keeps serving for its drain window.
        "readinessProbe": {
            "httpGet": {"path": READYZ_PATH, "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        # Liveness waits for start-up (interpreter start, module download, compile, prewarm) to
        # answer /healthz; /healthz stays 200 while the process lives, loading or not.
        "startupProbe": {
            "httpGet": {"path": HEALTHZ_PATH, "port": "http"},
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": math.ceil(startup_seconds / STARTUP_PERIOD_SECONDS),
        },
        "livenessProbe": {
            "httpGet": {"path": HEALTHZ_PATH, "port": "http"},
            "periodSeconds": LIVENESS_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": LIVENESS_FAILURES,
        },
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if env:
        container["env"] = [thaw(var) for var in env]
    return container


def runtime_pod_security() -> dict[str, Any]:
    """The pod securityContext of runtime pods (Pod Security "restricted")."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_spec(meta: PoolMeta, spec: WarmPoolSpec, options: RenderOptions) -> dict[str, Any]:
    runtime = spec.runtime
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(meta.name)}},
        # The root filesystem is read-only; the runtime may still need scratch space.
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    for volume, mount_path in source_volumes(spec.module.source):
        mounts.append({"name": volume["name"], "mountPath": mount_path, "readOnly": True})
        volumes.append(volume)
    container = runtime_container(
        image=runtime.image or options.default_image, options=options, args=("--config", CONFIG_PATH),
        startup_seconds=runtime.startup_seconds, resources=runtime_resources(spec), mounts=mounts, env=runtime.env,
    )
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": runtime_pod_security(),
        # No preStop hook: the image has no shell to sleep in, and the runtime's own drain window
        # (readiness fails on SIGTERM, serving goes on) covers the time endpoints take to drop the pod.
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "containers": [container],
        "volumes": volumes,
    }
    pod.update(pod_settings(runtime, selector_labels(meta.name)))
    return pod


def pod_settings(runtime: RuntimeSpec, selector: Mapping[str, str]) -> dict[str, Any]:
    """The pod-level fields `spec.runtime` sets, for any runtime pod template; `selector` matches its pods."""
    out: dict[str, Any] = {
        # The runtime never calls the Kubernetes API: no token unless the spec asks for one.
        "automountServiceAccountToken": runtime.automount_service_account_token,
    }
    if runtime.node_selector:
        out["nodeSelector"] = dict(runtime.node_selector)
    if runtime.tolerations:
        out["tolerations"] = [thaw(t) for t in runtime.tolerations]
    if runtime.affinity is not None:
        out["affinity"] = thaw(runtime.affinity)
    if runtime.service_account_name is not None:
        out["serviceAccountName"] = runtime.service_account_name
    if runtime.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": name} for name in runtime.image_pull_secrets]
    if runtime.topology_spread_constraints:
        out["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": dict(selector)}, **thaw(constraint)}
            for constraint in runtime.topology_spread_constraints
        ]
    return out


def source_volumes(source: ModuleSource) -> list[tuple[dict[str, Any], str]]:
    """(volume, mount path) pairs a module source needs, at the paths `runtime_config.module_source`
    names; at most one of each, as a pod runs one tuple. Secrets are mounted, never read or copied."""
    out: list[tuple[dict[str, Any], str]] = []
    ref = source.config_map
    if ref is not None:
        volume = {"name": "modules", "configMap": {"name": ref.name, "items": [{"key": ref.key, "path": ref.key}]}}
        out.append((volume, MODULES_DIR))
    if source.oci is not None and source.oci.pull_secret is not None:
        name = source.oci.pull_secret
        items = [{"key": DOCKER_CONFIG_KEY, "path": DOCKER_CONFIG_KEY}]
        out.append(({"name": "pull-secret", "secret": {"secretName": name, "items": items}},
                    f"{PULL_SECRETS_DIR}/{name}"))
    if source.headers_secret is not None:
        name = source.headers_secret
        out.append(({"name": "headers", "secret": {"secretName": name}}, f"{HEADERS_DIR}/{name}"))
    if source.ca_bundle is not None:
        bundle = source.ca_bundle
        items = [{"key": bundle.key, "path": bundle.key}]
        out.append(({"name": "ca-bundle", "configMap": {"name": bundle.name, "items": items}},
                    f"{CA_BUNDLES_DIR}/{bundle.name}"))
    return out


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of JSON-like data held in read-only views."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value

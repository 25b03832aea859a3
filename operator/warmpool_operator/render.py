"""Pure rendering of a WarmPool's children (ConfigMap, Service, Deployment) from its parsed spec.

A value of `None` in a rendered object means "owned by the operator and must be absent": it is
dropped on creation and sent as a deletion in merge patches (see `warmpool_operator.diff`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warmpool_contract import HEALTHZ_PATH, HTTP_PORT, READYZ_PATH
from warmpool_operator.diff import Exact
from warmpool_operator.runtime_config import (
    CONFIG_DIR,
    CONFIG_FILE,
    CONFIG_PATH,
    MODULES_DIR,
    config_hash,
    render_runtime_yaml,
)
from warmpool_operator.spec import API_VERSION, GROUP, KIND, PoolMeta, WarmPoolSpec

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
# Which pod labels/annotations came from spec.runtime, so that ones dropped from the spec can be
# removed from the template while those other tools add are left alone.
ANNOTATION_POD_METADATA = f"{GROUP}/pod-metadata-keys"

APP_NAME = "warmpool-runtime"
MANAGED_BY = "warmpool-operator"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Operator-wide inputs to rendering that do not come from the WarmPool."""

    default_image: str
    image_pull_policy: str = "IfNotPresent"


@dataclass(frozen=True, slots=True)
class Children:
    """The desired child objects of one WarmPool, as plain JSON-ready dicts."""

    config_map: dict[str, Any]
    service: dict[str, Any]
    deployment: dict[str, Any]

    def all(self) -> tuple[dict[str, Any], ...]:
        """In apply order: the config before the pods that mount it."""
        return (self.config_map, self.service, self.deployment)


def deployment_name(pool_name: str) -> str:
    return pool_name


def service_name(pool_name: str) -> str:
    return pool_name


def config_map_name(pool_name: str) -> str:
    return f"{pool_name}-runtime"


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


def owner_reference(meta: PoolMeta) -> dict[str, Any]:
    """Children are deleted with their WarmPool by the garbage collector."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
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
        config_map=render_config_map(meta, spec, config_text),
        service=render_service(meta, spec),
        deployment=render_deployment(
            meta, spec, options=options, replicas=replicas, config_digest=config_hash(config_text)
        ),
    )


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


def render_deployment(
    meta: PoolMeta,
    spec: WarmPoolSpec,
    *,
    options: RenderOptions,
    replicas: int | None,
    config_digest: str,
) -> dict[str, Any]:
    deployment_spec: dict[str, Any] = {}
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec.update(
        {
            "selector": {"matchLabels": selector_labels(meta.name)},
            # Old pods keep serving until new ones are Ready, and Ready means warm: no cold serving.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {
                    "labels": {**spec.runtime.pod_labels, **common_labels(meta.name, spec)},
                    "annotations": {**spec.runtime.pod_annotations, ANNOTATION_CONFIG_HASH: config_digest},
                },
                "spec": _pod_spec(meta, spec, options),
            },
        }
    )
    metadata = _metadata(meta, spec, deployment_name(meta.name))
    user_keys = {"labels": sorted(spec.runtime.pod_labels), "annotations": sorted(spec.runtime.pod_annotations)}
    metadata["annotations"] = {ANNOTATION_POD_METADATA: json.dumps(user_keys, sort_keys=True, separators=(",", ":"))}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def forget_dropped_pod_metadata(desired: dict[str, Any], actual: Mapping[str, Any] | None) -> dict[str, Any]:
    """Mark pod labels/annotations that an earlier spec set, and this one no longer does, as absent."""
    if actual is None:
        return desired
    recorded = ((actual.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_POD_METADATA)
    try:
        previous = json.loads(recorded) if recorded else {}
    except ValueError:
        return desired
    out = thaw(desired)
    template_meta = out["spec"]["template"]["metadata"]
    for field in ("labels", "annotations"):
        current = template_meta.get(field) or {}
        for key in previous.get(field) or []:
            if isinstance(key, str) and key not in current:
                template_meta.setdefault(field, {})[key] = None
    result: dict[str, Any] = out
    return result


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
    ref = spec.module.source.config_map
    if ref is not None:
        mounts.append({"name": "modules", "mountPath": MODULES_DIR, "readOnly": True})
        volumes.append(
            {"name": "modules", "configMap": {"name": ref.name, "items": [{"key": ref.key, "path": ref.key}]}}
        )
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": runtime.image or options.default_image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["warmpool", "runtime", "serve"],
        "args": ["--config", CONFIG_PATH, "--port", str(HTTP_PORT)],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # /readyz answers 200 only once every tuple is prewarmed: a pod is Ready only when warm.
        "readinessProbe": {
            "httpGet": {"path": READYZ_PATH, "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": HEALTHZ_PATH, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if runtime.resources:
        container["resources"] = thaw(runtime.resources)
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": dict(runtime.node_selector) or None,
        "tolerations": [thaw(t) for t in runtime.tolerations] or None,
        "affinity": None if runtime.affinity is None else thaw(runtime.affinity),
    }


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of JSON-like data held in read-only views."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value

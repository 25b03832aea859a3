"""Pure rendering of a RuntimeFleet's children: Deployment, Service, config ConfigMap, token-digest Secret.

The pod template depends on the fleet alone, never on its members: members come and go by
rewriting the ConfigMap (and the digest Secret), which the runtime, run with `--watch-config`,
applies live. Neither is mounted by subPath, so the kubelet's updates reach running pods.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from warmpool_contract import (
    HTTP_PORT,
    TOKENS_DIR,
    WATCH_CONFIG_FLAG,
)
from warmpool_operator.diff import Exact
from warmpool_operator.render import (
    ANNOTATION_BUDGET,
    BASE_MEMORY_BYTES,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    Children,
    RenderOptions,
    default_requests,
    disruption_budget_spec,
    pod_settings,
    rolling_deployment_spec,
    runtime_container,
    runtime_pod_security,
    stamped,
)
from warmpool_operator.render import (
    owner_reference as pool_owner_reference,
)
from warmpool_operator.runtime_config import CONFIG_DIR, DRAIN_SECONDS, GRACE_MARGIN_SECONDS, _limits, module_source
from warmpool_operator.runtimefleet.members import Member
from warmpool_operator.runtimefleet.spec import API_VERSION, KIND, RuntimeFleet
from warmpool_operator.spec import GROUP

APP_NAME = "warmpool-fleet-runtime"
"""Distinct from a dedicated pool's pods, so no pool's selector ever matches a fleet's pods."""
LABEL_FLEET = f"{GROUP}/fleet"
CONFIG_FILE = "config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
SHUTDOWN_TIMEOUT_SECONDS = DRAIN_SECONDS + 30 + 2
"""Fixed for the fleet (not from its members' timeouts), so a member never changes the pod template:
after SIGTERM the drain window, then calls in flight get up to 30 s more."""


def deployment_name(fleet: str) -> str:
    return f"{fleet}-runtime"


def service_name(fleet: str) -> str:
    return f"{fleet}-runtime"


def config_map_name(fleet: str) -> str:
    return f"{fleet}-runtime-config"


def tokens_secret_name(fleet: str) -> str:
    return f"{fleet}-tokens"


def selector_labels(fleet: str) -> dict[str, str]:
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: fleet}


def selector_string(fleet: str) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(fleet).items()))


def common_labels(fleet: str) -> dict[str, str]:
    return {
        **selector_labels(fleet),
        LABEL_COMPONENT: "runtime",
        LABEL_PART_OF: "warmpool",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_FLEET: fleet,
    }


def owner_reference(fleet: RuntimeFleet) -> dict[str, Any]:
    return pool_owner_reference(fleet.meta, API_VERSION, KIND)


def _metadata(fleet: RuntimeFleet, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": fleet.meta.namespace,
        "labels": common_labels(fleet.meta.name),
        "ownerReferences": [owner_reference(fleet)],
    }


def token_file(tenant: str) -> str:
    return f"{TOKENS_DIR}/{tenant}"


def runtime_config(
    fleet: RuntimeFleet, members: Sequence[Member], warm: Mapping[tuple[str, str], int] | None = None
) -> dict[str, Any]:
    """Every member's tuple; `warm[(tenant, sha256)]` overrides a member's own warm count (the autoscaler's)."""
    tuples = []
    for member in sorted(members, key=lambda m: (m.pool.spec.tenant, m.pool.spec.module.sha256)):
        spec = member.pool.spec
        count = (warm or {}).get((spec.tenant, spec.module.sha256), spec.warm_instances_per_tuple)
        entry: dict[str, Any] = {
            "tenant": spec.tenant,
            "module": {"sha256": spec.module.sha256, "source": module_source(spec.module.source)},
            "warmInstancesPerTuple": count,
            "limits": _limits(spec.limits),
        }
        if member.token_digests is not None:
            entry["tokenDigestsFile"] = token_file(spec.tenant)
        tuples.append(entry)
    capacity = fleet.spec.sizing().pod_capacity
    return {
        "maxTotalWarm": capacity,
        "settings": {"drainSeconds": DRAIN_SECONDS, "shutdownTimeoutSeconds": SHUTDOWN_TIMEOUT_SECONDS,
                     "poolSlots": pool_slots(capacity)},
        "tuples": tuples,
    }


POOL_SLOTS_HEADROOM = 64
"""Instance slots beyond the warm cap: cold instances of misses, and a replaced tuple prewarming beside
the old one until it takes over."""
RUNTIME_POOL_SLOTS = 1000
"""The runtime's own default."""


def pool_slots(capacity: int) -> int:
    """Slots the pooling allocator reserves on a fleet pod: every warm instance the cap allows plus headroom
    (never below the runtime's default); fixed per fleet, since the runtime reserves them at start."""
    return max(RUNTIME_POOL_SLOTS, capacity + POOL_SLOTS_HEADROOM)


_SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter when PyYAML has it (the same text, several times faster); the pure-Python one otherwise."""
CONFIG_TEXTS_KEPT = 8
"""Config texts remembered by their JSON (one per fleet reconciled lately): a settled fleet's config,
~300 KB of YAML at 1,000 members, is then not emitted again at every reconciliation."""


def render_config_text(
    fleet: RuntimeFleet, members: Sequence[Member], warm: Mapping[tuple[str, str], int] | None = None
) -> str:
    return _yaml_text(json.dumps(runtime_config(fleet, members, warm), sort_keys=True))


@functools.lru_cache(maxsize=CONFIG_TEXTS_KEPT)
def _yaml_text(config_json: str) -> str:
    text: str = yaml.dump(json.loads(config_json), Dumper=_SAFE_DUMPER, sort_keys=True, default_flow_style=False)
    return text


def token_files(members: Sequence[Member]) -> dict[str, str]:
    """tenant -> its members' token digests, one per line (members of one tenant share a namespace)."""
    by_tenant: dict[str, set[str]] = {}
    for member in members:
        if member.token_digests is not None:
            by_tenant.setdefault(member.pool.spec.tenant, set()).update(member.token_digests)
    return {tenant: "".join(f"{d}\n" for d in sorted(digests)) for tenant, digests in sorted(by_tenant.items())}


def render_children(
    fleet: RuntimeFleet,
    members: Sequence[Member],
    *,
    options: RenderOptions,
    replicas: int | None,
    warm: Mapping[tuple[str, str], int] | None = None,
) -> Children:
    """`replicas=None` leaves `Deployment.spec.replicas` out (the autoscaler owns it)."""
    name = fleet.meta.name
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(fleet, config_map_name(name)),
        "data": {CONFIG_FILE: render_config_text(fleet, members, warm)},
    }
    tokens: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(fleet, tokens_secret_name(name)),
        "type": "Opaque",
    }
    files = token_files(members)
    if files:
        # Left out when empty: an empty map reads back as no field at all, which would look like drift.
        tokens["data"] = Exact({k: base64.b64encode(v.encode()).decode() for k, v in files.items()})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(fleet, service_name(name)),
        "spec": {
            "type": "ClusterIP",
            "selector": Exact(selector_labels(name)),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return Children(
        config_map=stamped(config_map),
        tokens=stamped(tokens),
        service=stamped(service),
        deployment=stamped(render_deployment(fleet, options=options, replicas=replicas)),
        disruption_budget=None if (budget := render_disruption_budget(fleet)) is None else stamped(budget),
    )


def render_disruption_budget(fleet: RuntimeFleet) -> dict[str, Any] | None:
    """The fleet's PodDisruptionBudget, if spec.runtime.podDisruptionBudget asks for one."""
    budget = fleet.spec.runtime.pod_disruption_budget
    if budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(fleet, deployment_name(fleet.meta.name)),
        "spec": disruption_budget_spec(budget, selector_labels(fleet.meta.name)),
    }


def render_deployment(fleet: RuntimeFleet, *, options: RenderOptions, replicas: int | None) -> dict[str, Any]:
    name = fleet.meta.name
    template: dict[str, Any] = {"metadata": _template_metadata(fleet), "spec": _pod_spec(fleet, options)}
    spec = rolling_deployment_spec(selector_labels(name), template, replicas)
    metadata = _metadata(fleet, deployment_name(name))
    if fleet.spec.runtime.pod_disruption_budget is not None:
        metadata["annotations"] = {ANNOTATION_BUDGET: deployment_name(name)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _template_metadata(fleet: RuntimeFleet) -> dict[str, Any]:
    runtime = fleet.spec.runtime
    out: dict[str, Any] = {"labels": {**runtime.pod_labels, **common_labels(fleet.meta.name)}}
    if runtime.pod_annotations:
        out["annotations"] = dict(runtime.pod_annotations)
    return out


def resources(fleet: RuntimeFleet) -> dict[str, Any]:
    """Default requests, and a memory limit of the memory budget plus the runtime's own, under what
    `spec.runtime.resources` sets (which wins)."""
    given, requests, limits = default_requests(fleet.spec.runtime.resources)
    budget = fleet.spec.memory_budget_bytes
    if "memory" not in limits and budget is not None:
        limits["memory"] = f"{math.ceil((budget + BASE_MEMORY_BYTES) / 2**20)}Mi"
    out = {**given, "requests": requests}
    if limits:
        out["limits"] = limits
    return out


def _pod_spec(fleet: RuntimeFleet, options: RenderOptions) -> dict[str, Any]:
    name, runtime = fleet.meta.name, fleet.spec.runtime
    # Whole directories, never subPath: the kubelet's atomic updates must reach the running pods.
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container = runtime_container(
        image=runtime.image or options.default_image, options=options,
        args=("--config", CONFIG_PATH, WATCH_CONFIG_FLAG), startup_seconds=runtime.startup_seconds,
        resources=resources(fleet), mounts=mounts, env=runtime.env,
    )
    pod: dict[str, Any] = {
        "enableServiceLinks": False,
        "securityContext": runtime_pod_security(),
        "terminationGracePeriodSeconds": SHUTDOWN_TIMEOUT_SECONDS + GRACE_MARGIN_SECONDS,
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(name)}},
            {"name": "tokens", "secret": {"secretName": tokens_secret_name(name)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    pod.update(pod_settings(runtime, selector_labels(name)))
    return pod

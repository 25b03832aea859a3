"""The runtime's config document (docs/runtime-config.md) rendered from a WarmPool spec; pure."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import yaml

from warmpool_contract import CA_BUNDLES_DIR, DOCKER_CONFIG_KEY, HEADERS_DIR, LIMIT_FIELDS, PULL_SECRETS_DIR
from warmpool_operator.spec import Limits, ModuleSource, WarmPoolSpec

CONFIG_DIR = "/etc/warmpool"
CONFIG_FILE = "runtime.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
MODULES_DIR = "/modules"

DRAIN_SECONDS = 5
"""After SIGTERM the runtime fails readiness at once and serves this long: endpoints drop the pod meanwhile."""
SHUTDOWN_MARGIN_SECONDS = 2
"""After the drain window and the longest call (limits.timeoutMs): last responses written, process gone."""
GRACE_MARGIN_SECONDS = 5
"""Between the runtime's own exit deadline and the kubelet's SIGKILL."""


def runtime_config(spec: WarmPoolSpec) -> dict[str, Any]:
    """One tuple per pool: the pool's tenant and module, with the pool's limits as defaults."""
    return {
        "maxTotalWarm": spec.max_total_warm,
        "settings": {"drainSeconds": DRAIN_SECONDS, "shutdownTimeoutSeconds": shutdown_timeout_seconds(spec)},
        "limits": _limits(spec.limits),
        "tuples": [
            {
                "tenant": spec.tenant,
                "module": {"sha256": spec.module.sha256, "source": module_source(spec.module.source)},
                "warmInstancesPerTuple": spec.warm_instances_per_tuple,
            }
        ],
    }


def shutdown_timeout_seconds(spec: WarmPoolSpec) -> int:
    """The runtime exits within this long of SIGTERM: drain, then let the longest call finish."""
    return DRAIN_SECONDS + math.ceil(spec.limits.timeout_ms / 1000) + SHUTDOWN_MARGIN_SECONDS


def termination_grace_seconds(spec: WarmPoolSpec) -> int:
    """The pod's grace period: longer than the runtime's own shutdown deadline, so it is never SIGKILLed."""
    return shutdown_timeout_seconds(spec) + GRACE_MARGIN_SECONDS


def module_source(source: ModuleSource) -> dict[str, Any]:
    """A path stays a path; a ConfigMap key becomes a file under MODULES_DIR; a url or an oci source
    names the files its Secrets and ConfigMap are mounted as (see `render.source_volumes`)."""
    if source.url is not None:
        out: dict[str, Any] = {"url": source.url}
        if source.headers_secret is not None:
            out["headersDir"] = f"{HEADERS_DIR}/{source.headers_secret}"
        if source.ca_bundle is not None:
            out["caFile"] = f"{CA_BUNDLES_DIR}/{source.ca_bundle.name}/{source.ca_bundle.key}"
        return out
    if source.path is not None:
        return {"path": source.path}
    if source.oci is not None:
        oci: dict[str, Any] = {"repository": source.oci.repository}
        if source.oci.reference is not None:
            oci["reference"] = source.oci.reference
        if source.oci.insecure:
            oci["insecure"] = True
        if source.oci.pull_secret is not None:
            oci["dockerConfig"] = f"{PULL_SECRETS_DIR}/{source.oci.pull_secret}/{DOCKER_CONFIG_KEY}"
        return {"oci": oci}
    assert source.config_map is not None  # the parser guarantees exactly one source
    return {"path": f"{MODULES_DIR}/{source.config_map.key}"}


def render_runtime_yaml(spec: WarmPoolSpec) -> str:
    """Deterministic YAML text, so that its hash changes only when the content does."""
    text: str = yaml.safe_dump(runtime_config(spec), sort_keys=True, default_flow_style=False)
    return text


def config_hash(text: str) -> str:
    """Short content hash put on the pod template: a changed config rolls the pods."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _limits(limits: Limits) -> dict[str, int]:
    values = {key: getattr(limits, attr) for key, attr in LIMIT_FIELDS.items()}
    return {key: value for key, value in values.items() if value is not None}

"""The operator–runtime contract: names, patterns and defaults both sides share; imports neither side."""

from __future__ import annotations

import re
from typing import Final

# --- identities -------------------------------------------------------------------------------
TENANT_PATTERN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
"""A tenant is a DNS-1123 label (it becomes a label value and a URL path segment)."""
SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}\Z")
"""A module is named by the lowercase hex sha256 of its bytes."""
SHORT_HASH: Final = 12
"""The `module` label and Kubernetes labels carry this many hex characters of the sha256."""

# --- the runtime config document (docs/runtime-config.md) --------------------------------------
DEFAULT_WARM_INSTANCES: Final = 4
DEFAULT_MAX_TOTAL_WARM: Final = 256
DEFAULT_MEMORY_BYTES: Final = 64 << 20
MIN_MEMORY_BYTES: Final = 65536
"""One Wasm page: a smaller memory limit cannot hold any memory at all."""
DEFAULT_TIMEOUT_MS: Final = 1000
DEFAULT_TABLE_ELEMENTS: Final = 10_000
DEFAULT_MAX_MODULE_BYTES: Final = 50 << 20
LIMIT_FIELDS: Final = {
    "memoryBytes": "memory_bytes",
    "timeoutMs": "timeout_ms",
    "fuel": "fuel",
    "tableElements": "table_elements",
    "maxModuleBytes": "max_module_bytes",
}
"""Config-document key -> attribute name of a limits dataclass, on both sides."""

# --- the runtime's HTTP surface ------------------------------------------------------------------
HTTP_PORT: Final = 8080
HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
INVOKE_PREFIX: Final = "/v1/"

# --- the runtime's metric names (families, without the `_total` a counter gains in exposition) ---
POOL_DRAWS: Final = "tensor_wasm_pool_draws"
POOL_WARM: Final = "tensor_wasm_pool_warm_instances"
POOL_CAPACITY: Final = "tensor_wasm_pool_capacity_instances"
POOL_IN_FLIGHT: Final = "tensor_wasm_pool_in_flight"
POOL_RESET_FAILED: Final = "tensor_wasm_pool_reset_failed"
POOL_TERMINATED: Final = "tensor_wasm_pool_terminated"
INVOCATIONS: Final = "tensor_wasm_invocations"
TRAPS: Final = "tensor_wasm_traps"
INVOCATION_DURATION: Final = "tensor_wasm_invocation_duration_seconds"
INSTANTIATION_DURATION: Final = "tensor_wasm_instantiation_duration_seconds"
CALLS_SHED: Final = "tensor_wasm_calls_shed"
WORKER_QUEUE_DEPTH: Final = "tensor_wasm_worker_queue_depth"
WORKER_BUSY: Final = "tensor_wasm_worker_busy"
SATURATED: Final = "tensor_wasm_saturated"

# --- files the operator mounts into runtime pods and the runtime reads ----------------------------
WATCH_CONFIG_FLAG: Final = "--watch-config"
"""`warmpool runtime serve --config PATH --watch-config`: apply changes to the config file live
(tuples added, removed and resized without a restart), as a mounted ConfigMap is updated."""
PULL_SECRETS_DIR: Final = "/var/run/warmpool/pull-secrets"
"""A `kubernetes.io/dockerconfigjson` Secret named N is mounted at PULL_SECRETS_DIR/N."""
DOCKER_CONFIG_KEY: Final = ".dockerconfigjson"
"""The key of a pull secret (and so the file name under its mount)."""
HEADERS_DIR: Final = "/var/run/warmpool/headers"
"""A url source's `headersFrom.secretRef` N is mounted at HEADERS_DIR/N: one file per header."""
CA_BUNDLES_DIR: Final = "/var/run/warmpool/ca"
"""A url source's `caBundle.configMapRef` N is mounted at CA_BUNDLES_DIR/N."""
TOKENS_DIR: Final = "/var/run/warmpool/tokens"
"""The Secret of callers' bearer-token digests is mounted here: one file per tenant, one sha256
hex digest of an accepted token per line (several during a rotation)."""

# --- module sources ------------------------------------------------------------------------------
REDACTED: Final = "<redacted>"
"""What stands in for a hidden part of a module source."""
_AUTHORITY: Final = re.compile(r"^(\[[0-9A-Za-z:.%]*\]|[-0-9A-Za-z._~%!$&'()*+,;=]*)(:[0-9]*)?$")
"""A host (name, IPv4 or [IPv6]) with an optional port: anything else is shown as REDACTED."""


def redact_url(url: str) -> str:
    """A module source safe to show anywhere (status, errors, logs, conditions, Events).

    Signed URLs carry their credentials in the query string (S3, GCS, Azure SAS) and sometimes in
    the userinfo, so: the userinfo is dropped, everything from the first `?` or `#` on becomes
    `?<redacted>`, an authority that is not a plain host[:port] becomes `<redacted>`, and control
    characters are percent-encoded (a source can never forge a log line). Scheme, host, port and
    path are kept. Pure; never raises.
    """
    if not isinstance(url, str):
        return REDACTED
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    head, hidden = url[:cut], cut < len(url)
    scheme_end = head.find("://")
    if scheme_end >= 0:
        prefix, rest = head[:scheme_end + 3], head[scheme_end + 3:]
    elif head.startswith("//"):
        prefix, rest = "//", head[2:]
    else:
        prefix, rest = "", head
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    if prefix and not _AUTHORITY.match(authority):
        # Not a host: a password with a raw '/' in it, say, so the "path" may hold the rest of it.
        authority, path = REDACTED, ""
    out = prefix + authority + path + (f"?{REDACTED}" if hidden else "")
    return "".join(c if c.isprintable() else "".join(f"%{b:02X}" for b in c.encode()) for c in out)

# --- the runtime's metrics of live config, tuple states, the warm cap and callers' tokens ----------
POOL_EVICTIONS: Final = "tensor_wasm_pool_evictions"
"""Idle instances a tuple lost because `maxTotalWarm` gave their slots to more recently used tuples."""
TUPLE_READY: Final = "tensor_wasm_tuple_ready"
"""1 while a tuple is warm (every instance of its floor held), else 0."""
TUPLES: Final = "tensor_wasm_tuples"
"""Tuples configured on the runtime, by state (loading, warm, failed)."""
CONFIG_RELOADS: Final = "tensor_wasm_config_reloads"
"""Changed config files the watcher read, by result (applied, refused)."""
UNAUTHORIZED: Final = "tensor_wasm_unauthorized"
"""Calls refused with 401 for a missing or wrong bearer token."""

# --- the runtime's metric of refused token digests files ---------------------------------------------
TOKEN_FILES_REFUSED: Final = "tensor_wasm_token_files_refused"
"""Token digests files the runtime refused for their size (or kind), by file; the digests read before are kept."""

# --- the runtime's log format, which the operator chooses for its pods ------------------------------
LOG_FORMAT_FLAG: Final = "--log-format"
"""`warmpool runtime serve` flag choosing how log lines are written."""
LOG_FORMATS: Final = ("json", "text")
"""Its values: one JSON object a line (for log collectors), or human-readable text."""

# --- the runtime's compact per-tuple stats, scraped by the autoscalers ------------------------------
STATS_PATH: Final = "/stats"
"""`GET /stats` on the runtime's HTTP port: the pool counters of every tuple as one compact JSON document
(docs/metrics.md), far cheaper to render and parse than `/metrics` at hundreds of tuples. A runtime that
does not serve it answers 404; scrapers then read `/metrics`."""
STATS_VERSION: Final = 1
"""The document's `version`: a reader refuses any other."""
STATS_TENANT: Final = "tenant"
STATS_SHA256: Final = "sha256"
STATS_HITS: Final = "hits"
STATS_MISSES: Final = "misses"
STATS_IN_FLIGHT: Final = "inFlight"
STATS_WARM: Final = "warm"
STATS_CAPACITY: Final = "capacity"
STATS_FIELDS: Final = (STATS_TENANT, STATS_SHA256, STATS_HITS, STATS_MISSES, STATS_IN_FLIGHT, STATS_WARM,
                       STATS_CAPACITY)
"""The columns of each row of `tuples`, as the document's `fields` names them (readers find their columns
by name there, so columns may be added at the end without a new version)."""

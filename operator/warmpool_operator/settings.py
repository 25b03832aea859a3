"""Operator settings: one documented frozen dataclass, read from the environment in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from warmpool_contract import LOG_FORMATS
from warmpool_operator.defaults import ClusterDefaults, DefaultsError, load_defaults

ENV_PREFIX = "WARMPOOL_OPERATOR_"


class SettingsError(ValueError):
    """An environment variable with a value the operator cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    """Everything the operator can be told besides which namespaces to watch (CLI flags)."""

    runtime_image: str = "warmpool-runtime:0.1.0"
    """Image of the runtime pods when a WarmPool sets no `spec.runtime.image` (RUNTIME_IMAGE)."""
    image_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of the runtime container (IMAGE_PULL_POLICY)."""
    runtime_log_format: str = "json"
    """Log format of the runtime pods, `json` (one object a line) or `text` (RUNTIME_LOG_FORMAT)."""
    resync_seconds: float = 30.0
    """Period of the level-based resync of every pool: drift, pod health, status (RESYNC_SECONDS)."""
    retry_backoff_seconds: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    """Delays between retries of a pool that cannot progress; the last repeats (RETRY_BACKOFF_SECONDS)."""
    probe_timeout_seconds: float = 1.0
    """Timeout of one `GET /readyz` to a not-Ready pod (PROBE_TIMEOUT_SECONDS)."""
    max_probed_pods: int = 5
    """At most this many not-Ready pods are asked for /readyz per reconciliation (MAX_PROBED_PODS)."""
    request_timeout_seconds: float = 30.0
    """Total timeout of one Kubernetes API request, watches excluded (REQUEST_TIMEOUT_SECONDS)."""
    connect_timeout_seconds: float = 5.0
    """TCP/TLS connect timeout towards the API server (CONNECT_TIMEOUT_SECONDS)."""
    watch_server_timeout_seconds: float = 300.0
    """Each watch request asks the server to close it after this long; kopf re-lists and re-watches
    (WATCH_SERVER_TIMEOUT_SECONDS)."""
    watch_inactivity_seconds: float = 70.0
    """A watch stream silent for this long (not even a bookmark) is considered dead and reopened
    (WATCH_INACTIVITY_SECONDS)."""
    metrics_host: str = "0.0.0.0"
    """Address of the Prometheus metrics endpoint (METRICS_HOST)."""
    metrics_port: int = 9090
    """Port of the Prometheus metrics endpoint; 0 disables it (METRICS_PORT)."""
    health_host: str = "0.0.0.0"
    """Address of the liveness endpoint `/healthz` (HEALTH_HOST)."""
    health_port: int = 8081
    """Port of the liveness endpoint; 0 disables it (HEALTH_PORT)."""
    peering_name: str = "warmpool"
    """kopf peering object shared by replicas: only the highest-priority replica acts (PEERING_NAME)."""
    priority: int = 0
    """This replica's peering priority (PRIORITY)."""
    standalone: bool = False
    """Ignore peering entirely, e.g. for a single local instance (STANDALONE)."""
    leader_election: bool = True
    """Replicas elect one leader on a coordination.k8s.io Lease; only the leader runs kopf's handlers
    (reconciliation, resync, autoscaling), the others stand by, live and ready (LEADER_ELECTION).
    Replaces kopf's peering, which is then off."""
    lease_name: str = "warmpool-operator"
    """Name of the Lease (LEASE_NAME)."""
    lease_namespace: str = ""
    """Namespace of the Lease; empty means the pod's own namespace (POD_NAMESPACE, else the service
    account's), else `default` (LEASE_NAMESPACE)."""
    identity: str = ""
    """This replica's holderIdentity; empty means the hostname (POD_NAME) plus a random suffix (IDENTITY)."""
    lease_duration_seconds: int = 15
    """A leader that stops renewing is replaced this long after its last renewal (LEASE_DURATION_SECONDS)."""
    lease_renew_deadline_seconds: float = 10.0
    """A leader that cannot renew for this long stops acting, before its Lease can expire
    (LEASE_RENEW_DEADLINE_SECONDS)."""
    lease_retry_seconds: float = 2.0
    """How often the Lease is renewed or tried (LEASE_RETRY_SECONDS)."""
    peering_lifetime_seconds: int = 30
    """A replica that stops refreshing its peering record (killed, not stopped) is considered gone
    after this long; a restarted replica waits that long before acting (PEERING_LIFETIME_SECONDS)."""
    defaults: ClusterDefaults = field(default_factory=ClusterDefaults)
    """Cluster-wide defaults of WarmPool fields (docs/defaults.md): a YAML document `defaults: {...}`
    in a file (DEFAULTS_FILE, or `--defaults`) or in the variable itself (DEFAULTS); read once at start."""


def config_from_env(env: Mapping[str, str]) -> OperatorConfig:
    """Read `WARMPOOL_OPERATOR_*` variables; unset ones keep their defaults."""
    base = OperatorConfig()

    def raw(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    def number(name: str, default: float, *, minimum: float) -> float:
        value = raw(name)
        if value is None:
            return default
        try:
            parsed = float(value)
        except ValueError as exc:
            raise SettingsError(f"{ENV_PREFIX}{name} must be a number, got {value!r}") from exc
        if parsed < minimum:
            raise SettingsError(f"{ENV_PREFIX}{name} must be >= {minimum}, got {value!r}")
        return parsed

    def integer(name: str, default: int, *, minimum: int) -> int:
        value = number(name, default, minimum=minimum)
        if value != int(value):
            raise SettingsError(f"{ENV_PREFIX}{name} must be an integer")
        return int(value)

    backoff = base.retry_backoff_seconds
    if (text := raw("RETRY_BACKOFF_SECONDS")) is not None:
        try:
            backoff = tuple(float(part) for part in text.split(","))
        except ValueError as exc:
            raise SettingsError(f"{ENV_PREFIX}RETRY_BACKOFF_SECONDS must be comma-separated numbers") from exc
        if not backoff or any(delay <= 0 for delay in backoff):
            raise SettingsError(f"{ENV_PREFIX}RETRY_BACKOFF_SECONDS must hold positive numbers")
    def flag(name: str, default: bool) -> bool:
        value = (raw(name) or str(default)).lower()
        if value not in ("true", "false", "1", "0"):
            raise SettingsError(f"{ENV_PREFIX}{name} must be true or false")
        return value in ("true", "1")

    def choice(name: str, default: str, choices: tuple[str, ...]) -> str:
        value = raw(name) or default
        if value not in choices:
            raise SettingsError(f"{ENV_PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    duration = integer("LEASE_DURATION_SECONDS", base.lease_duration_seconds, minimum=2)
    deadline = number("LEASE_RENEW_DEADLINE_SECONDS", base.lease_renew_deadline_seconds, minimum=0.5)
    retry = number("LEASE_RETRY_SECONDS", base.lease_retry_seconds, minimum=0.1)
    if not retry < deadline < duration:
        raise SettingsError(
            f"{ENV_PREFIX}LEASE_RETRY_SECONDS < LEASE_RENEW_DEADLINE_SECONDS < LEASE_DURATION_SECONDS must hold"
        )
    return OperatorConfig(
        defaults=defaults_from(raw("DEFAULTS"), raw("DEFAULTS_FILE")),
        runtime_image=raw("RUNTIME_IMAGE") or base.runtime_image,
        image_pull_policy=raw("IMAGE_PULL_POLICY") or base.image_pull_policy,
        runtime_log_format=choice("RUNTIME_LOG_FORMAT", base.runtime_log_format, LOG_FORMATS),
        resync_seconds=number("RESYNC_SECONDS", base.resync_seconds, minimum=0.1),
        retry_backoff_seconds=backoff,
        probe_timeout_seconds=number("PROBE_TIMEOUT_SECONDS", base.probe_timeout_seconds, minimum=0.01),
        max_probed_pods=integer("MAX_PROBED_PODS", base.max_probed_pods, minimum=0),
        request_timeout_seconds=number("REQUEST_TIMEOUT_SECONDS", base.request_timeout_seconds, minimum=0.1),
        connect_timeout_seconds=number("CONNECT_TIMEOUT_SECONDS", base.connect_timeout_seconds, minimum=0.1),
        watch_server_timeout_seconds=number(
            "WATCH_SERVER_TIMEOUT_SECONDS", base.watch_server_timeout_seconds, minimum=1
        ),
        watch_inactivity_seconds=number("WATCH_INACTIVITY_SECONDS", base.watch_inactivity_seconds, minimum=1),
        metrics_host=raw("METRICS_HOST") or base.metrics_host,
        metrics_port=integer("METRICS_PORT", base.metrics_port, minimum=0),
        health_host=raw("HEALTH_HOST") or base.health_host,
        health_port=integer("HEALTH_PORT", base.health_port, minimum=0),
        peering_name=raw("PEERING_NAME") or base.peering_name,
        priority=integer("PRIORITY", base.priority, minimum=-(2**31)),
        standalone=flag("STANDALONE", base.standalone),
        leader_election=flag("LEADER_ELECTION", base.leader_election),
        lease_name=raw("LEASE_NAME") or base.lease_name,
        lease_namespace=raw("LEASE_NAMESPACE") or base.lease_namespace,
        identity=raw("IDENTITY") or base.identity,
        lease_duration_seconds=duration,
        lease_renew_deadline_seconds=deadline,
        lease_retry_seconds=retry,
        peering_lifetime_seconds=integer("PEERING_LIFETIME_SECONDS", base.peering_lifetime_seconds, minimum=15),
    )


def defaults_from(inline: str | None, path: str | None) -> ClusterDefaults:
    """Cluster defaults from the variable's own text or from a file; never both."""
    if inline is not None and path is not None:
        raise SettingsError(f"{ENV_PREFIX}DEFAULTS and {ENV_PREFIX}DEFAULTS_FILE are both set; use one")
    try:
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"{ENV_PREFIX}DEFAULTS_FILE: cannot read {path}: {exc.strerror}") from exc
            return load_defaults(text, path)
        if inline is not None:
            return load_defaults(inline, f"{ENV_PREFIX}DEFAULTS")
    except DefaultsError as exc:
        raise SettingsError(str(exc)) from exc
    return ClusterDefaults()


def backoff_delay(config: OperatorConfig, retry: int) -> float:
    """Delay before retry number `retry` (0-based); the last step repeats."""
    steps = config.retry_backoff_seconds
    return steps[min(max(retry, 0), len(steps) - 1)]

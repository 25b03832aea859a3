"""A WarmPool manifest parsed once, at the boundary, into frozen and validated dataclasses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from warmpool_contract import (
    DEFAULT_MAX_TOTAL_WARM,
    DEFAULT_MEMORY_BYTES,
    DEFAULT_TIMEOUT_MS,
    DEFAULT_WARM_INSTANCES,
    LIMIT_FIELDS,
    MIN_MEMORY_BYTES,
    SHA256_HEX,
    SHORT_HASH,
    TENANT_PATTERN,
)
from warmpool_operator.fields import (
    SpecError,
    integer,
    no_unknown,
    optional_integer,
    optional_object,
    require_object,
    require_string,
    string_map,
)
from warmpool_operator.runtimefleet.refs import FleetRef, PoolAuth, parse_auth, parse_fleet_ref
from warmpool_operator.scaling.spec import AutoscalingSpec, AutoscalingSpecError, parse_autoscaling

GROUP = "tensorwasm.dev"
VERSION = "v1alpha1"
PLURAL = "warmpools"
KIND = "WarmPool"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Service names (and so pool names) must be DNS-1035 labels: they cannot start with a digit.
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
# An OCI repository without scheme: a registry host that cannot be mistaken for a path component (a
# name with a dot, a port, [IPv6] or localhost, as Docker reads references), then the distribution
# spec's lowercase path components. The CRD carries the same pattern, spelled out.
OCI_REPOSITORY = re.compile(
    r"^(\[[0-9a-fA-F:.]+\](:[0-9]{1,5})?|[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)+"
    r"(:[0-9]{1,5})?|[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?:[0-9]{1,5}|localhost)(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)+$"
)
# A tag (distribution spec) or a manifest digest.
OCI_REFERENCE = re.compile(r"^([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}|sha256:[0-9a-f]{64})$")
# Label keys the operator sets itself; podLabels may not override them (the selector depends on them).
RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", f"{GROUP}/")

DEFAULT_REPLICAS = 1
DEFAULT_STARTUP_SECONDS = 300
"""How long a runtime pod may take to start answering /healthz: a slow module download (the runtime's
fetch deadline is 120 s) and a large module's compile, on a loaded node."""

JsonObject = Mapping[str, Any]



@dataclass(frozen=True, slots=True)
class ConfigMapRef:
    """A module stored under `key` in the `binaryData` of a ConfigMap in the pool's namespace."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class OciSource:
    """A module stored as the Wasm layer of an OCI artifact in a registry."""

    repository: str
    """`host[:port]/path`, no scheme."""
    reference: str | None = None
    """A tag or `sha256:<hex>` manifest digest; None lets the runtime find the layer by module.sha256."""
    insecure: bool = False
    """Plain HTTP to the registry (a loopback development registry)."""
    pull_secret: str | None = None
    """Name of a `kubernetes.io/dockerconfigjson` Secret in the pool's namespace."""

    @property
    def registry(self) -> str:
        """The `host[:port]` part of the repository."""
        return self.repository.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """Where the runtime loads the module from; exactly one of url, path, config_map, oci is set.

    `headers_secret` and `ca_bundle` only ever accompany `url`.
    """

    url: str | None = None
    path: str | None = None
    config_map: ConfigMapRef | None = None
    oci: OciSource | None = None
    headers_secret: str | None = None
    """Name of a Secret whose entries are sent as HTTP headers with the url's request."""
    ca_bundle: ConfigMapRef | None = None
    """A PEM CA bundle under `key` in a ConfigMap, trusted for the https url."""


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """The Wasm module a pool keeps warm, pinned by content hash."""

    sha256: str
    source: ModuleSource

    @property
    def short_hash(self) -> str:
        """The first SHORT_HASH hex characters, as used in labels and metrics."""
        return self.sha256[:SHORT_HASH]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance limits the runtime enforces."""

    memory_bytes: int = DEFAULT_MEMORY_BYTES
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    fuel: int | None = None
    table_elements: int | None = None
    max_module_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class DisruptionBudget:
    """A PodDisruptionBudget for the pool's pods: exactly one field is set (an int or a percentage)."""

    min_available: int | str | None = None
    max_unavailable: int | str | None = None


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    """Pod-level settings of the runtime pods; JSON-valued fields are read-only views."""

    image: str | None = None
    resources: JsonObject = field(default_factory=lambda: MappingProxyType({}))
    node_selector: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tolerations: tuple[JsonObject, ...] = ()
    affinity: JsonObject | None = None
    pod_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pod_annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    startup_seconds: int = DEFAULT_STARTUP_SECONDS
    image_pull_secrets: tuple[str, ...] = ()
    service_account_name: str | None = None
    """None: the namespace's `default` service account."""
    automount_service_account_token: bool = False
    env: tuple[JsonObject, ...] = ()
    topology_spread_constraints: tuple[JsonObject, ...] = ()
    """As given; a constraint without labelSelector selects the pool's pods when rendered."""
    pod_disruption_budget: DisruptionBudget | None = None


@dataclass(frozen=True, slots=True)
class WarmPoolSpec:
    """The desired state of one WarmPool."""

    tenant: str
    module: ModuleSpec
    warm_instances_per_tuple: int = DEFAULT_WARM_INSTANCES
    max_total_warm: int = DEFAULT_MAX_TOTAL_WARM
    replicas: int = DEFAULT_REPLICAS
    autoscaling: AutoscalingSpec = field(default_factory=AutoscalingSpec)
    limits: Limits = field(default_factory=Limits)
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    fleet_ref: FleetRef | None = None
    """Set: the pool's tuple is hosted by a shared RuntimeFleet, with no Deployment of its own."""
    auth: PoolAuth | None = None


@dataclass(frozen=True, slots=True)
class PoolMeta:
    """The identity of a WarmPool object: what children point back to."""

    name: str
    namespace: str
    uid: str
    generation: int


@dataclass(frozen=True, slots=True)
class WarmPool:
    """A parsed WarmPool: identity, desired spec and the status last written."""

    meta: PoolMeta
    spec: WarmPoolSpec
    status: JsonObject


def parse_warmpool(body: Mapping[str, Any]) -> WarmPool:
    """Parse a whole WarmPool object as read from the API; raise SpecError naming the field."""
    meta = parse_meta(body.get("metadata"))
    spec = parse_spec(body.get("spec"))
    status = body.get("status") or {}
    if not isinstance(status, Mapping):
        raise SpecError("status", "must be an object")
    return WarmPool(meta=meta, spec=spec, status=MappingProxyType(dict(status)))


def parse_meta(raw: Any) -> PoolMeta:
    """The metadata fields the operator relies on; the name must also be a valid Service name."""
    obj = require_object(raw, "metadata")
    name = require_string(obj, "name", "metadata")
    if len(name) > 63 or not DNS1035_LABEL.match(name):
        raise SpecError("metadata.name", "must be a DNS-1035 label of at most 63 characters")
    namespace = require_string(obj, "namespace", "metadata")
    uid = require_string(obj, "uid", "metadata")
    generation = obj.get("generation", 1)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise SpecError("metadata.generation", "must be an integer")
    return PoolMeta(name=name, namespace=namespace, uid=uid, generation=generation)


def parse_spec(raw: Any) -> WarmPoolSpec:
    """Parse and validate `spec` with the same rules as the CRD's schema and CEL validations."""
    obj = require_object(raw, "spec")
    no_unknown(
        obj,
        "spec",
        {
            "tenant",
            "module",
            "warmInstancesPerTuple",
            "maxTotalWarm",
            "replicas",
            "autoscaling",
            "limits",
            "runtime",
            "fleetRef",
            "auth",
        },
    )
    tenant = require_string(obj, "tenant", "spec")
    if not TENANT_PATTERN.match(tenant):
        raise SpecError("spec.tenant", "must be a DNS-1123 label (lowercase alphanumerics and '-', at most 63)")
    warm = integer(obj, "warmInstancesPerTuple", "spec", DEFAULT_WARM_INSTANCES, minimum=0, maximum=4096)
    max_total = integer(obj, "maxTotalWarm", "spec", DEFAULT_MAX_TOTAL_WARM, minimum=0, maximum=65536)
    if max_total < warm:
        raise SpecError("spec.maxTotalWarm", f"must be >= spec.warmInstancesPerTuple ({warm}), got {max_total}")
    try:
        autoscaling = parse_autoscaling(optional_object(obj, "autoscaling", "spec"))
    except AutoscalingSpecError as exc:
        field_path, _, problem = str(exc).partition(" ")
        raise SpecError(field_path.rstrip(":"), problem or str(exc)) from exc
    return WarmPoolSpec(
        tenant=tenant,
        module=_parse_module(obj.get("module")),
        warm_instances_per_tuple=warm,
        max_total_warm=max_total,
        replicas=integer(obj, "replicas", "spec", DEFAULT_REPLICAS, minimum=0),
        autoscaling=autoscaling,
        limits=_parse_limits(optional_object(obj, "limits", "spec")),
        runtime=_parse_runtime(optional_object(obj, "runtime", "spec")),
        **_parse_fleet_fields(obj),
    )


def _parse_fleet_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"fleet_ref": parse_fleet_ref(obj.get("fleetRef")), "auth": parse_auth(obj.get("auth"))}


def _parse_module(raw: Any) -> ModuleSpec:
    obj = require_object(raw, "spec.module")
    no_unknown(obj, "spec.module", {"sha256", "source"})
    sha = require_string(obj, "sha256", "spec.module")
    if not SHA256_HEX.match(sha):
        raise SpecError("spec.module.sha256", "must be 64 lowercase hexadecimal characters")
    return ModuleSpec(sha256=sha, source=_parse_source(require_object(obj.get("source"), "spec.module.source")))


def _parse_source(src: Mapping[str, Any]) -> ModuleSource:
    where = "spec.module.source"
    no_unknown(src, where, {"url", "path", "configMapRef", "oci", "headersFrom", "caBundle"})
    present = [key for key in ("url", "configMapRef", "path", "oci") if src.get(key) is not None]
    if len(present) != 1:
        raise SpecError(
            where, f"exactly one of url, configMapRef, path, oci must be set (got {', '.join(present) or 'none'})"
        )
    for extra in ("headersFrom", "caBundle"):
        if src.get(extra) is not None and present[0] != "url":
            raise SpecError(f"{where}.{extra}", f"is only allowed with url (not with {present[0]})")
    if present[0] == "url":
        return _parse_url_source(src, where)
    if present[0] == "path":
        path = require_string(src, "path", where)
        if not path.startswith("/"):
            raise SpecError(f"{where}.path", "must be an absolute path")
        return ModuleSource(path=path)
    if present[0] == "oci":
        return ModuleSource(oci=_parse_oci(require_object(src["oci"], f"{where}.oci"), f"{where}.oci"))
    return ModuleSource(config_map=_config_map_ref(src["configMapRef"], f"{where}.configMapRef"))


def _parse_url_source(src: Mapping[str, Any], where: str) -> ModuleSource:
    url = require_string(src, "url", where)
    if not URL.match(url):
        raise SpecError(f"{where}.url", "must be an http:// or https:// URL")
    headers = None
    if src.get("headersFrom") is not None:
        headers_from = require_object(src["headersFrom"], f"{where}.headersFrom")
        no_unknown(headers_from, f"{where}.headersFrom", {"secretRef"})
        headers = _secret_name(headers_from.get("secretRef"), f"{where}.headersFrom.secretRef")
    ca_bundle = None
    if src.get("caBundle") is not None:
        bundle = require_object(src["caBundle"], f"{where}.caBundle")
        no_unknown(bundle, f"{where}.caBundle", {"configMapRef"})
        ca_bundle = _config_map_ref(bundle.get("configMapRef"), f"{where}.caBundle.configMapRef")
        if not url.startswith("https://"):
            raise SpecError(f"{where}.caBundle", "needs an https:// url (a CA bundle only applies to TLS)")
    return ModuleSource(url=url, headers_secret=headers, ca_bundle=ca_bundle)


def _parse_oci(oci: Mapping[str, Any], where: str) -> OciSource:
    no_unknown(oci, where, {"repository", "reference", "insecure", "pullSecretRef"})
    repository = require_string(oci, "repository", where)
    if len(repository) > 255 or not OCI_REPOSITORY.match(repository):
        raise SpecError(
            f"{where}.repository",
            "must be host[:port]/path without a scheme: the host a name with a dot, a port or localhost, "
            "the path in lowercase (e.g. registry.example/acme/classify)",
        )
    reference = oci.get("reference")
    if reference is not None and (not isinstance(reference, str) or not OCI_REFERENCE.match(reference)):
        raise SpecError(f"{where}.reference", "must be a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) or sha256:<64 hex>")
    insecure = oci.get("insecure", False)
    if not isinstance(insecure, bool):
        raise SpecError(f"{where}.insecure", f"must be a boolean, got {insecure!r}")
    pull_secret = None
    if oci.get("pullSecretRef") is not None:
        pull_secret = _secret_name(oci["pullSecretRef"], f"{where}.pullSecretRef")
    return OciSource(repository=repository, reference=reference, insecure=insecure, pull_secret=pull_secret)


def _config_map_ref(raw: Any, where: str) -> ConfigMapRef:
    ref = require_object(raw, where)
    no_unknown(ref, where, {"name", "key"})
    name = require_string(ref, "name", where)
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise SpecError(f"{where}.name", "must be a DNS-1123 subdomain")
    key = require_string(ref, "key", where)
    if len(key) > 253 or not CONFIGMAP_KEY.match(key) or key in (".", ".."):
        raise SpecError(f"{where}.key", "must be a valid ConfigMap key ([-._a-zA-Z0-9]+)")
    return ConfigMapRef(name=name, key=key)


def _secret_name(raw: Any, where: str) -> str:
    ref = require_object(raw, where)
    no_unknown(ref, where, {"name"})
    name = require_string(ref, "name", where)
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise SpecError(f"{where}.name", "must be a DNS-1123 subdomain")
    return name


def _parse_limits(obj: Mapping[str, Any] | None) -> Limits:
    if obj is None:
        return Limits()
    where = "spec.limits"
    no_unknown(obj, where, set(LIMIT_FIELDS))
    return Limits(
        memory_bytes=integer(obj, "memoryBytes", where, DEFAULT_MEMORY_BYTES, minimum=MIN_MEMORY_BYTES),
        timeout_ms=integer(obj, "timeoutMs", where, DEFAULT_TIMEOUT_MS, minimum=1),
        fuel=optional_integer(obj, "fuel", where, minimum=1),
        table_elements=optional_integer(obj, "tableElements", where, minimum=0),
        max_module_bytes=optional_integer(obj, "maxModuleBytes", where, minimum=1),
    )


def _parse_runtime(obj: Mapping[str, Any] | None, where: str = "spec.runtime") -> RuntimeSpec:
    if obj is None:
        return RuntimeSpec()
    no_unknown(obj, where, set(RUNTIME_FIELDS))
    image = obj.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise SpecError(f"{where}.image", "must be a non-empty string")
    tolerations = _object_list(obj, "tolerations", where)
    pod_labels = string_map(obj, "podLabels", where)
    for key in pod_labels:
        if key.startswith(RESERVED_LABEL_PREFIXES):
            raise SpecError(f"{where}.podLabels", f"may not set {key!r} (reserved for the operator)")
    affinity = optional_object(obj, "affinity", where)
    automount = obj.get("automountServiceAccountToken", False)
    if not isinstance(automount, bool):
        raise SpecError(f"{where}.automountServiceAccountToken", f"must be a boolean, got {automount!r}")
    account = obj.get("serviceAccountName")
    if account is not None:
        account = _dns_subdomain(obj, "serviceAccountName", where)
    return RuntimeSpec(
        image=image,
        resources=MappingProxyType(dict(optional_object(obj, "resources", where) or {})),
        node_selector=string_map(obj, "nodeSelector", where),
        tolerations=tuple(MappingProxyType(dict(t)) for t in tolerations),
        affinity=None if affinity is None else MappingProxyType(dict(affinity)),
        pod_labels=pod_labels,
        pod_annotations=string_map(obj, "podAnnotations", where),
        startup_seconds=integer(obj, "startupSeconds", where, DEFAULT_STARTUP_SECONDS, minimum=10, maximum=3600),
        image_pull_secrets=_pull_secrets(obj, where),
        service_account_name=account,
        automount_service_account_token=automount,
        env=_env(obj, where),
        topology_spread_constraints=_spread_constraints(obj, where),
        pod_disruption_budget=_disruption_budget(optional_object(obj, "podDisruptionBudget", where), where),
    )


RUNTIME_FIELDS = (
    "image",
    "resources",
    "nodeSelector",
    "tolerations",
    "affinity",
    "podLabels",
    "podAnnotations",
    "startupSeconds",
    "imagePullSecrets",
    "serviceAccountName",
    "automountServiceAccountToken",
    "env",
    "topologySpreadConstraints",
    "podDisruptionBudget",
)
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
RESERVED_ENV_PREFIXES = ("WARMPOOL_", "PYTHON", "LD_")
"""The project's own settings namespace, and variables that change which code the runtime process
runs (interpreter start-up, the dynamic loader): a pool may not set them on its runtime pods."""
MAX_ENV = 128
PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")
SPREAD_FIELDS = frozenset(
    {
        "maxSkew",
        "topologyKey",
        "whenUnsatisfiable",
        "labelSelector",
        "minDomains",
        "nodeAffinityPolicy",
        "nodeTaintsPolicy",
        "matchLabelKeys",
    }
)


def _object_list(obj: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise SpecError(f"{where}.{key}", "must be a list of objects")
    return value


def _dns_subdomain(obj: Mapping[str, Any], key: str, where: str) -> str:
    name = require_string(obj, key, where)
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise SpecError(f"{where}.{key}", "must be a DNS-1123 subdomain")
    return name


def _pull_secrets(obj: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names: list[str] = []
    for i, item in enumerate(_object_list(obj, "imagePullSecrets", where)):
        no_unknown(item, f"{where}.imagePullSecrets[{i}]", {"name"})
        name = _dns_subdomain(item, "name", f"{where}.imagePullSecrets[{i}]")
        if name in names:
            raise SpecError(f"{where}.imagePullSecrets[{i}].name", f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


def _env(obj: Mapping[str, Any], where: str) -> tuple[JsonObject, ...]:
    items = _object_list(obj, "env", where)
    if len(items) > MAX_ENV:
        raise SpecError(f"{where}.env", f"at most {MAX_ENV} variables, got {len(items)}")
    seen: set[str] = set()
    out: list[JsonObject] = []
    for i, item in enumerate(items):
        at = f"{where}.env[{i}]"
        no_unknown(item, at, {"name", "value", "valueFrom"})
        name = require_string(item, "name", at)
        if not ENV_NAME.match(name):
            raise SpecError(f"{at}.name", f"{name!r} is not a valid variable name ([-._a-zA-Z][-._a-zA-Z0-9]*)")
        if name.upper().startswith(RESERVED_ENV_PREFIXES):
            prefixes = ", ".join(f"{p}*" for p in RESERVED_ENV_PREFIXES)
            raise SpecError(f"{at}.name", f"{name!r} is reserved (the runtime pods refuse {prefixes})")
        if name in seen:
            raise SpecError(f"{at}.name", f"{name!r} is set twice")
        seen.add(name)
        value, source = item.get("value"), item.get("valueFrom")
        if (value is None) == (source is None):
            raise SpecError(at, "exactly one of value, valueFrom must be set")
        if value is not None:
            if not isinstance(value, str):
                raise SpecError(f"{at}.value", f"must be a string, got {type(value).__name__}")
            out.append(MappingProxyType({"name": name, "value": value}))
            continue
        ref_from = require_object(source, f"{at}.valueFrom")
        no_unknown(ref_from, f"{at}.valueFrom", {"secretKeyRef", "configMapKeyRef"})
        if len(ref_from) != 1:
            raise SpecError(f"{at}.valueFrom", "exactly one of secretKeyRef, configMapKeyRef must be set")
        (kind, raw_ref), = ref_from.items()
        ref_at = f"{at}.valueFrom.{kind}"
        ref = require_object(raw_ref, ref_at)
        no_unknown(ref, ref_at, {"name", "key", "optional"})
        ref_name = _dns_subdomain(ref, "name", ref_at)
        key = require_string(ref, "key", ref_at)
        if len(key) > 253 or not CONFIGMAP_KEY.match(key):
            raise SpecError(f"{ref_at}.key", "must be a valid key ([-._a-zA-Z0-9]+)")
        plain: dict[str, Any] = {"name": ref_name, "key": key}
        optional = ref.get("optional")
        if optional is not None:
            if not isinstance(optional, bool):
                raise SpecError(f"{ref_at}.optional", f"must be a boolean, got {optional!r}")
            plain["optional"] = optional
        out.append(MappingProxyType({"name": name, "valueFrom": MappingProxyType({kind: MappingProxyType(plain)})}))
    return tuple(out)


def _spread_constraints(obj: Mapping[str, Any], where: str) -> tuple[JsonObject, ...]:
    out: list[JsonObject] = []
    for i, item in enumerate(_object_list(obj, "topologySpreadConstraints", where)):
        at = f"{where}.topologySpreadConstraints[{i}]"
        no_unknown(item, at, set(SPREAD_FIELDS))
        if item.get("maxSkew") is None:
            raise SpecError(f"{at}.maxSkew", "is required")
        integer(item, "maxSkew", at, 1, minimum=1)
        require_string(item, "topologyKey", at)
        mode = require_string(item, "whenUnsatisfiable", at)
        if mode not in ("DoNotSchedule", "ScheduleAnyway"):
            raise SpecError(f"{at}.whenUnsatisfiable", f"must be DoNotSchedule or ScheduleAnyway, got {mode!r}")
        optional_object(item, "labelSelector", at)
        out.append(MappingProxyType(dict(item)))
    return tuple(out)


def _disruption_budget(obj: Mapping[str, Any] | None, where: str) -> DisruptionBudget | None:
    if obj is None:
        return None
    at = f"{where}.podDisruptionBudget"
    no_unknown(obj, at, {"minAvailable", "maxUnavailable"})
    present = [key for key in ("minAvailable", "maxUnavailable") if obj.get(key) is not None]
    if len(present) != 1:
        raise SpecError(at, "exactly one of minAvailable, maxUnavailable must be set")
    (key,) = present
    value = obj[key]
    if isinstance(value, str):
        if not PERCENT.match(value):
            raise SpecError(f"{at}.{key}", f"must be a non-negative integer or a percentage like '50%', got {value!r}")
    else:
        integer(obj, key, at, 0, minimum=0)
    if key == "minAvailable":
        return DisruptionBudget(min_available=value)
    return DisruptionBudget(max_unavailable=value)

"""A RuntimeFleet manifest parsed once, at the boundary, into frozen dataclasses (pure).

Not to be confused with `warmpool_operator.fleet.spec`, the sizing spec of the two-level
decision: `FleetResource.sizing()` derives that one from this.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from warmpool_operator.diff import parse_quantity
from warmpool_operator.fields import SpecError, integer, no_unknown, optional_object, require_object
from warmpool_operator.fleet.spec import FleetSpec
from warmpool_operator.runtimefleet.refs import DNS1035_LABEL, MAX_FLEET_NAME
from warmpool_operator.spec import (
    GROUP,
    VERSION,
    PoolMeta,
    RuntimeSpec,
    _parse_runtime,
)

PLURAL = "runtimefleets"
KIND = "RuntimeFleet"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_MAX_TOTAL_WARM = 1024
DEFAULT_MIN_REPLICAS = 2
DEFAULT_MAX_REPLICAS = 10
MAX_REPLICAS = 1000
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class From(enum.Enum):
    """Which namespaces' WarmPools a fleet admits (Gateway API's `allowedRoutes.namespaces.from`)."""

    SAME = "Same"
    ALL = "All"
    SELECTOR = "Selector"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `matchExpressions` item of a label selector."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    match_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    match_expressions: tuple[Requirement, ...] = ()


@dataclass(frozen=True, slots=True)
class AllowedNamespaces:
    source: From = From.SAME
    selector: LabelSelector | None = None


@dataclass(frozen=True, slots=True)
class FleetAutoscaling:
    enabled: bool = False
    target_miss_ratio: float = 0.01
    tick_seconds: float = 2.0
    scale_down_delay_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class RuntimeFleetSpec:
    """The desired state of one RuntimeFleet."""

    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    max_total_warm: int = DEFAULT_MAX_TOTAL_WARM
    memory_budget_bytes: int | None = None
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    autoscaling: FleetAutoscaling = field(default_factory=FleetAutoscaling)
    allowed: AllowedNamespaces = field(default_factory=AllowedNamespaces)
    require_tokens: bool = False

    def sizing(self, warm_floor: int = 1) -> FleetSpec:
        """The two-level decision's spec for this fleet."""
        return FleetSpec(
            warm_floor=warm_floor,
            max_total_warm=self.max_total_warm,
            pod_memory_mb=None if self.memory_budget_bytes is None else self.memory_budget_bytes / 2**20,
            min_pods=max(1, self.min_replicas),
            max_pods=max(1, self.max_replicas),
            target_miss_ratio=self.autoscaling.target_miss_ratio,
            tick_seconds=self.autoscaling.tick_seconds,
            scale_down_delay_seconds=self.autoscaling.scale_down_delay_seconds,
        )


@dataclass(frozen=True, slots=True)
class RuntimeFleet:
    meta: PoolMeta
    spec: RuntimeFleetSpec
    status: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"


def parse_fleet(body: Mapping[str, Any]) -> RuntimeFleet:
    """Parse a whole RuntimeFleet object as read from the API; raise SpecError naming the field."""
    meta = _parse_meta(body.get("metadata"))
    spec = parse_fleet_spec(body.get("spec") or {})
    status = body.get("status") or {}
    if not isinstance(status, Mapping):
        raise SpecError("status", "must be an object")
    return RuntimeFleet(meta=meta, spec=spec, status=MappingProxyType(dict(status)))


def _parse_meta(raw: Any) -> PoolMeta:
    obj = require_object(raw, "metadata")
    name, namespace, uid = (obj.get(key) for key in ("name", "namespace", "uid"))
    if not isinstance(name, str) or len(name) > MAX_FLEET_NAME or not DNS1035_LABEL.match(name):
        raise SpecError("metadata.name", f"must be a DNS-1035 label of at most {MAX_FLEET_NAME} characters")
    if not isinstance(namespace, str) or not namespace:
        raise SpecError("metadata.namespace", "is required")
    if not isinstance(uid, str) or not uid:
        raise SpecError("metadata.uid", "is required")
    generation = obj.get("generation", 1)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise SpecError("metadata.generation", "must be an integer")
    return PoolMeta(name=name, namespace=namespace, uid=uid, generation=generation)


def parse_fleet_spec(raw: Any) -> RuntimeFleetSpec:
    """Parse and validate `spec` with the same rules as the CRD's schema and CEL validations."""
    obj = require_object(raw, "spec")
    no_unknown(
        obj,
        "spec",
        {"runtime", "maxTotalWarm", "memoryBudget", "replicas", "autoscaling", "allowedPools", "requireTokens"},
    )
    replicas = optional_object(obj, "replicas", "spec") or {}
    no_unknown(replicas, "spec.replicas", {"min", "max"})
    low = integer(replicas, "min", "spec.replicas", DEFAULT_MIN_REPLICAS, minimum=0)
    high = integer(replicas, "max", "spec.replicas", DEFAULT_MAX_REPLICAS, minimum=1, maximum=MAX_REPLICAS)
    if low > high:
        raise SpecError("spec.replicas", f"min ({low}) must be <= max ({high})")
    require = obj.get("requireTokens", False)
    if not isinstance(require, bool):
        raise SpecError("spec.requireTokens", "must be a boolean")
    return RuntimeFleetSpec(
        runtime=_parse_runtime(optional_object(obj, "runtime", "spec")),
        max_total_warm=integer(obj, "maxTotalWarm", "spec", DEFAULT_MAX_TOTAL_WARM, minimum=1, maximum=65536),
        memory_budget_bytes=_memory_budget(obj.get("memoryBudget")),
        min_replicas=low,
        max_replicas=high,
        autoscaling=_autoscaling(optional_object(obj, "autoscaling", "spec")),
        allowed=_allowed(optional_object(obj, "allowedPools", "spec")),
        require_tokens=require,
    )


def _memory_budget(raw: Any) -> int | None:
    if raw is None:
        return None
    value = parse_quantity(str(raw)) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    if value is None or value <= 0:
        raise SpecError("spec.memoryBudget", f"must be a positive quantity such as 512Mi or 2Gi, got {raw!r}")
    return int(value)


def _number(obj: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}.{key}", f"must be a number, got {value!r}")
    return float(value)


def _autoscaling(obj: Mapping[str, Any] | None) -> FleetAutoscaling:
    if obj is None:
        return FleetAutoscaling()
    where = "spec.autoscaling"
    no_unknown(obj, where, {"enabled", "targetMissRatio", "tickSeconds", "scaleDownDelaySeconds"})
    enabled = obj.get("enabled", False)
    if not isinstance(enabled, bool):
        raise SpecError(f"{where}.enabled", "must be a boolean")
    target = _number(obj, "targetMissRatio", where, 0.01)
    if not 0.0 < target < 1.0:
        raise SpecError(f"{where}.targetMissRatio", f"must be > 0 and < 1, got {target}")
    tick = _number(obj, "tickSeconds", where, 2.0)
    if not 0.0 < tick <= 60.0:
        raise SpecError(f"{where}.tickSeconds", f"must be > 0 and <= 60, got {tick}")
    delay = _number(obj, "scaleDownDelaySeconds", where, 60.0)
    if delay < 0:
        raise SpecError(f"{where}.scaleDownDelaySeconds", f"must be >= 0, got {delay}")
    return FleetAutoscaling(enabled=enabled, target_miss_ratio=target, tick_seconds=tick,
                            scale_down_delay_seconds=delay)


def _allowed(obj: Mapping[str, Any] | None) -> AllowedNamespaces:
    if obj is None:
        return AllowedNamespaces()
    no_unknown(obj, "spec.allowedPools", {"namespaces"})
    namespaces = optional_object(obj, "namespaces", "spec.allowedPools")
    if namespaces is None:
        return AllowedNamespaces()
    where = "spec.allowedPools.namespaces"
    no_unknown(namespaces, where, {"from", "selector"})
    raw_from = namespaces.get("from", From.SAME.value)
    try:
        source = From(raw_from)
    except ValueError:
        raise SpecError(f"{where}.from", f"must be one of Same, All, Selector, got {raw_from!r}") from None
    raw_selector = namespaces.get("selector")
    if source is From.SELECTOR and raw_selector is None:
        raise SpecError(f"{where}.selector", "is required with from: Selector")
    if source is not From.SELECTOR and raw_selector is not None:
        raise SpecError(f"{where}.selector", f"is allowed only with from: Selector (from is {source.value})")
    selector = None if raw_selector is None else _selector(raw_selector, f"{where}.selector")
    return AllowedNamespaces(source=source, selector=selector)


def _selector(raw: Any, where: str) -> LabelSelector:
    obj = require_object(raw, where)
    no_unknown(obj, where, {"matchLabels", "matchExpressions"})
    labels = obj.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise SpecError(f"{where}.matchLabels", "must be a map of strings to strings")
    expressions = obj.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise SpecError(f"{where}.matchExpressions", "must be a list")
    if not labels and not expressions:
        raise SpecError(where, "must set matchLabels or matchExpressions")
    requirements = []
    for index, item in enumerate(expressions):
        at = f"{where}.matchExpressions[{index}]"
        entry = require_object(item, at)
        no_unknown(entry, at, {"key", "operator", "values"})
        key, operator, values = entry.get("key"), entry.get("operator"), entry.get("values") or []
        if not isinstance(key, str) or not key:
            raise SpecError(f"{at}.key", "is required")
        if operator not in SELECTOR_OPERATORS:
            raise SpecError(f"{at}.operator", f"must be one of {', '.join(SELECTOR_OPERATORS)}, got {operator!r}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SpecError(f"{at}.values", "must be a list of strings")
        if operator in ("In", "NotIn") and not values:
            raise SpecError(f"{at}.values", f"must not be empty with operator {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            raise SpecError(f"{at}.values", f"must be empty with operator {operator}")
        requirements.append(Requirement(key=key, operator=str(operator), values=tuple(values)))
    return LabelSelector(match_labels=MappingProxyType(dict(labels)), match_expressions=tuple(requirements))

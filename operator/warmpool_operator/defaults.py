"""Cluster-wide defaults for WarmPool fields, set in the operator's configuration.

Precedence, field by field: the WarmPool's own value, else the cluster default, else the built-in
default of the parser. A default fills a field the manifest leaves out; it never merges into one the
manifest sets (a pool's `runtime.tolerations` replaces the default list, a pool's `limits.fuel` leaves
the default `limits.timeoutMs` in force). `autoscaling.enabled` is not defaultable: it decides who owns
the replica count, which must be readable from the manifest alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from warmpool_operator.fields import SpecError
from warmpool_operator.spec import RUNTIME_FIELDS, WarmPool, parse_spec, parse_warmpool

TOP_LEVEL = ("warmInstancesPerTuple", "maxTotalWarm", "limits", "runtime", "autoscaling")
MERGED_BY_KEY = ("limits", "runtime", "autoscaling")
"""Blocks whose fields are defaulted one by one; the other keys are defaulted whole."""
MAX_DEFAULTS_BYTES = 256 * 1024
_PROBE = {"tenant": "defaults", "module": {"sha256": "0" * 64, "source": {"path": "/defaults.wasm"}}}


class DefaultsError(ValueError):
    """Cluster defaults the operator cannot use; the message names the key."""


@dataclass(frozen=True, slots=True)
class ClusterDefaults:
    """Validated camelCase overlay of WarmPool spec fields, held read-only."""

    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def apply(self, spec: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
        """`spec` with the defaults filled in, and the `spec.`-paths of the fields they filled."""
        merged = dict(spec)
        filled: set[str] = set()
        for key, value in self.fields.items():
            own = spec.get(key)
            if key in MERGED_BY_KEY and isinstance(value, Mapping):
                block = dict(own) if isinstance(own, Mapping) else {}
                for sub, sub_value in value.items():
                    if block.get(sub) is None:
                        block[sub] = _thaw(sub_value)
                        filled.add(f"spec.{key}.{sub}")
                if own is None or isinstance(own, Mapping):
                    merged[key] = block
            elif own is None:
                merged[key] = _thaw(value)
                filled.add(f"spec.{key}")
        return merged, frozenset(filled)


def parse_defaults(raw: Any, where: str = "defaults") -> ClusterDefaults:
    """Validate an overlay with the WarmPool parser's own rules; errors name `defaults.<key>`."""
    if raw is None:
        return ClusterDefaults()
    if not isinstance(raw, Mapping):
        raise DefaultsError(f"{where}: must be a mapping of WarmPool spec fields")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise DefaultsError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(TOP_LEVEL)})"
        )
    for block in MERGED_BY_KEY:
        if raw.get(block) is not None and not isinstance(raw[block], Mapping):
            raise DefaultsError(f"{where}.{block}: must be a mapping")
    if "enabled" in (raw.get("autoscaling") or {}):
        raise DefaultsError(f"{where}.autoscaling.enabled: cannot be defaulted (each pool says who owns its replicas)")
    runtime_unknown = sorted(set(raw.get("runtime") or {}) - set(RUNTIME_FIELDS))
    if runtime_unknown:
        raise DefaultsError(f"{where}.runtime: unknown key(s) {', '.join(map(str, runtime_unknown))}")
    try:
        parse_spec({**_PROBE, **raw})
    except SpecError as exc:
        path = where + exc.field.removeprefix("spec")
        raise DefaultsError(f"{path}: {exc.problem}") from exc
    present = {key: value for key, value in raw.items() if value is not None}
    return ClusterDefaults(fields=_freeze(present))


def load_defaults(text: str, source: str) -> ClusterDefaults:
    """A YAML document `defaults: {...}` (the chart's ConfigMap, or the variable's value)."""
    if len(text.encode()) > MAX_DEFAULTS_BYTES:
        raise DefaultsError(f"{source}: larger than {MAX_DEFAULTS_BYTES} bytes")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefaultsError(f"{source}: not valid YAML ({exc})") from exc
    if document is None:
        return ClusterDefaults()
    if not isinstance(document, Mapping) or set(document) - {"defaults"}:
        raise DefaultsError(f"{source}: must be a mapping with the single key `defaults`")
    try:
        return parse_defaults(document.get("defaults"))
    except DefaultsError as exc:
        raise DefaultsError(f"{source}: {exc}") from exc


def parse_pool(body: Mapping[str, Any], defaults: ClusterDefaults) -> WarmPool:
    """`parse_warmpool` on the manifest with the cluster defaults filled in.

    A SpecError about a field a default filled says so, since the manifest does not show it.
    """
    raw_spec = body.get("spec")
    if not defaults.fields or not isinstance(raw_spec, Mapping):
        return parse_warmpool(body)
    merged, filled = defaults.apply(raw_spec)
    try:
        return parse_warmpool({**body, "spec": merged})
    except SpecError as exc:
        inherited = sorted(path for path in filled if exc.field.startswith(path) or exc.problem.find(path) >= 0)
        if not inherited:
            raise
        note = f"{', '.join(inherited)} from the operator's cluster defaults"
        raise SpecError(exc.field, f"{exc.problem} ({note})") from exc


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(item) for item in value]
    return value

"""The `spec.autoscaling` block of a WarmPool, parsed once into a frozen, validated dataclass."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class AutoscalingSpecError(ValueError):
    """A `spec.autoscaling` value that cannot work; the message names the field."""


@dataclass(frozen=True, slots=True)
class AutoscalingSpec:
    """How a WarmPool's runtime pods are sized from the pool miss ratio and load."""

    enabled: bool = False
    """Off: `spec.replicas` (or the /scale subresource) decides the pod count."""
    min_replicas: int = 1
    """Never fewer Ready-wanted pods than this; at least 1 (no activator holds calls while a pod starts)."""
    max_replicas: int = 10
    """Never more pods than this."""
    target_miss_ratio: float = 0.01
    """Share of invocations allowed to miss the warm pool (0 < target < 1)."""
    stable_window_seconds: float = 60.0
    """Averaging window for steady-state sizing."""
    panic_window_seconds: float = 6.0
    """Short window that reacts to bursts within seconds."""
    scale_down_delay_seconds: float = 30.0
    """A scale-down happens only when every decision in this window wanted fewer pods (pods asked
    for a predicted periodic surge are the exception: they leave when it is over)."""
    max_scale_up_rate: float = 10.0
    """At most this factor more pods per decision (and at least one more)."""
    max_scale_down_rate: float = 2.0
    """At most this factor fewer pods per decision."""
    tick_seconds: float = 2.0
    """How often pods are scraped and a decision is made."""


_FIELDS: dict[str, str] = {
    "enabled": "enabled",
    "minReplicas": "min_replicas",
    "maxReplicas": "max_replicas",
    "targetMissRatio": "target_miss_ratio",
    "stableWindowSeconds": "stable_window_seconds",
    "panicWindowSeconds": "panic_window_seconds",
    "scaleDownDelaySeconds": "scale_down_delay_seconds",
    "maxScaleUpRate": "max_scale_up_rate",
    "maxScaleDownRate": "max_scale_down_rate",
    "tickSeconds": "tick_seconds",
}


def parse_autoscaling(raw: Mapping[str, Any] | None) -> AutoscalingSpec:
    """Parse the camelCase manifest block; raise AutoscalingSpecError naming the bad field."""
    if raw is None:
        return AutoscalingSpec()
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise AutoscalingSpecError(f"spec.autoscaling: unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, attr in _FIELDS.items():
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        if attr == "enabled":
            if not isinstance(value, bool):
                raise AutoscalingSpecError(f"spec.autoscaling.{key} must be a boolean, got {value!r}")
        elif attr in ("min_replicas", "max_replicas"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise AutoscalingSpecError(f"spec.autoscaling.{key} must be an integer, got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise AutoscalingSpecError(f"spec.autoscaling.{key} must be a finite number, got {value!r}")
            value = float(value)
        values[attr] = value
    spec = AutoscalingSpec(**values)
    validate_autoscaling(spec)
    return spec


def validate_autoscaling(spec: AutoscalingSpec) -> None:
    """The same rules the CRD's CEL validation states, for specs that did not come through the API."""
    if spec.min_replicas < 1:
        raise AutoscalingSpecError(
            "spec.autoscaling.minReplicas must be >= 1: scale to zero is not supported, as no activator"
            " buffers the first invocation while a pod starts (it would fail)"
        )
    if spec.max_replicas < 1:
        raise AutoscalingSpecError("spec.autoscaling.maxReplicas must be >= 1")
    if spec.min_replicas > spec.max_replicas:
        raise AutoscalingSpecError(
            f"spec.autoscaling.minReplicas ({spec.min_replicas}) must be <= maxReplicas ({spec.max_replicas})"
        )
    if not 0.0 < spec.target_miss_ratio < 1.0:
        raise AutoscalingSpecError("spec.autoscaling.targetMissRatio must be > 0 and < 1")
    if spec.tick_seconds <= 0:
        raise AutoscalingSpecError("spec.autoscaling.tickSeconds must be > 0")
    if spec.panic_window_seconds < spec.tick_seconds:
        raise AutoscalingSpecError("spec.autoscaling.panicWindowSeconds must be >= tickSeconds")
    if spec.stable_window_seconds < spec.panic_window_seconds:
        raise AutoscalingSpecError("spec.autoscaling.stableWindowSeconds must be >= panicWindowSeconds")
    if spec.scale_down_delay_seconds < 0:
        raise AutoscalingSpecError("spec.autoscaling.scaleDownDelaySeconds must be >= 0")
    if spec.max_scale_up_rate <= 1.0:
        raise AutoscalingSpecError("spec.autoscaling.maxScaleUpRate must be > 1")
    if spec.max_scale_down_rate <= 1.0:
        raise AutoscalingSpecError("spec.autoscaling.maxScaleDownRate must be > 1")

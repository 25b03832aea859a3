"""The shared-fleet model's parameters, the policy protocol and what a replay reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from warmpool_operator.fleet.observations import PodScrape

MODULE = "5e1f00000000"
"""The module of every simulated tenant's tuple."""
MIN_TENANT_INVOCATIONS = 100
"""Tenants with fewer counted invocations are left out of the per-tenant percentile."""


@dataclass(frozen=True, slots=True)
class FleetModel:
    """The simulated shared fleet (defaults from the traces' README)."""

    startup_seconds: float = 5.0
    resize_seconds: float = 1.0
    cap: int = 1024
    """Warm instances one pod holds at most (the runtime's maxTotalWarm)."""
    min_pods: int = 2
    tick_seconds: float = 2.0
    learning_seconds: float = 600.0
    """Misses and invocations are counted from here on."""
    base_memory_mb: float = 55.0
    instance_memory_mb: float = 0.12
    seed: int = 0
    """Seed of the random routing."""


class FleetPolicy(Protocol):
    """What drives a shared fleet: asked at every tick for pods and each tenant's warm count."""

    @property
    def name(self) -> str: ...

    @property
    def wants_scrapes(self) -> bool:
        """False for policies that never read metrics (a schedule, a fixed fleet)."""
        ...

    def start(self, tenants: Sequence[str]) -> tuple[int, list[int]]:
        """Pods and warm counts (by tenant index) asked for at t = 0."""
        ...

    def tick(self, now: float, scrapes: Sequence[PodScrape], pods_asked: int) -> tuple[int, list[int]]:
        """Pods and warm counts from `now` on, given the Ready pods' scrapes."""
        ...


@dataclass(frozen=True, slots=True)
class FleetResult:
    """What a replay measured (misses and invocations from the end of the learning period on)."""

    policy: str
    trace: str
    invocations: int
    misses: int
    tenant_invocations: tuple[int, ...]
    tenant_misses: tuple[int, ...]
    memory_mb_seconds: float
    """Ready pods × (m0 + m × warm instances held), over the whole trace."""
    memory_counted_mb_seconds: float
    """The same from the end of the learning period on."""
    max_warm_per_pod: int
    """The most warm instances any pod held at any time."""
    cap: int
    max_pods: int
    evictions: int = 0
    """Instances the policy's placement took from what tuples wanted (if it reports them)."""
    timeline: tuple[tuple[float, str, int], ...] = field(default=(), repr=False)

    @property
    def miss_ratio(self) -> float:
        return self.misses / self.invocations if self.invocations else 0.0

    @property
    def tenant_p95_miss_ratio(self) -> float:
        """95th percentile of per-tenant miss ratios (tenants with at least 100 counted invocations)."""
        ratios = sorted(
            m / n for n, m in zip(self.tenant_invocations, self.tenant_misses, strict=True)
            if n >= MIN_TENANT_INVOCATIONS
        )
        return percentile(ratios, 0.95)

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "trace": self.trace,
            "invocations": self.invocations,
            "misses": self.misses,
            "miss_ratio": self.miss_ratio,
            "tenant_p95_miss_ratio": self.tenant_p95_miss_ratio,
            "memory_mb_seconds": self.memory_mb_seconds,
            "memory_counted_mb_seconds": self.memory_counted_mb_seconds,
            "max_warm_per_pod": self.max_warm_per_pod,
            "cap": self.cap,
            "max_pods": self.max_pods,
            "evictions": self.evictions,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def write_timeline(rows: Sequence[tuple[float, str, int]], path: Any) -> None:
    """Write a fleet timeline as CSV `t,what,value`."""
    lines = ["t,what,value", *(f"{t:g},{what},{value}" for t, what, value in rows)]
    path.write_text("\n".join(lines) + "\n")

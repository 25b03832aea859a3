"""Plain counters and histograms updated on the hot path; exported only when /metrics is scraped."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class Histogram:
    """Cumulative-on-read bucket counts; an observation is a bisect and two increments."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
            self.total += seconds

    def snapshot(self) -> tuple[list[tuple[float, int]], int, float]:
        """(cumulative buckets by upper bound, count, sum), as Prometheus wants them."""
        with self._lock:
            counts, total = list(self.counts), self.total
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return cumulative, running, total


@dataclass
class PoolStats:
    """What one (tenant, module) pool has done; read by the metrics collector."""

    hits: int = 0
    misses: int = 0
    ok: int = 0
    """Invocations that returned; failures are counted by code in `invocations`."""
    in_flight: int = 0
    reset_failed: int = 0
    evictions: int = 0
    """Idle instances dropped because the `maxTotalWarm` cap gave their slots to warmer tuples."""
    terminated: Counter[str] = field(default_factory=Counter)
    traps: Counter[str] = field(default_factory=Counter)
    invocations: Counter[str] = field(default_factory=Counter)
    """Failed invocations by error code."""
    invoke_seconds: Histogram = field(default_factory=Histogram)
    instantiate_seconds: Histogram = field(default_factory=Histogram)

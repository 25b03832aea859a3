"""The scaling spec of a shared fleet and the tuning constants of its decision."""

from __future__ import annotations

import math
from dataclasses import dataclass


class FleetSpecError(ValueError):
    """A fleet spec value that cannot work; the message names the field."""


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """How a shared fleet is sized: pods, and warm instances of each tuple on every pod."""

    warm_floor: int = 1
    """`warmInstancesPerTuple`: every tuple keeps at least this many warm instances on each pod."""
    warm_cap_per_tuple: int = 64
    """No tuple gets more warm instances than this on one pod."""
    max_total_warm: int = 1024
    """`maxTotalWarm`: warm instances of all tuples together on one pod."""
    pod_memory_mb: float | None = None
    """Memory budget of one pod (None: only `max_total_warm` bounds it)."""
    base_memory_mb: float = 55.0
    """Memory of a runtime process with nothing warm (m0)."""
    instance_memory_mb: float = 0.12
    """Memory of one warm instance (m)."""
    min_pods: int = 2
    max_pods: int = 64
    target_miss_ratio: float = 0.01
    tick_seconds: float = 2.0
    """How often pods are scraped and a decision is made."""
    resize_seconds: float = 1.0
    """From asking a pod for more warm instances of a tuple to having them."""
    scale_down_delay_seconds: float = 60.0
    """A pod is removed only when the tuples fitted in fewer pods for this long."""

    def __post_init__(self) -> None:
        if self.warm_floor < 0:
            raise FleetSpecError(f"warm_floor must be >= 0, got {self.warm_floor}")
        if self.warm_cap_per_tuple < max(1, self.warm_floor):
            raise FleetSpecError("warm_cap_per_tuple must be >= max(1, warm_floor)")
        if self.max_total_warm < 1:
            raise FleetSpecError(f"max_total_warm must be >= 1, got {self.max_total_warm}")
        if not 1 <= self.min_pods <= self.max_pods:
            raise FleetSpecError(f"need 1 <= min_pods <= max_pods, got {self.min_pods}, {self.max_pods}")
        if not 0.0 < self.target_miss_ratio < 1.0:
            raise FleetSpecError(f"target_miss_ratio must be in (0, 1), got {self.target_miss_ratio}")
        if self.tick_seconds <= 0 or self.resize_seconds < 0 or self.scale_down_delay_seconds < 0:
            raise FleetSpecError("tick_seconds must be > 0, resize and scale-down delay >= 0")
        if self.pod_memory_mb is not None and self.pod_capacity < 1:
            raise FleetSpecError("pod_memory_mb leaves no room for a warm instance")

    @property
    def pod_capacity(self) -> int:
        """Warm instances one pod may hold: `max_total_warm`, or fewer if the memory budget says so."""
        if self.pod_memory_mb is None or self.instance_memory_mb <= 0:
            return self.max_total_warm
        by_memory = math.floor((self.pod_memory_mb - self.base_memory_mb) / self.instance_memory_mb + 1e-9)
        return min(self.max_total_warm, by_memory)


@dataclass(frozen=True, slots=True)
class FleetTuning:
    """Constants of the decision that are not part of the spec."""

    rate_seconds: float = 60.0
    """Time constant of a tuple's steady arrival rate."""
    holding_seconds: float = 300.0
    """Time constant of the averages a tuple's holding time (Little's law) is read from."""
    holding_prior_arrivals: float = 20.0
    """A tuple's holding time leans on the fleet's until it has seen about this many arrivals."""
    peak_seconds: float = 120.0
    """A tuple's peak tick load decays with this time constant: bursts keep their warm counts a while."""
    surge_hold_seconds: float = 660.0
    """After a surge, with no credible period yet, its peak is held this long (timers of up to
    10 min come back within it, so the second burst of a timer is met while the period is learned)."""
    surge_share: float = 0.25
    """Surges below this share of a tuple's biggest recent one do not count towards its period."""
    surge_margin: float = 1.25
    """A predicted surge is prewarmed for this multiple of its measured peak rate (the rate of a
    tick averages over two seconds; bursts vary from one to the next)."""
    climb_factor: float = 1.0
    """A tick that climbs steeply over the one before is hedged by this share of the climb again."""
    burst_sigmas: float = 3.0
    """A tick is a climb when its count exceeds the previous tick's by this many Poisson deviations."""
    sizing_share: float = 0.5
    """Tuples are sized for this share of the miss target: estimates from a few seconds of counts
    are noisy, and a miss above target in one tuple is not paid back by another."""
    max_surge_gain: float = 4.0
    """A tuple's surges are sized for at most this multiple of their measured peak rate: a burst
    shorter than a tick shows only part of its rate in the tick's count, and its misses say so."""
    gain_min_arrivals: float = 20.0
    """A surge with fewer arrivals says too little about its sizing to change the gain."""
    down_fill: float = 0.85
    """A pod is removed only when the tuples fit in fewer pods within this share of their capacity."""

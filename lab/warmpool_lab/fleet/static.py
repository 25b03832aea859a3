"""The shared static fleet: constant pods and one warm count for every tenant, chosen in hindsight.

For each uniform warm count w (1 … cap // tenants) the fewest pods whose Erlang estimate of the
trace's misses meets the target (each tenant's 1 s bucket loads over the pods, weighted by its
arrivals in the bucket); the cheapest of these in memory is replayed, and one more pod is added
while the replay misses the target (at most a few times).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from warmpool_lab.fleet.clairvoyant import BUCKET_SECONDS, bucket_loads
from warmpool_lab.fleet.model import FleetModel, FleetResult
from warmpool_lab.fleet.policies import StaticPolicy
from warmpool_lab.fleet.simulator import simulate_fleet
from warmpool_lab.fleet.trace import TenantTrace

MAX_PODS = 4096
REPLAY_RETRIES = 4


def _blocking(warm: int, load: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    blocking = np.ones_like(load)
    for k in range(1, warm + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking


def estimated_miss_ratio(
    loads: npt.NDArray[np.float64], counts: npt.NDArray[np.float64], pods: int, warm: int
) -> float:
    """Erlang estimate of the miss ratio of a static fleet over the whole trace."""
    total = counts.sum()
    return float((counts * _blocking(warm, loads / pods)).sum() / total) if total else 0.0


def static_choice(trace: TenantTrace, model: FleetModel, *, target: float) -> tuple[int, int]:
    """(pods, warm) of the cheapest static fleet the Erlang estimate says meets the target."""
    loads = bucket_loads(trace)
    counts = np.zeros_like(loads)
    buckets = np.minimum((trace.arrivals / BUCKET_SECONDS).astype(np.int64), loads.shape[1] - 1)
    np.add.at(counts, (trace.tenant, buckets), 1.0)
    tenants = len(trace.tenants)
    best: tuple[float, int, int] | None = None
    for warm in range(1, max(1, model.cap // tenants) + 1):
        pods = model.min_pods
        while pods < MAX_PODS and estimated_miss_ratio(loads, counts, pods, warm) > target:
            pods = min(MAX_PODS, pods * 2)
        low = max(model.min_pods, pods // 2)
        while low < pods:
            mid = (low + pods) // 2
            if estimated_miss_ratio(loads, counts, mid, warm) > target:
                low = mid + 1
            else:
                pods = mid
        cost = pods * (model.base_memory_mb + model.instance_memory_mb * warm * tenants)
        if best is None or cost < best[0]:
            best = (cost, pods, warm)
    assert best is not None
    return best[1], best[2]


def run_static(trace: TenantTrace, model: FleetModel, *, target: float) -> FleetResult:
    """Replay the static choice, adding a pod while the replay misses the target."""
    pods, warm = static_choice(trace, model, target=target)
    result = simulate_fleet(trace, StaticPolicy(pods, warm), model)
    for _ in range(REPLAY_RETRIES):
        if result.miss_ratio <= target:
            break
        pods = math.ceil(pods * 1.1)
        result = simulate_fleet(trace, StaticPolicy(pods, warm), model)
    return result

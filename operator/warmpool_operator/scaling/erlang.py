"""Erlang loss formula: the miss ratio of a pod with `w` warm instances under random routing."""

from __future__ import annotations

import math
from functools import lru_cache


def erlang_b(servers: int, load: float) -> float:
    """Blocking probability B(servers, load) of an M/G/servers/servers loss system.

    Uses the stable recursion B(0) = 1, B(k) = a·B(k-1) / (k + a·B(k-1)). The result does not
    depend on the holding-time distribution, only on its mean (through `load` in Erlangs).
    """
    if servers < 0:
        raise ValueError(f"servers must be >= 0, got {servers}")
    if not math.isfinite(load) or load < 0:
        raise ValueError(f"load must be a finite number >= 0, got {load}")
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking


@lru_cache(maxsize=256)
def max_load_per_pod(servers: int, target: float) -> float:
    """The largest load a pod with `servers` warm instances carries with B <= target."""
    if servers < 1:
        return 0.0
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    low, high = 0.0, float(servers)
    while erlang_b(servers, high) <= target:
        high *= 2.0
    # B is continuous and strictly increasing in the load, so bisection converges on B = target.
    for _ in range(100):
        mid = (low + high) / 2.0
        if erlang_b(servers, mid) <= target:
            low = mid
        else:
            high = mid
    return low


def pods_needed(load: float, warm_per_pod: int, target: float) -> int:
    """Fewest pods r with B(warm_per_pod, load / r) <= target (0 pods for no load).

    Random routing splits a Poisson stream evenly, so each of r pods sees load / r Erlangs.
    Example: 27.5 Erlangs over pods of 16 warm instances at a 1 % target: one pod carries at
    most ~8.88 Erlangs, so r = ceil(27.5 / 8.88) = 4 (B(16, 6.9) ≈ 0.001; 3 pods would give 1.2 %).
    """
    if warm_per_pod < 1:
        raise ValueError(f"warm_per_pod must be >= 1, got {warm_per_pod}")
    if not math.isfinite(load) or load < 0:
        raise ValueError(f"load must be a finite number >= 0, got {load}")
    if load == 0.0:
        return 0
    pods = max(1, math.ceil(load / max_load_per_pod(warm_per_pod, target)))
    # Guard the boundary against rounding in the bisection: check B itself on both sides.
    while erlang_b(warm_per_pod, load / pods) > target:
        pods += 1
    while pods > 1 and erlang_b(warm_per_pod, load / (pods - 1)) <= target:
        pods -= 1
    return pods


def offered_load(servers: int, blocking: float) -> float:
    """The load a with B(servers, a) = blocking: the load that explains an observed miss ratio.

    Example: a pod of 16 warm instances that missed 17 % of its invocations was offered about
    15.8 Erlangs (B(16, 15.8) ≈ 0.17), whatever its counters and gauges made of the load.
    """
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if not 0.0 < blocking < 1.0:
        raise ValueError(f"blocking must be in (0, 1), got {blocking}")
    low, high = 0.0, float(servers)
    while erlang_b(servers, high) < blocking:
        low, high = high, high * 2.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if erlang_b(servers, mid) < blocking:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0

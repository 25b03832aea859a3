"""Two-level sizing: warm instances per tuple from its load on each pod, pods from their sum."""

from __future__ import annotations

from collections.abc import Iterable


def warm_for_load(load: float, target: float, floor: int, cap: int) -> int:
    """Fewest warm instances w in [floor, cap] with Erlang B(w, load) <= target.

    `load` is the tuple's offered load on one pod in Erlangs (random routing splits it evenly).
    """
    if load <= 0.0:
        return min(floor, cap)
    blocking = 1.0
    servers = 0
    # The same recursion as erlang_b, stopped at the first w that meets the target.
    while servers < cap:
        servers += 1
        blocking = load * blocking / (servers + load * blocking)
        if servers >= floor and blocking <= target:
            return servers
    return cap


def warm_counts(loads: Iterable[float], pods: int, target: float, floor: int, cap: int) -> list[int]:
    """Each tuple's warm count when its load is spread over `pods` pods."""
    return [warm_for_load(load / pods, target, floor, cap) for load in loads]


def pods_for(
    loads: list[float], *, target: float, floor: int, cap: int, pod_capacity: int, low: int, high: int,
    fill: float = 1.0,
) -> int:
    """Fewest pods in [low, high] whose tuples' warm counts sum to at most `fill` × `pod_capacity`.

    More pods spread each tuple's load thinner, so its warm count per pod falls: the sum is
    non-increasing in the pod count and a bisection finds the fewest (`high` when none fits).
    """
    budget = fill * pod_capacity

    def fits(pods: int) -> bool:
        return sum(warm_counts(loads, pods, target, floor, cap)) <= budget

    if fits(low):
        return low
    lo, hi = low, high
    if not fits(hi):
        return high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi

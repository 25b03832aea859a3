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
) -> tuple[int, bool]:
    """Fewest pods in [low, high] whose tuples' warm counts sum to at most `fill` × `pod_capacity`,
    and True; or, when no count fits, the fewest past which more pods would not lower the sum, and False.

    More pods spread each tuple's load thinner, so its warm count per pod falls: the sum is
    non-increasing in the pod count and a bisection finds the fewest. The floors do not shrink
    with more pods, so tuples whose floors alone pass the capacity never fit: pods that would not
    help are not asked for, and the placement under the cap decides who gives up instances.
    """
    budget = fill * pod_capacity

    def total(pods: int) -> int:
        return sum(warm_counts(loads, pods, target, floor, cap))

    if total(low) <= budget:
        return low, True
    least = total(high)
    fits = least <= budget

    def enough(pods: int) -> bool:
        return total(pods) <= budget if fits else total(pods) <= least

    lo, hi = low, high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi, fits

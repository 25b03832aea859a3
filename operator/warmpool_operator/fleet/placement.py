"""Placing warm counts under a pod's capacity: the coldest tuples give up instances first."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from warmpool_operator.fleet.observations import TupleKey
from warmpool_operator.scaling.erlang import erlang_b


@dataclass(frozen=True, slots=True)
class Placement:
    """Warm counts that fit, and how many instances were taken from what the tuples wanted."""

    warm: Mapping[TupleKey, int]
    evictions: int
    """Instances given up to fit the capacity (a counter's increment)."""
    evicted: frozenset[TupleKey]
    """Tuples that got fewer than they wanted."""


def _loss(load: float, warm: int) -> float:
    """Expected misses per unit time added by going from `warm` to `warm - 1` instances (over load)."""
    return load * (erlang_b(warm - 1, load) - erlang_b(warm, load))


def _trim(warm: dict[TupleKey, int], loads: Mapping[TupleKey, float], excess: int, keep: Mapping[TupleKey, int]) -> int:
    """Take up to `excess` instances above `keep`, coldest first; the excess left."""
    heap = [(_loss(loads.get(key, 0.0), w), loads.get(key, 0.0), key) for key, w in warm.items() if w > keep[key]]
    heapq.heapify(heap)
    while excess > 0 and heap:
        _, load, key = heapq.heappop(heap)
        warm[key] -= 1
        excess -= 1
        if warm[key] > keep[key]:
            heapq.heappush(heap, (_loss(load, warm[key]), load, key))
    return excess


def place_under_cap(
    wanted: Mapping[TupleKey, int],
    loads: Mapping[TupleKey, float],
    *,
    capacity: int,
    floor: int,
    needed: Mapping[TupleKey, int] | None = None,
) -> Placement:
    """Trim `wanted` until its sum fits `capacity`.

    Instances a tuple wants beyond what it `needed` now (held for a burst that may come back) go
    first, then instances above the floor; each time from the tuple whose misses grow least by
    losing one (the coldest: with no load, an idle instance costs nothing; ties go to the lower
    load, then the tuple's order). If the floors alone do not fit, the coldest lose theirs too.
    """
    total = sum(wanted.values())
    if total <= capacity:
        return Placement(dict(wanted), 0, frozenset())
    warm = dict(wanted)
    excess = total - capacity
    floors = {key: min(floor, w) for key, w in warm.items()}
    if needed is not None:
        excess = _trim(warm, loads, excess, {key: max(needed.get(key, w), floors[key]) for key, w in warm.items()})
    excess = _trim(warm, loads, excess, floors)
    if excess > 0:
        for key in sorted(warm, key=lambda k: (loads.get(k, 0.0), k)):
            take = min(warm[key], excess)
            warm[key] -= take
            excess -= take
            if excess == 0:
                break
    evicted = frozenset(key for key, w in warm.items() if w < wanted[key])
    return Placement(warm, total - sum(warm.values()), evicted)

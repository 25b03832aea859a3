"""Placing warm counts under a pod's capacity: never over it, the coldest give up instances first."""

from __future__ import annotations

import pytest

from warmpool_operator.fleet.observations import TupleKey
from warmpool_operator.fleet.placement import place_under_cap

pytestmark = pytest.mark.unit

HOT, WARM, COLD = TupleKey("hot", "m"), TupleKey("warm", "m"), TupleKey("cold", "m")


def test_fits_unchanged() -> None:
    placed = place_under_cap({HOT: 5, COLD: 2}, {HOT: 3.0, COLD: 0.1}, capacity=7, floor=1)
    assert placed.warm == {HOT: 5, COLD: 2}
    assert placed.evictions == 0
    assert not placed.evicted


def test_coldest_gives_up_instances_first() -> None:
    wanted = {HOT: 10, WARM: 10, COLD: 10}
    loads = {HOT: 6.0, WARM: 3.0, COLD: 0.2}
    placed = place_under_cap(wanted, loads, capacity=25, floor=1)
    assert sum(placed.warm.values()) == 25
    assert placed.evictions == 5
    assert placed.warm[HOT] == 10
    assert placed.warm[COLD] < 10
    assert placed.evicted == frozenset({COLD})


@pytest.mark.parametrize("capacity", [1, 3, 8, 15, 29])
def test_never_over_capacity(capacity: int) -> None:
    wanted = {HOT: 10, WARM: 10, COLD: 10}
    placed = place_under_cap(wanted, {HOT: 6.0, WARM: 3.0, COLD: 0.2}, capacity=capacity, floor=2)
    assert sum(placed.warm.values()) <= capacity
    assert placed.evictions == 30 - sum(placed.warm.values())
    assert all(0 <= placed.warm[k] <= wanted[k] for k in wanted)


def test_floors_of_the_coldest_go_last() -> None:
    placed = place_under_cap({HOT: 3, WARM: 3, COLD: 3}, {HOT: 6.0, WARM: 3.0, COLD: 0.2}, capacity=5, floor=3)
    assert placed.warm == {HOT: 3, WARM: 2, COLD: 0}


def test_held_instances_go_before_needed_ones() -> None:
    # The cold tuple wants 8 but needs 2 now (the rest is a burst held in case it comes back).
    wanted = {HOT: 8, COLD: 8}
    placed = place_under_cap(wanted, {HOT: 4.0, COLD: 0.5}, capacity=12, floor=1, needed={HOT: 8, COLD: 2})
    assert placed.warm == {HOT: 8, COLD: 4}
    placed = place_under_cap(wanted, {HOT: 4.0, COLD: 0.5}, capacity=9, floor=1, needed={HOT: 8, COLD: 2})
    assert placed.warm[COLD] == 1 or placed.warm[HOT] < 8
    assert sum(placed.warm.values()) == 9

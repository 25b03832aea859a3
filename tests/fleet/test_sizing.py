"""Two-level sizing: warm instances per tuple from Erlang B, pods from the sum of warm counts."""

from __future__ import annotations

import pytest

from warmpool_operator.fleet.sizing import pods_for, warm_counts, warm_for_load
from warmpool_operator.scaling.erlang import erlang_b

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("load", [0.05, 0.5, 2.0, 7.5, 30.0])
def test_warm_for_load_is_the_fewest_meeting_the_target(load: float) -> None:
    w = warm_for_load(load, 0.01, 1, 1024)
    assert erlang_b(w, load) <= 0.01
    assert w == 1 or erlang_b(w - 1, load) > 0.01


def test_warm_for_load_respects_floor_and_cap() -> None:
    assert warm_for_load(0.0, 0.01, 3, 10) == 3
    assert warm_for_load(0.001, 0.01, 4, 10) == 4
    assert warm_for_load(100.0, 0.01, 1, 10) == 10


def test_more_pods_need_fewer_warm_per_pod() -> None:
    loads = [4.0, 1.0, 0.2]
    assert sum(warm_counts(loads, 4, 0.01, 1, 64)) < sum(warm_counts(loads, 2, 0.01, 1, 64))


def test_pods_for_is_the_fewest_that_fit() -> None:
    loads = [20.0] * 10
    pods, fits = pods_for(loads, target=0.01, floor=1, cap=1024, pod_capacity=100, low=2, high=64)
    assert fits
    assert sum(warm_counts(loads, pods, 0.01, 1, 1024)) <= 100
    assert sum(warm_counts(loads, pods - 1, 0.01, 1, 1024)) > 100


def test_pods_for_keeps_the_minimum_and_stops_at_the_maximum() -> None:
    assert pods_for([0.1], target=0.01, floor=1, cap=64, pod_capacity=1024, low=2, high=8) == (2, True)
    assert pods_for([1000.0] * 50, target=0.01, floor=1, cap=1024, pod_capacity=10, low=2, high=8) == (8, False)


def test_pods_that_would_not_help_are_not_asked_for() -> None:
    # 300 idle tuples with a floor of 1 never fit 200 instances: the sum stays 300 at any pod count.
    loads = [0.0] * 299 + [30.0]
    pods, fits = pods_for(loads, target=0.01, floor=1, cap=1024, pod_capacity=200, low=2, high=64)
    assert not fits
    least = sum(warm_counts(loads, 64, 0.01, 1, 1024))
    assert sum(warm_counts(loads, pods, 0.01, 1, 1024)) == least
    assert sum(warm_counts(loads, pods - 1, 0.01, 1, 1024)) > least
    assert pods < 64

"""Tuple-set diffing: desired warm counts against what a pod reports."""

from __future__ import annotations

import pytest

from warmpool_operator.fleet.diff import TupleDiff, diff_tuples
from warmpool_operator.fleet.observations import TupleKey

pytestmark = pytest.mark.unit

A, B, C, D = (TupleKey(t, "m") for t in "abcd")


def test_add_remove_resize() -> None:
    diff = diff_tuples({A: 2, B: 5, C: 1}, {B: 3, C: 1, D: 4})
    assert diff == TupleDiff(add=((A, 2),), remove=(D,), resize=((B, 5),))
    assert not diff.empty


def test_zero_desired_is_removed_and_never_added() -> None:
    diff = diff_tuples({A: 0, B: 0}, {A: 2})
    assert diff == TupleDiff(remove=(A,))


def test_equal_sets_make_no_changes() -> None:
    assert diff_tuples({A: 1, B: 2}, {A: 1, B: 2}).empty
    assert diff_tuples({}, {}).empty


def test_lists_are_sorted() -> None:
    diff = diff_tuples({D: 1, C: 1, B: 1}, {A: 1})
    assert [k for k, _ in diff.add] == [B, C, D]

"""Tuple-set diffing: what to load, unload and resize on a pod to reach the desired warm counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from warmpool_operator.fleet.observations import TupleKey


@dataclass(frozen=True, slots=True)
class TupleDiff:
    """Changes to apply to one pod; each list is sorted by tuple."""

    add: tuple[tuple[TupleKey, int], ...] = ()
    """Tuples the pod does not have yet, with their warm counts."""
    remove: tuple[TupleKey, ...] = ()
    """Tuples the pod has and the desired set does not (or wants at zero)."""
    resize: tuple[tuple[TupleKey, int], ...] = ()
    """Tuples on both sides whose warm count changes, with the new count."""

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.resize)


def diff_tuples(desired: Mapping[TupleKey, int], reported: Mapping[TupleKey, int]) -> TupleDiff:
    """Compare the desired warm counts with those a pod reports.

    A desired count of zero means the tuple should not be loaded: it is removed if present and
    not added otherwise.
    """
    add = sorted((key, warm) for key, warm in desired.items() if warm > 0 and key not in reported)
    remove = sorted(key for key in reported if desired.get(key, 0) <= 0)
    resize = sorted(
        (key, warm) for key, warm in desired.items() if warm > 0 and key in reported and reported[key] != warm
    )
    return TupleDiff(tuple(add), tuple(remove), tuple(resize))

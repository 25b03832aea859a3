"""The operator's per-WarmPool Autoscalers, and what a decision means for status and Events (pure).

The actuator (`actuator.py`) does the I/O of a tick; this module holds the state that survives
between ticks, keyed by WarmPool uid, and the small rules around each decision: when status is
worth a write, which Event a replica change posts, how long a scrape may take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warmpool_operator.scaling.autoscaler import Autoscaler
from warmpool_operator.scaling.spec import AutoscalingSpec
from warmpool_operator.status import Notice

DEFAULT_TIMEOUT_SECONDS = 1.0
"""A scrape of one pod takes at most this long (and at most one tick)."""
STATUS_REFRESH_SECONDS = 30.0
"""A decision that changes neither the pod count nor whether data was measured rewrites status
(reason, miss ratio) at most this often: numbers move every tick, API writes should not."""


@dataclass(frozen=True, slots=True)
class Series:
    """Which runtime metrics belong to a pool: its tenant and the module's short hash."""

    tenant: str
    module: str


@dataclass(frozen=True, slots=True)
class Published:
    """What the pool's status last said, as far as the publishing rule cares."""

    t: float
    desired: int
    measured: bool
    """The decision rested on measured load (False: a hold for lack of data)."""


@dataclass
class _Entry:
    series: Series
    scaler: Autoscaler
    published: Published | None = None


class Scalers:
    """One Autoscaler per WarmPool uid.

    A changed `spec.autoscaling` retunes it (its windows carry over); a changed tenant or module
    starts a new one, since the old observations describe another workload.
    """

    def __init__(self, factory: Callable[[AutoscalingSpec], Autoscaler] = Autoscaler) -> None:
        self._factory = factory
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, uid: str, series: Series, spec: AutoscalingSpec) -> Autoscaler:
        entry = self._entries.get(uid)
        if entry is None or entry.series != series:
            entry = self._entries[uid] = _Entry(series, self._factory(spec))
        elif entry.scaler.spec != spec:
            entry.scaler.retune(spec)
        return entry.scaler

    def published(self, uid: str) -> Published | None:
        entry = self._entries.get(uid)
        return entry.published if entry is not None else None

    def mark_published(self, uid: str, published: Published) -> None:
        entry = self._entries.get(uid)
        if entry is not None:
            entry.published = published

    def drop(self, uid: str) -> None:
        self._entries.pop(uid, None)


def should_publish(
    last: Published | None, current: Published, *, scaled: bool, refresh_seconds: float = STATUS_REFRESH_SECONDS
) -> bool:
    """Whether this decision's status (reason, miss ratio) is worth an API write.

    Always when the pod count changes or when the decision starts or stops resting on data (a
    hold for lost metrics must show at once); otherwise once per `refresh_seconds`.
    """
    if scaled or last is None:
        return True
    if (last.desired, last.measured) != (current.desired, current.measured):
        return True
    return current.t - last.t >= refresh_seconds


def scale_notice(before: int, after: int, reason: str) -> Notice | None:
    """The Event for a replica change made by the autoscaler; None when nothing changed."""
    if after == before:
        return None
    kind = "ScaledUp" if after > before else "ScaledDown"
    return Notice("Normal", kind, f"runtime pods {before} → {after}: {reason}")


def direction(before: int, after: int) -> str | None:
    """`up`, `down` or None: the label of the scale events counter."""
    if after == before:
        return None
    return "up" if after > before else "down"


def scrape_timeout(tick_seconds: float) -> float:
    """A scrape may take the default timeout, but never longer than a tick."""
    return min(DEFAULT_TIMEOUT_SECONDS, tick_seconds)


def pause_seconds(tick_seconds: float, elapsed: float) -> float:
    """Time to wait after a tick that took `elapsed`, so that ticks start every `tick_seconds`
    (immediately when a tick overran its slot)."""
    return max(0.0, tick_seconds - elapsed)

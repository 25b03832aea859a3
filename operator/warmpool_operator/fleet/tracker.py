"""Per-tuple load tracking: a few averages and the surge model, folded in once per tick (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from warmpool_operator.fleet.spec import FleetTuning
from warmpool_operator.scaling.collector import TickSample
from warmpool_operator.scaling.periodic import Surge, SurgeModel, observe_surges

MAX_SURGE_SECONDS = 60.0
"""A surge longer than this is a new level of traffic, not a burst."""


@dataclass(frozen=True, slots=True)
class TupleState:
    """What the fleet remembers of one tuple: O(1) numbers plus the last few surges."""

    rate: float = 0.0
    """Steady arrival rate (per second, exponential average)."""
    long_rate: float = 0.0
    """Arrival rate averaged over the holding-time window."""
    busy: float = 0.0
    """Invocations in flight averaged over the holding-time window."""
    peak: float = 0.0
    """Decaying maximum of the tick arrival rates outside surges."""
    last_rate: float | None = None
    """The latest tick's arrival rate (None before the first rate)."""
    previous_rate: float | None = None
    """The tick's before it."""
    surges: SurgeModel = field(default_factory=SurgeModel)


@dataclass(frozen=True, slots=True)
class Decay:
    """Per-tick averaging weights for one tick length (computed once per decision, not per tuple)."""

    rate: float
    holding: float
    peak: float

    @classmethod
    def of(cls, dt: float, tuning: FleetTuning) -> Decay:
        return cls(
            rate=1.0 - math.exp(-dt / tuning.rate_seconds),
            holding=1.0 - math.exp(-dt / tuning.holding_seconds),
            peak=math.exp(-dt / tuning.peak_seconds),
        )


def observe_tuple(
    state: TupleState, arrivals: float, in_flight: float, *, now: float, dt: float, decay: Decay, pods: int
) -> TupleState:
    """Fold one tick (`arrivals` over `dt` seconds, `in_flight` now) into a tuple's state."""
    rate = arrivals / dt
    sample = TickSample(
        t=now, interval=dt, pods=pods, reporting=pods, arrival_rate=rate, miss_rate=None,
        in_flight=in_flight, idle_warm=None, capacity_per_pod=None,
    )
    surges = observe_surges(
        state.surges, sample, baseline_seconds=MAX_SURGE_SECONDS, max_surge_seconds=MAX_SURGE_SECONDS
    )
    # Ticks of a surge stay out of the peak: the surge is held (or predicted) on its own terms.
    peak = state.peak * decay.peak
    long_rate, busy = state.long_rate, state.busy
    if surges.current is None:
        peak = max(peak, rate)
        # The in-flight gauge is read at the tick's end: during a burst shorter than a tick it
        # misses most of the burst's holding, so Little's law only takes ticks outside surges.
        long_rate += decay.holding * (rate - long_rate)
        busy += decay.holding * (in_flight - busy)
    return TupleState(
        rate=state.rate + decay.rate * (rate - state.rate),
        long_rate=long_rate,
        busy=busy,
        peak=peak,
        last_rate=rate,
        previous_rate=state.last_rate,
        surges=surges,
    )


def latest_surge(model: SurgeModel) -> Surge | None:
    """The surge under way, else the last completed one."""
    if model.current is not None:
        return model.current
    return model.surges[-1] if model.surges else None

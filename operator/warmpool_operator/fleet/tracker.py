"""Per-tuple load tracking: a few averages and the surge model, folded in once per tick (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from warmpool_operator.fleet.spec import FleetTuning
from warmpool_operator.scaling.collector import TickSample
from warmpool_operator.scaling.periodic import Forecast, Surge, SurgeModel, observe_surges

MAX_SURGE_SECONDS = 60.0
"""A surge longer than this is a new level of traffic, not a burst."""
QUIET_RATE = 1e-3
"""Below this baseline (per second) a tick without arrivals leaves the surge model as it is."""


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
    surge_gain: float = 1.0
    """Multiplier of this tuple's surge sizing, learned from the misses of its past surges."""
    surge_arrivals: float = 0.0
    """Arrivals counted in the surge under way."""
    surge_misses: float = 0.0
    prewarmed: bool = False
    """The latest decision sized this tuple for a predicted surge."""
    surge_predicted: bool = False
    """The surge under way began while prewarmed: its misses judge the surge sizing."""
    prediction: Forecast | None = None
    """The forecast of the next surge, recomputed only when the surges change (see `surge_mark`)."""
    prediction_mark: tuple[float | None, float | None] | None = None


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


def _gain(gain: float, arrivals: float, misses: float, target: float, tuning: FleetTuning) -> float:
    """The surge gain after a surge with these counts: up when it missed, slowly back when it did not."""
    if arrivals < tuning.gain_min_arrivals:
        return gain
    ratio = misses / arrivals
    if ratio > target:
        return min(tuning.max_surge_gain, gain * 1.25)
    if ratio < 0.25 * target:
        return max(1.0, gain * 0.95)
    return gain


def observe_tuple(
    state: TupleState, arrivals: float, misses: float, in_flight: float, *, now: float, dt: float, decay: Decay,
    pods: int, target: float, tuning: FleetTuning,
) -> TupleState:
    """Fold one tick (`arrivals` and `misses` over `dt` seconds, `in_flight` now) into a tuple's state."""
    rate = arrivals / dt
    surges = state.surges
    # A quiet tuple's model would only move its near-zero baseline: most tuples are quiet most ticks.
    if arrivals or surges.current is not None or surges.baseline_rate > QUIET_RATE:
        sample = TickSample(
            t=now, interval=dt, pods=pods, reporting=pods, arrival_rate=rate, miss_rate=None,
            in_flight=in_flight, idle_warm=None, capacity_per_pod=None,
        )
        surges = observe_surges(surges, sample, baseline_seconds=MAX_SURGE_SECONDS, max_surge_seconds=MAX_SURGE_SECONDS)
    # Ticks of a surge stay out of the peak: the surge is held (or predicted) on its own terms.
    peak = state.peak * decay.peak
    long_rate, busy = state.long_rate, state.busy
    if surges.current is None:
        peak = max(peak, rate)
        # The in-flight gauge is read at the tick's end: during a burst shorter than a tick it
        # misses most of the burst's holding, so Little's law only takes ticks outside surges.
        long_rate += decay.holding * (rate - long_rate)
        busy += decay.holding * (in_flight - busy)
    gain, surge_arrivals, surge_misses = state.surge_gain, state.surge_arrivals, state.surge_misses
    predicted = state.surge_predicted
    if surges.current is not None:
        if state.surges.current is None:
            predicted = state.prewarmed
        surge_arrivals += arrivals
        surge_misses += misses
    elif state.surges.current is not None:
        # Only a surge that was prewarmed judges the sizing: an unforeseen one misses regardless.
        if predicted:
            gain = _gain(gain, surge_arrivals, surge_misses, target, tuning)
        surge_arrivals = surge_misses = 0.0
        predicted = False
    return TupleState(
        rate=state.rate + decay.rate * (rate - state.rate),
        long_rate=long_rate,
        busy=busy,
        peak=peak,
        last_rate=rate,
        previous_rate=state.last_rate,
        surges=surges,
        surge_gain=gain,
        surge_arrivals=surge_arrivals,
        surge_misses=surge_misses,
        prewarmed=state.prewarmed,
        surge_predicted=predicted,
        prediction=state.prediction,
        prediction_mark=state.prediction_mark,
    )


def latest_surge(model: SurgeModel) -> Surge | None:
    """The surge under way, else the last completed one."""
    if model.current is not None:
        return model.current
    return model.surges[-1] if model.surges else None


def surge_mark(model: SurgeModel) -> tuple[float | None, float | None]:
    """Changes when a surge begins or ends: the onsets of the last completed and the current surge."""
    return (
        model.surges[-1].onset if model.surges else None,
        model.current.onset if model.current is not None else None,
    )

"""Learning recurring surges (timer-triggered traffic) from arrival rates, to prewarm ahead of them.

Pure: `observe_surges` folds one TickSample into a frozen SurgeModel; `forecast` reads a period
off the onsets of past surges. A surge is a run of ticks whose arrival count is improbably high
for the baseline rate under Poisson arrivals, so it adapts to any traffic level.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from warmpool_operator.scaling.collector import TickSample
from warmpool_operator.scaling.erlang import offered_load

ONSET_SIGMAS = 4.0
"""A tick opens a surge when its count exceeds the baseline's by this many Poisson deviations."""
HOLD_SIGMAS = 2.0
"""A surge goes on while its ticks stay this many deviations above the baseline."""
KEPT_SURGES = 8
TIMING_SHARE = 0.03
"""A forecast's timing margin is at least this share of its period."""
MAX_INFORMATIVE_MISS_RATIO = 0.5
"""Above this miss ratio a pod is saturated: its misses say the load was high, not how high."""


@dataclass(frozen=True, slots=True)
class Surge:
    """One burst of arrivals well above the baseline."""

    onset: float
    """Start of the tick in which the arrivals jumped (the earliest the surge can have begun)."""
    last: float
    """The last tick the surge was still seen in."""
    peak_rate: float
    """Highest arrival rate (per second) of its ticks."""
    baseline_rate: float
    """The baseline arrival rate it rose from."""
    miss_load: float = 0.0
    """The highest load (Erlangs) that the misses of one of its ticks imply on the Ready pods, by
    Erlang's formula inverted; 0 when no tick missed (or every missing tick was saturated). A burst
    shorter than a tick shows only part of its rate in the tick's count, and the in-flight gauge,
    read at the tick's end, misses most of it: its misses still tell how much load it brought."""

    @property
    def duration(self) -> float:
        return self.last - self.onset


@dataclass(frozen=True, slots=True)
class SurgeModel:
    """Baseline arrival rate, the surge under way, and recent completed surges."""

    baseline_rate: float = 0.0
    """Slow average of the arrival rate outside surges (starts at zero: a pool's traffic begins)."""
    current: Surge | None = None
    surges: tuple[Surge, ...] = ()
    ready_pods: int = 0
    """Ready pods at the last tick: those that served the next tick's invocations from its start."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """The next surge, if the onsets so far are evenly spaced."""

    period: float
    next_onset: float
    confirmations: int
    """How many consecutive intervals between onsets, ending with the latest, match the period."""
    jitter: float
    """Margin for timing error: the largest residual of the fit (a tick while only two onsets)."""
    peak_rate: float
    """The highest peak arrival rate of the recent surges."""
    peak_load: float
    """The highest load the recent surges' misses imply (Erlangs; 0 when none missed unsaturated)."""
    duration: float
    """The longest duration of the recent surges."""
    latest_onset: float
    latest_last: float
    """When the latest surge was last seen (now, if it is still under way)."""
    track_record: float | None
    """Share of past onsets that the two before them predicted; None before there were any."""
    margin: float
    """How early to be ready before the predicted onset: the fit's jitter, at least TIMING_SHARE
    of the period (a few onsets understate how far a timer wanders: firings late by chance several
    periods running tilt the fitted line)."""


def _excess(count: float, expected: float, sigmas: float) -> bool:
    return count > expected + sigmas * math.sqrt(expected + 1.0)


def implied_load(sample: TickSample, pods: int) -> float:
    """The fleet's load (Erlangs) that the tick's miss ratio implies on `pods` Ready pods; 0 when
    the tick did not miss, its pods were saturated, or it lacks the numbers. At most the tick's
    count of arrivals: no more invocations than that can have been in flight at once."""
    rate, misses, capacity = sample.arrival_rate, sample.miss_rate, sample.capacity_per_pod
    if rate is None or misses is None or capacity is None or rate <= 0 or pods < 1 or capacity < 1:
        return 0.0
    ratio = misses / rate
    if not 0.0 < ratio <= MAX_INFORMATIVE_MISS_RATIO:
        return 0.0
    per_pod = offered_load(round(capacity), ratio)
    return min(per_pod * pods, rate * sample.interval)


def observe_surges(
    model: SurgeModel, sample: TickSample, *, baseline_seconds: float, max_surge_seconds: float
) -> SurgeModel:
    """Fold one tick into the model. Ticks without a rate (metric loss) change nothing."""
    rate = sample.arrival_rate
    dt = sample.interval
    if rate is None or dt <= 0:
        return model
    # Pods that became Ready during the tick served only its end: the misses are held against the
    # pods Ready at its start (or fewer).
    pods = min(model.ready_pods, sample.pods)
    model = replace(model, ready_pods=sample.pods)
    count, expected = rate * dt, model.baseline_rate * dt
    current = model.current
    if current is not None:
        if _excess(count, expected, HOLD_SIGMAS):
            grown = replace(
                current, last=sample.t, peak_rate=max(current.peak_rate, rate),
                miss_load=max(current.miss_load, implied_load(sample, pods)),
            )
            if grown.duration > max_surge_seconds:
                # Too long to be a burst: the traffic moved to a new level; follow it.
                return replace(model, baseline_rate=rate, current=None)
            return replace(model, current=grown)
        model = replace(model, current=None, surges=(*model.surges, current)[-KEPT_SURGES:])
    elif _excess(count, expected, ONSET_SIGMAS):
        surge = Surge(
            onset=sample.t - dt, last=sample.t, peak_rate=rate, baseline_rate=model.baseline_rate,
            miss_load=implied_load(sample, pods),
        )
        return replace(model, current=surge)
    alpha = 1.0 - math.exp(-dt / baseline_seconds)
    return replace(model, baseline_rate=model.baseline_rate + alpha * (rate - model.baseline_rate))


def _tolerance(period: float, tick_seconds: float) -> float:
    return max(1.5 * tick_seconds, 0.1 * period)


def forecast(model: SurgeModel, *, relevant: Callable[[Surge], bool], tick_seconds: float) -> Forecast | None:
    """Predict the next surge from the spacing of the latest relevant onsets.

    Two onsets give a tentative period (one confirmation); each earlier interval that matches
    it within max(1.5 ticks, 10 %) adds one. With three or more evenly spaced onsets the phase
    and period come from a least-squares line through them, so jitter in the timer does not
    throw the prediction off by a whole interval, and the largest residual becomes the margin.
    Onsets off the period (a chance spike between a timer's bursts) are stepped over: the chain
    of evenly spaced onsets is followed back from the latest of them, or from one of the two
    before it when the latest do not fit, and only a chain of three or more is trusted that way.
    """
    surges = [s for s in model.surges if relevant(s)]
    if model.current is not None and relevant(model.current):
        surges.append(model.current)
    if len(surges) < 2:
        return None
    onsets = [s.onset for s in surges]
    chain = _longest_chain(surges, tick_seconds) or [len(surges) - 2, len(surges) - 1]
    members = [surges[i] for i in chain]
    period = members[-1].onset - members[-2].onset
    recent = members[-3:]
    duration = max(s.duration for s in recent)
    if period <= duration + 2 * tick_seconds:
        return None
    next_onset, jitter = members[-1].onset + period, tick_seconds
    if len(members) >= 3:
        next_onset, period, jitter = _fit([s.onset for s in members])
    trials = successes = 0
    for k in range(2, len(onsets)):
        before = onsets[k - 1] - onsets[k - 2]
        trials += 1
        successes += abs(onsets[k] - onsets[k - 1] - before) <= _tolerance(before, tick_seconds)
    return Forecast(
        period=period,
        next_onset=next_onset,
        confirmations=len(members) - 1,
        jitter=jitter,
        peak_rate=max(s.peak_rate for s in recent),
        peak_load=max(s.miss_load for s in recent),
        duration=duration,
        latest_onset=members[-1].onset,
        latest_last=members[-1].last,
        track_record=successes / trials if trials else None,
        margin=max(jitter, TIMING_SHARE * period),
    )


def _chain_back(onsets: list[float], anchor: int, period: float, tick_seconds: float) -> list[int]:
    """Indices of the onsets spaced `period` apart going back from `anchor` (each interval within
    the tolerance of it), oldest first."""
    members = [anchor]
    tolerance = _tolerance(period, tick_seconds)
    while True:
        expected = onsets[members[-1]] - period
        near = [i for i in range(members[-1]) if abs(onsets[i] - expected) <= tolerance]
        if not near:
            return members[::-1]
        members.append(min(near, key=lambda i: abs(onsets[i] - expected)))


def _longest_chain(surges: list[Surge], tick_seconds: float) -> list[int] | None:
    """The chain of three or more evenly spaced onsets ending at the latest onset that ends one, of
    the last three; None when there is none (then the last two onsets give a tentative period)."""
    onsets = [s.onset for s in surges]
    for anchor in range(len(onsets) - 1, max(len(onsets) - 4, 1), -1):
        best: list[int] = []
        for earlier in range(anchor - 1, -1, -1):
            period = onsets[anchor] - onsets[earlier]
            if period <= surges[anchor].duration + 2 * tick_seconds:
                continue
            chain = _chain_back(onsets, anchor, period, tick_seconds)
            if len(chain) > len(best):
                best = chain
        # Stepping over onsets off the period is trusted on four or more: with a tolerance of 10 %
        # of the period, three onsets at random times fit one more often than not.
        stepped = len(best) > 1 and best[-1] - best[0] + 1 > len(best)
        if len(best) >= (4 if stepped else 3):
            return best
    return None


def _fit(onsets: list[float]) -> tuple[float, float, float]:
    """Least-squares line onset_i = phase + period·i; (next onset, period, largest residual)."""
    count = len(onsets)
    mean_i = (count - 1) / 2.0
    mean_t = sum(onsets) / count
    spread = sum((i - mean_i) ** 2 for i in range(count))
    period = sum((i - mean_i) * (t - mean_t) for i, t in enumerate(onsets)) / spread
    phase = mean_t - period * mean_i
    residual = max(abs(t - (phase + period * i)) for i, t in enumerate(onsets))
    return phase + period * count, period, residual

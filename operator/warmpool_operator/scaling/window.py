"""Pure aggregation of TickSamples over a time window ending at `now`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warmpool_operator.scaling.collector import TickSample


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A window's averages; any field is None when no sample in the window carried it."""

    seconds: float
    """The window's length."""
    covered: float
    """Seconds of the window that rate samples cover (less than `seconds` after metric loss)."""
    arrival_rate: float | None
    """Time-weighted mean invocations per second."""
    miss_rate: float | None
    """Time-weighted mean misses per second."""
    in_flight: float | None
    """Mean of the in-flight gauge samples."""
    arrivals: float
    """Invocations counted in the window."""
    misses: float
    """Misses counted in the window."""

    @property
    def miss_ratio(self) -> float | None:
        """Misses / invocations; None when nothing arrived (0/0 is not a ratio)."""
        if self.arrivals <= 0.0:
            return None
        return self.misses / self.arrivals


def in_window(samples: Sequence[TickSample], now: float, seconds: float) -> list[TickSample]:
    """Samples taken in (now - seconds, now]; `samples` are in time order."""
    start = now - seconds
    out: list[TickSample] = []
    for sample in reversed(samples):
        if sample.t <= start:
            break
        if sample.t <= now:
            out.append(sample)
    out.reverse()
    return out


def aggregate(samples: Sequence[TickSample], now: float, seconds: float) -> WindowStats:
    """Average the samples of the window (now - seconds, now]."""
    covered = arrivals = misses = 0.0
    gauge_sum = 0.0
    gauges = 0
    for sample in in_window(samples, now, seconds):
        if sample.arrival_rate is not None and sample.interval > 0:
            # Only the part of a long interval (after lost ticks) that lies in the window counts.
            span = min(sample.interval, sample.t - (now - seconds))
            covered += span
            arrivals += sample.arrival_rate * span
            misses += (sample.miss_rate or 0.0) * span
        if sample.in_flight is not None:
            gauge_sum += sample.in_flight
            gauges += 1
    return WindowStats(
        seconds=seconds,
        covered=covered,
        arrival_rate=arrivals / covered if covered > 0 else None,
        miss_rate=misses / covered if covered > 0 else None,
        in_flight=gauge_sum / gauges if gauges else None,
        arrivals=arrivals,
        misses=misses,
    )


def holding_time(
    samples: Sequence[TickSample], now: float, seconds: float, min_arrivals: float,
    skip: Sequence[tuple[float, float]] = (),
) -> float | None:
    """Mean seconds an invocation runs, by Little's law (mean in flight / arrival rate).

    Samples taken within any (start, end] of `skip` are left out (bursts: the gauge, read at the
    tick's end, sees little of a burst shorter than a tick, and the tick after it sees its tail).
    None when fewer than `min_arrivals` invocations were seen: too few to estimate from.
    """
    busy = arrivals = 0.0
    for sample in in_window(samples, now, seconds):
        if sample.arrival_rate is None or sample.in_flight is None or sample.interval <= 0:
            continue
        if any(start < sample.t <= end for start, end in skip):
            continue
        busy += sample.in_flight * sample.interval
        arrivals += sample.arrival_rate * sample.interval
    if arrivals < min_arrivals or busy <= 0.0:
        return None
    return busy / arrivals


@dataclass(frozen=True, slots=True)
class Trend:
    """A least-squares line through a window's arrival rates."""

    rate_now: float
    """The line's value at the end of the window."""
    slope: float
    """Change of the arrival rate per second."""
    slope_error: float
    """Standard error of the slope."""


def rate_trend(samples: Sequence[TickSample], now: float, seconds: float) -> Trend | None:
    """Fit arrival rate against time over the window; None with fewer than 4 rated samples."""
    points = [(s.t, s.arrival_rate) for s in in_window(samples, now, seconds) if s.arrival_rate is not None]
    count = len(points)
    if count < 4:
        return None
    mean_t = sum(t for t, _ in points) / count
    mean_r = sum(r for _, r in points) / count
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    if sxx <= 0:
        return None
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / sxx
    intercept = mean_r - slope * mean_t
    residual = sum((r - intercept - slope * t) ** 2 for t, r in points) / (count - 2)
    return Trend(rate_now=intercept + slope * now, slope=slope, slope_error=(residual / sxx) ** 0.5)

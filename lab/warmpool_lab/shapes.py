"""Seeded single-pool trace families the public traces lack: flash crowds with short ramps, and timer bursts.

A family fixes ranges; each seed draws one set of parameters from them and one trace from those
(Poisson arrivals over a piecewise-constant rate, lognormal durations), so the same (family, seed)
always gives the same trace. A generated trace also says from when its misses count: a timer's
first two bursts are its learning period (nothing can foresee a period before it has been seen),
a flash crowd has none.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from warmpool_lab.trace import Trace

BIN_SECONDS = 0.1
"""Rates are constant over bins this long; arrivals are uniform within a bin."""

Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class FlashFamily:
    """A steady base rate, then one crowd: a linear ramp up, a plateau, a ramp down."""

    name: str
    base_rate: Range = (5.0, 30.0)
    """Invocations per second before and after the crowd."""
    amplitude: Range = (10.0, 30.0)
    """The crowd's plateau as a multiple of the base rate."""
    ramp_seconds: Range = (2.0, 4.0)
    plateau_seconds: Range = (60.0, 180.0)
    fall_seconds: Range = (3.0, 30.0)
    onset: Range = (400.0, 1200.0)
    """When the ramp starts (seconds from the trace's start)."""
    wobble: Range = (0.0, 0.2)
    """Slow relative swings of the rate (two sinusoids of minutes), so the base is not flat."""
    duration_median: Range = (0.3, 0.8)
    duration_sigma: float = 0.8
    seconds: float = 1800.0


@dataclass(frozen=True, slots=True)
class TimerFamily:
    """A near-idle base, and a burst every period (cron-like timers fanning out work)."""

    name: str
    base_rate: Range = (0.1, 2.0)
    period_seconds: Range = (280.0, 320.0)
    burst_invocations: Range = (200.0, 1500.0)
    """Mean invocations of a burst; each burst draws its own around it."""
    burst_spread: float = 0.2
    """Sigma of the log of a burst's size about the mean."""
    burst_seconds: Range = (1.0, 5.0)
    jitter_seconds: Range = (0.0, 3.0)
    """Each firing is late by up to this much (uniform per firing)."""
    first_fire: Range = (30.0, 200.0)
    duration_median: Range = (0.3, 0.8)
    duration_sigma: float = 0.8
    seconds: float = 3600.0


Family = FlashFamily | TimerFamily


@dataclass(frozen=True, slots=True)
class Generated:
    """One trace of a family, the parameters drawn for it, and from when its misses count."""

    family: str
    seed: int
    trace: Trace
    count_from: float
    """Misses and invocations before this time are the learning period and do not count."""
    params: dict[str, float]


FLASH_FAMILIES = (
    FlashFamily("flash-3s"),
    FlashFamily("flash-sharp", ramp_seconds=(0.5, 2.0), amplitude=(5.0, 15.0)),
    FlashFamily("flash-tall", base_rate=(2.0, 10.0), amplitude=(30.0, 60.0), ramp_seconds=(2.0, 5.0),
                plateau_seconds=(45.0, 120.0)),
    FlashFamily("flash-busy", base_rate=(30.0, 60.0), amplitude=(3.0, 8.0), ramp_seconds=(1.0, 4.0),
                plateau_seconds=(30.0, 120.0)),
)
TIMER_FAMILIES = (
    TimerFamily("timer-5m"),
    TimerFamily("timer-5m-jittery", jitter_seconds=(2.0, 8.0), burst_spread=0.4, burst_seconds=(2.0, 8.0)),
    TimerFamily("timer-long", period_seconds=(400.0, 600.0), base_rate=(0.0, 0.5), seconds=5400.0),
    TimerFamily("timer-busy", base_rate=(5.0, 20.0), burst_invocations=(300.0, 1500.0),
                period_seconds=(240.0, 360.0)),
    TimerFamily("timer-2m", period_seconds=(100.0, 140.0), burst_invocations=(100.0, 600.0), seconds=1800.0),
)
FAMILIES: dict[str, Family] = {f.name: f for f in (*FLASH_FAMILIES, *TIMER_FAMILIES)}


def _draw(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _wobble(rng: np.random.Generator, grid: npt.NDArray[np.float64], amount: float) -> npt.NDArray[np.float64]:
    out = np.ones(grid.size)
    for period in (rng.uniform(120.0, 300.0), rng.uniform(400.0, 900.0)):
        out += amount / 2 * np.sin(2 * math.pi * grid / period + rng.uniform(0.0, 2 * math.pi))
    return out


def _flash_rate(family: FlashFamily, rng: np.random.Generator, grid: npt.NDArray[np.float64]) -> (
    tuple[npt.NDArray[np.float64], dict[str, float]]
):
    p = {
        "base_rate": _draw(rng, family.base_rate),
        "amplitude": _draw(rng, family.amplitude),
        "ramp_seconds": _draw(rng, family.ramp_seconds),
        "plateau_seconds": _draw(rng, family.plateau_seconds),
        "fall_seconds": _draw(rng, family.fall_seconds),
        "onset": _draw(rng, family.onset),
        "wobble": _draw(rng, family.wobble),
    }
    up = np.clip((grid - p["onset"]) / p["ramp_seconds"], 0.0, 1.0)
    top_end = p["onset"] + p["ramp_seconds"] + p["plateau_seconds"]
    down = np.clip(1.0 - (grid - top_end) / p["fall_seconds"], 0.0, 1.0)
    crowd = np.minimum(up, down)
    rate = p["base_rate"] * _wobble(rng, grid, p["wobble"]) * (1.0 + (p["amplitude"] - 1.0) * crowd)
    return rate, p


def _timer_rate(family: TimerFamily, rng: np.random.Generator, grid: npt.NDArray[np.float64]) -> (
    tuple[npt.NDArray[np.float64], dict[str, float]]
):
    p = {
        "base_rate": _draw(rng, family.base_rate),
        "period_seconds": _draw(rng, family.period_seconds),
        "burst_invocations": _draw(rng, family.burst_invocations),
        "burst_seconds": _draw(rng, family.burst_seconds),
        "jitter_seconds": _draw(rng, family.jitter_seconds),
        "first_fire": _draw(rng, family.first_fire),
    }
    rate = np.full(grid.size, p["base_rate"])
    fire = p["first_fire"]
    while fire < family.seconds:
        start = fire + rng.uniform(0.0, p["jitter_seconds"])
        size = p["burst_invocations"] * math.exp(family.burst_spread * float(rng.standard_normal()))
        rate[(grid >= start) & (grid < start + p["burst_seconds"])] += size / p["burst_seconds"]
        fire += p["period_seconds"]
    return rate, p


def learning_seconds(family: Family, params: dict[str, float]) -> float:
    """When misses start to count: never for a flash crowd; for a timer, half a period after its
    second firing (the first two bursts teach the period, the third must be met)."""
    if isinstance(family, FlashFamily):
        return 0.0
    return params["first_fire"] + 1.5 * params["period_seconds"]


def generate(family: Family, seed: int) -> Generated:
    """One trace of `family` for `seed`."""
    rng = np.random.default_rng([seed, zlib.crc32(family.name.encode())])
    grid = np.arange(0.0, family.seconds, BIN_SECONDS)
    if isinstance(family, FlashFamily):
        rate, params = _flash_rate(family, rng, grid)
    else:
        rate, params = _timer_rate(family, rng, grid)
    counts = rng.poisson(np.maximum(rate, 0.0) * BIN_SECONDS)
    arrivals = np.sort(np.repeat(grid, counts) + rng.uniform(0.0, BIN_SECONDS, int(counts.sum())))
    arrivals = arrivals[arrivals < family.seconds]
    median = _draw(rng, family.duration_median)
    params["duration_median"] = median
    durations = median * np.exp(family.duration_sigma * rng.standard_normal(arrivals.size))
    trace = Trace(name=f"{family.name}/{seed}", arrivals=arrivals, durations=durations, end=family.seconds)
    return Generated(family.name, seed, trace, learning_seconds(family, params), params)


def describe(family: Family) -> dict[str, Any]:
    """The family's ranges, for reports."""
    return {"kind": "flash" if isinstance(family, FlashFamily) else "timer", **asdict(family)}

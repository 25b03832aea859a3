"""Generated multi-tenant trace families (Zipf popularity; steady, diurnal, timer, sparse, flash tenants)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from warmpool_lab.fleet.trace import TenantTrace

SHAPES = ("steady", "diurnal", "timer", "sparse", "flash")
BIN_SECONDS = 0.1
"""Rates are piecewise constant over bins this long; arrivals are uniform within a bin."""


@dataclass(frozen=True, slots=True)
class Family:
    """A family of traces: how many tenants, how busy, and the mix of tenant shapes."""

    name: str
    tenants: int = 300
    total_rate: float = 200.0
    """Mean invocations per second over all tenants."""
    seconds: float = 1800.0
    zipf: float = 1.0
    """Popularity of the k-th tenant ∝ 1 / k^zipf."""
    mix: tuple[float, float, float, float, float] = (0.35, 0.2, 0.15, 0.2, 0.1)
    """Shares of steady, diurnal, timer, sparse and flash tenants."""
    timer_periods: tuple[float, float] = (60.0, 300.0)
    """Timers fire every period drawn uniformly from this range (seconds)."""
    timer_burst_seconds: tuple[float, float] = (1.0, 4.0)
    timer_jitter_seconds: float = 1.0
    """Each firing is late by up to this much (uniform)."""
    flash_factor: tuple[float, float] = (5.0, 30.0)
    """A flash crowd multiplies the tenant's rate by this much."""
    flash_ramp_seconds: tuple[float, float] = (2.0, 10.0)
    flash_seconds: tuple[float, float] = (30.0, 120.0)
    duration_median: float = 0.05
    duration_sigma: float = 1.0
    """Lognormal holding durations: median and sigma of the log (a heavy right tail)."""


FAMILIES = {
    "mixed": Family("mixed"),
    "timers": Family(
        "timers", tenants=400, total_rate=150.0, mix=(0.25, 0.1, 0.45, 0.15, 0.05), timer_jitter_seconds=2.0
    ),
    "flashy": Family(
        "flashy", tenants=250, total_rate=250.0, zipf=1.2, mix=(0.3, 0.15, 0.1, 0.15, 0.3),
        flash_ramp_seconds=(1.0, 5.0),
    ),
}


def _profile(shape: str, mean: float, family: Family, rng: np.random.Generator, grid: npt.NDArray[np.float64]) -> (
    npt.NDArray[np.float64]
):
    """Rate per bin for one tenant whose mean rate is `mean`."""
    span = family.seconds
    if shape == "steady":
        return np.full(grid.size, mean)
    if shape == "diurnal":
        # One compressed day over the trace, night at a random phase: rates from ~5 % to ~195 % of the mean.
        phase = rng.uniform(0.0, 2 * math.pi)
        return mean * (1.0 + 0.95 * np.sin(2 * math.pi * grid / span + phase))
    if shape == "sparse":
        return np.full(grid.size, min(mean, rng.uniform(0.01, 0.1)))
    if shape == "timer":
        period = rng.uniform(*family.timer_periods)
        burst = rng.uniform(*family.timer_burst_seconds)
        rate = np.full(grid.size, 0.02 * mean)
        per_burst = 0.98 * mean * period
        start = rng.uniform(0.0, period)
        while start < span:
            fire = start + rng.uniform(0.0, family.timer_jitter_seconds)
            rate[(grid >= fire) & (grid < fire + burst)] += per_burst / burst
            start += period
        return rate
    # flash: a base rate and one or two crowds with short ramps up and down
    rate = np.full(grid.size, mean)
    for _ in range(int(rng.integers(1, 3))):
        onset = rng.uniform(0.1 * span, 0.9 * span)
        ramp = rng.uniform(*family.flash_ramp_seconds)
        length = rng.uniform(*family.flash_seconds)
        factor = rng.uniform(*family.flash_factor)
        up = np.clip((grid - onset) / ramp, 0.0, 1.0)
        down = np.clip((onset + ramp + length + ramp - grid) / ramp, 0.0, 1.0)
        rate *= 1.0 + (factor - 1.0) * np.minimum(up, down)
    return rate


def generate(family: Family, seed: int) -> TenantTrace:
    """One trace of the family; the same (family, seed) always gives the same trace."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, family.tenants + 1) ** family.zipf
    means = family.total_rate * weights / weights.sum()
    shapes = rng.choice(len(SHAPES), size=family.tenants, p=np.array(family.mix) / sum(family.mix))
    grid = np.arange(0.0, family.seconds, BIN_SECONDS)
    times: list[npt.NDArray[np.float64]] = []
    owners: list[npt.NDArray[np.int64]] = []
    for k in range(family.tenants):
        rate = _profile(SHAPES[int(shapes[k])], float(means[k]), family, rng, grid)
        counts = rng.poisson(np.maximum(rate, 0.0) * BIN_SECONDS)
        starts = np.repeat(grid, counts) + rng.uniform(0.0, BIN_SECONDS, int(counts.sum()))
        times.append(starts)
        owners.append(np.full(starts.size, k, dtype=np.int64))
    arrivals = np.concatenate(times)
    tenant = np.concatenate(owners)
    order = np.argsort(arrivals, kind="stable")
    arrivals, tenant = arrivals[order], tenant[order]
    keep = arrivals < family.seconds
    arrivals, tenant = arrivals[keep], tenant[keep]
    durations = family.duration_median * np.exp(family.duration_sigma * rng.standard_normal(arrivals.size))
    names = tuple(f"{SHAPES[int(shapes[k])]}-{k:04d}" for k in range(family.tenants))
    return TenantTrace(
        name=f"{family.name}-{seed}", arrivals=arrivals, durations=durations, tenant=tenant, tenants=names,
        end=family.seconds,
    )

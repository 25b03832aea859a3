"""The clairvoyant references of the shared-fleet model: shared and dedicated, sized per 10 s window."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from warmpool_lab.fleet.trace import TenantTrace
from warmpool_operator.fleet.sizing import warm_for_load
from warmpool_operator.scaling.erlang import pods_needed

WINDOW_SECONDS = 10.0
BUCKET_SECONDS = 1.0
DEDICATED_WARM = 4
"""Warm instances per pod of a dedicated pool (one Deployment per WarmPool)."""


def tenant_peaks(trace: TenantTrace) -> npt.NDArray[np.float64]:
    """Peak load per (tenant, 10 s window): the highest mean in-flight count of its 1 s buckets."""
    loads = bucket_loads(trace)
    tenants, buckets = loads.shape
    per_window = round(WINDOW_SECONDS / BUCKET_SECONDS)
    windows = math.ceil(buckets / per_window)
    padded = np.zeros((tenants, windows * per_window), dtype=np.float64)
    padded[:, :buckets] = loads
    peaks: npt.NDArray[np.float64] = padded.reshape(tenants, windows, per_window).max(axis=2)
    # Busy time comes from differences of floats: treat dust as no load.
    peaks[peaks < 1e-9] = 0.0
    return peaks


def bucket_loads(trace: TenantTrace) -> npt.NDArray[np.float64]:
    """Mean invocations in flight per (tenant, 1 s bucket).

    Busy time per bucket is exact: each invocation's [start, finish) is cut at bucket edges by
    adding its overlap with every bucket it spans (most span one or two).
    """
    buckets = math.ceil(trace.end / BUCKET_SECONDS)
    tenants = len(trace.tenants)
    busy = np.zeros((tenants, buckets + 1), dtype=np.float64)
    start = trace.arrivals
    finish = np.minimum(trace.arrivals + trace.durations, trace.end)
    first = np.floor(start / BUCKET_SECONDS).astype(np.int64)
    last = np.minimum(np.floor(finish / BUCKET_SECONDS).astype(np.int64), buckets - 1)
    same = first == last
    np.add.at(busy, (trace.tenant[same], first[same]), (finish - start)[same])
    for i in np.flatnonzero(~same).tolist():
        k, lo, hi = int(trace.tenant[i]), int(first[i]), int(last[i])
        s, f = float(start[i]), float(finish[i])
        busy[k, lo] += (lo + 1) * BUCKET_SECONDS - s
        busy[k, lo + 1 : hi] += BUCKET_SECONDS
        busy[k, hi] += f - hi * BUCKET_SECONDS
    loads: npt.NDArray[np.float64] = busy[:, :buckets] / BUCKET_SECONDS
    return loads


@dataclass(frozen=True, slots=True)
class SharedWindow:
    """One window of the shared clairvoyant fleet."""

    start: float
    pods: int
    warm: list[int]


def shared_schedule(
    trace: TenantTrace, *, target: float, cap: int, min_pods: int = 2, peaks: npt.NDArray[np.float64] | None = None
) -> list[SharedWindow]:
    """Each window: `min_pods` pods, each tenant the fewest w >= 1 with B(w, peak / pods) <= target,
    adding pods while the sum passes `cap`."""
    peaks = tenant_peaks(trace) if peaks is None else peaks
    out = []
    for j in range(peaks.shape[1]):
        column = peaks[:, j].tolist()
        pods = min_pods
        while True:
            warm = [warm_for_load(p / pods, target, 1, cap) for p in column]
            if sum(warm) <= cap or pods >= 4096:
                break
            pods += 1
        out.append(SharedWindow(j * WINDOW_SECONDS, pods, warm))
    return out


def shared_memory(
    schedule: list[SharedWindow], end: float, *, base_mb: float, instance_mb: float, since: float = 0.0
) -> float:
    """MB-seconds of a shared schedule over [since, end)."""
    total = 0.0
    for index, window in enumerate(schedule):
        stop = schedule[index + 1].start if index + 1 < len(schedule) else end
        span = max(0.0, min(stop, end) - max(window.start, since))
        total += span * window.pods * (base_mb + instance_mb * sum(window.warm))
    return total


def dedicated_pods(
    trace: TenantTrace, *, target: float, peaks: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.int64]:
    """Pods per (tenant, window) of the dedicated clairvoyant: fewest (at least one) of 4 warm each."""
    peaks = tenant_peaks(trace) if peaks is None else peaks
    pods = np.ones(peaks.shape, dtype=np.int64)
    for (k, j), peak in np.ndenumerate(peaks):
        if peak > 0.0:
            pods[k, j] = max(1, pods_needed(float(peak), DEDICATED_WARM, target))
    return pods


def dedicated_memory(
    pods: npt.NDArray[np.int64], end: float, *, base_mb: float, instance_mb: float, since: float = 0.0
) -> float:
    """MB-seconds of the dedicated clairvoyant over [since, end)."""
    per_pod = base_mb + instance_mb * DEDICATED_WARM
    total = 0.0
    for j in range(pods.shape[1]):
        start = j * WINDOW_SECONDS
        span = max(0.0, min(start + WINDOW_SECONDS, end) - max(start, since))
        total += span * per_pod * float(pods[:, j].sum())
    return total

"""The clairvoyant reference fleet: sized per 10 s window from the trace's own future load.

For each window starting at a multiple of 10 s: the load is the mean number of invocations in
flight in each 1 s bucket, the window's peak of that sets the fleet, which is the fewest pods r
with B(w, peak / r) <= target, Ready exactly when the window starts.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from warmpool_lab.trace import Trace
from warmpool_operator.scaling.erlang import pods_needed

WINDOW_SECONDS = 10.0
BUCKET_SECONDS = 1.0


def bucket_load(trace: Trace, bucket: float = BUCKET_SECONDS) -> npt.NDArray[np.float64]:
    """Mean invocations in flight in each bucket [k·bucket, (k+1)·bucket) up to the trace's end.

    The busy time up to x is S(x) = Σ max(0, x - start) - Σ max(0, x - finish); with sorted
    starts and finishes each sum is count·x - (sum of the times before x), so every boundary
    costs one binary search.
    """
    edges = np.arange(0.0, trace.end + bucket / 2, bucket)
    if edges[-1] < trace.end:
        edges = np.append(edges, trace.end)
    starts = trace.arrivals
    finishes = np.sort(trace.arrivals + trace.durations)

    def ramp(times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        cumulative = np.concatenate(([0.0], np.cumsum(times)))
        before = np.searchsorted(times, edges, side="left")
        result: npt.NDArray[np.float64] = before * edges - cumulative[before]
        return result

    busy = ramp(starts) - ramp(finishes)
    widths = np.diff(edges)
    loads: npt.NDArray[np.float64] = np.diff(busy) / widths
    return loads


def clairvoyant_timeline(trace: Trace, *, warm_per_pod: int, target: float) -> list[tuple[float, int]]:
    """(window start, pods) for every 10 s window of the trace."""
    loads = bucket_load(trace)
    per_window = round(WINDOW_SECONDS / BUCKET_SECONDS)
    windows = math.ceil(len(loads) / per_window)
    timeline = []
    for k in range(windows):
        peak = float(loads[k * per_window : (k + 1) * per_window].max())
        # Busy time comes from differences of large sums: treat float dust as no load.
        load = peak if peak > 1e-6 else 0.0
        timeline.append((k * WINDOW_SECONDS, pods_needed(load, warm_per_pod, target)))
    return timeline


def clairvoyant_cost(trace: Trace, timeline: list[tuple[float, int]], *, warm_per_pod: int) -> float:
    """Warm instance-seconds of the clairvoyant fleet."""
    total = 0.0
    for index, (start, pods) in enumerate(timeline):
        stop = timeline[index + 1][0] if index + 1 < len(timeline) else trace.end
        total += pods * warm_per_pod * (stop - start)
    return total

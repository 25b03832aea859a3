"""A PNG of one replay: load against warm capacity, replicas asked and Ready, misses over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from warmpool_lab.clairvoyant import bucket_load
from warmpool_lab.simulator import SimResult
from warmpool_lab.trace import Trace

MISS_BUCKET_SECONDS = 10.0


def _steps(timeline: tuple[tuple[float, int], ...], end: float) -> tuple[list[float], list[float]]:
    xs = [t for t, _ in timeline] + [end]
    ys = [float(v) for _, v in timeline]
    return xs, [*ys, ys[-1]] if ys else [0.0]


def plot_run(trace: Trace, result: SimResult, *, warm_per_pod: int, path: Path) -> None:
    """Write the figure for `result` (replayed on `trace`) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = bucket_load(trace)
    seconds = np.arange(len(loads), dtype=np.float64)
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 8), sharex=True, height_ratios=[3, 2, 2])
    top.plot(seconds, loads, lw=0.6, color="tab:blue", label="load: invocations in flight (1 s mean)")
    if result.ready_timeline:
        xs, ys = _steps(result.ready_timeline, trace.end)
        top.step(xs, [y * warm_per_pod for y in ys], where="post", color="tab:green", lw=1.0,
                 label=f"warm instances (Ready pods × {warm_per_pod})")
    top.set_ylabel("instances")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(
        f"{result.trace} — {result.policy}: miss ratio {result.miss_ratio:.2%}, "
        f"{result.warm_instance_seconds:,.0f} warm instance-s, {result.scale_events} scale events",
        fontsize=10,
    )
    xs, ys = _steps(result.timeline, trace.end)
    middle.step(xs, ys, where="post", color="tab:orange", lw=1.0, label="replicas asked")
    if result.ready_timeline:
        xs, ys = _steps(result.ready_timeline, trace.end)
        middle.step(xs, ys, where="post", color="tab:green", lw=1.0, ls="--", label="Ready pods")
    middle.set_ylabel("pods")
    middle.legend(loc="upper left", fontsize=8)
    edges = np.arange(0.0, trace.end + MISS_BUCKET_SECONDS, MISS_BUCKET_SECONDS)
    counts, _ = np.histogram(np.asarray(result.miss_times, dtype=np.float64), bins=edges)
    bottom.bar(edges[:-1], counts, width=MISS_BUCKET_SECONDS, align="edge", color="tab:red")
    bottom.set_ylabel(f"misses / {MISS_BUCKET_SECONDS:g} s")
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

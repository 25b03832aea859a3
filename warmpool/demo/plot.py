"""The demo's picture: offered load, pods asked for and ready, and the miss ratio against its target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of the demo, every couple of seconds."""

    t: float
    offered_rps: float
    served_rps: float
    miss_ratio: float | None
    desired: int
    ready: int
    warm: int


def plot(samples: Sequence[Sample], target: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, (load_ax, pods_ax, miss_ax) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    load_ax.plot(t, [s.offered_rps for s in samples], label="offered (scheduled) /s", color="tab:gray")
    load_ax.plot(t, [s.served_rps for s in samples], label="draws /s (all pods)", color="tab:blue")
    load_ax.set_ylabel("invocations / s")
    load_ax.legend(loc="upper left")
    pods_ax.step(t, [s.desired for s in samples], where="post", label="desired pods", color="tab:orange")
    pods_ax.step(t, [s.ready for s in samples], where="post", label="ready pods", color="tab:green")
    pods_ax.plot(t, [s.warm for s in samples], label="idle warm instances", color="tab:purple", alpha=0.6)
    pods_ax.set_ylabel("pods / instances")
    pods_ax.legend(loc="upper left")
    miss_ax.plot(t, [100 * s.miss_ratio if s.miss_ratio is not None else float("nan") for s in samples],
                 label="miss ratio (per interval)", color="tab:red", marker=".")
    miss_ax.axhline(100 * target, linestyle="--", color="black", label=f"target {100 * target:g} %")
    miss_ax.set_ylabel("misses %")
    miss_ax.set_xlabel("seconds")
    miss_ax.legend(loc="upper left")
    fig.suptitle("warmpool demo: an autoscaled WarmPool under a ramp, a plateau and a drop")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

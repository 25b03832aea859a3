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


@dataclass(frozen=True, slots=True)
class TenantSample:
    """One tenant of the fleet scene at one tick, and the fleet's pods then."""

    t: float
    tenant: str
    offered_rps: float
    draws_rps: float
    miss_ratio: float | None
    warm_floor: int
    """Warm instances the fleet's pods keep for this tuple, summed over the pods (the autoscaler's counts)."""
    pods: int
    ready_pods: int


def plot_fleet(samples: Sequence[TenantSample], target: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tenants = list(dict.fromkeys(s.tenant for s in samples))
    colors = plt.get_cmap("tab10")
    fig, (load_ax, warm_ax, pods_ax, miss_ax) = plt.subplots(
        4, 1, sharex=True, figsize=(11, 11), gridspec_kw={"height_ratios": [3, 3, 1.3, 3]})
    for index, tenant in enumerate(tenants):
        mine = [s for s in samples if s.tenant == tenant]
        t = [s.t for s in mine]
        color = colors(index % 10)
        load_ax.plot(t, [s.offered_rps for s in mine], color=color, label=tenant)
        warm_ax.step(t, [s.warm_floor for s in mine], where="post", color=color, label=tenant)
        miss_ax.plot(t, [100 * s.miss_ratio if s.miss_ratio is not None else float("nan") for s in mine],
                     color=color, marker=".", linewidth=0.8, label=tenant)
    load_ax.set_ylabel("offered calls / s")
    load_ax.legend(loc="upper left", ncol=4, fontsize="small")
    warm_ax.set_ylabel("warm instances\n(all pods)")
    first = [s for s in samples if s.tenant == tenants[0]] if tenants else []
    pods_ax.step([s.t for s in first], [s.pods for s in first], where="post", color="tab:orange", label="pods")
    pods_ax.step([s.t for s in first], [s.ready_pods for s in first], where="post", color="tab:green",
                 label="ready pods")
    pods_ax.set_ylabel("fleet pods")
    pods_ax.set_ylim(bottom=0)
    pods_ax.legend(loc="upper left", fontsize="small")
    miss_ax.axhline(100 * target, linestyle="--", color="black", label=f"target {100 * target:g} %")
    miss_ax.set_ylabel("misses % (per interval)")
    miss_ax.set_xlabel("seconds")
    fig.suptitle("warmpool demo: one autoscaled RuntimeFleet, eight tenants, warm counts per tuple and pods")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

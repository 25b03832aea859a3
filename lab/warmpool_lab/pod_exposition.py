"""The pool metrics a runtime pod exposes, rendered as Prometheus text for the simulator's pods."""

from __future__ import annotations

from warmpool_contract import POOL_CAPACITY, POOL_DRAWS, POOL_IN_FLIGHT, POOL_WARM
from warmpool_operator.scaling.exposition import PodMetrics

DRAWS = f"{POOL_DRAWS}_total"


def render_pool_metrics(metrics: PodMetrics, *, tenant: str, module: str) -> str:
    """The exposition a runtime pod serves for one tuple (what a scrape of it returns)."""
    labels = f'tenant="{tenant}",module="{module}"'
    return (
        f"# HELP {POOL_DRAWS} Draws from the warm pool by result.\n"
        f"# TYPE {POOL_DRAWS} counter\n"
        f'{DRAWS}{{{labels},result="hit"}} {metrics.hits!r}\n'
        f'{DRAWS}{{{labels},result="miss"}} {metrics.misses!r}\n'
        f"# HELP {POOL_WARM} Idle warm instances.\n# TYPE {POOL_WARM} gauge\n"
        f"{POOL_WARM}{{{labels}}} {metrics.warm!r}\n"
        f"# HELP {POOL_CAPACITY} Configured warm instances.\n# TYPE {POOL_CAPACITY} gauge\n"
        f"{POOL_CAPACITY}{{{labels}}} {metrics.capacity!r}\n"
        f"# HELP {POOL_IN_FLIGHT} Invocations running now.\n# TYPE {POOL_IN_FLIGHT} gauge\n"
        f"{POOL_IN_FLIGHT}{{{labels}}} {metrics.in_flight!r}\n"
    )

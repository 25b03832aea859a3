"""Autoscaler: one WarmPool's collector, windows, surge model and decision history in one object.

The operator (and the lab's simulator) calls `observe(scrapes, now)` after each scrape and
`decide(current_replicas, now)` for each decision; both are pure apart from the object's state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from warmpool_operator.scaling.collector import Scrape, TickSample
from warmpool_operator.scaling.decider import DeciderState, Decision, Observations, Tuning, decide
from warmpool_operator.scaling.history import SampleHistory
from warmpool_operator.scaling.periodic import SurgeModel, observe_surges
from warmpool_operator.scaling.spec import AutoscalingSpec

KEPT_STARTUP_LAGS = 5


class Autoscaler:
    """The warmpool policy for one WarmPool."""

    def __init__(self, spec: AutoscalingSpec, *, tuning: Tuning | None = None) -> None:
        self.spec = spec
        self.tuning = tuning or Tuning()
        self._history = SampleHistory(self._keep_seconds())
        self._surges = SurgeModel()
        self._decider = DeciderState()
        self._pending: tuple[float, int] | None = None
        self._lags: deque[float] = deque(maxlen=KEPT_STARTUP_LAGS)

    def retune(self, spec: AutoscalingSpec) -> None:
        """Take a changed spec.autoscaling; the observations and history carry over."""
        self.spec = spec
        self._history.keep_seconds = self._keep_seconds()

    def _keep_seconds(self) -> float:
        windows = max(self.spec.stable_window_seconds, self.tuning.holding_window_seconds,
                      self.tuning.miss_budget_window_seconds)
        return windows + 2 * self.spec.tick_seconds

    @property
    def samples(self) -> Sequence[TickSample]:
        return tuple(self._history.samples)

    @property
    def startup_seconds(self) -> float | None:
        """The longest recently observed lag from asking for pods to seeing them Ready."""
        return max(self._lags) if self._lags else None

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        """Fold one tick of scrapes (one per Ready pod) into the windows and the surge model."""
        sample = self._history.observe(scrapes, now)
        self._surges = observe_surges(
            self._surges,
            sample,
            baseline_seconds=self.spec.stable_window_seconds,
            max_surge_seconds=self.spec.stable_window_seconds,
        )
        if self._pending is not None and sample.pods >= self._pending[1]:
            self._lags.append(now - self._pending[0])
            self._pending = None

    def decide(self, current_replicas: int, now: float) -> Decision:
        """Desired replicas now; remembers the decision for the scale-down delay."""
        observations = Observations(
            samples=self._history.samples, surges=self._surges, startup_seconds=self.startup_seconds
        )
        decision, self._decider = decide(
            self.spec, observations, self._decider, current_replicas=current_replicas, now=now, tuning=self.tuning
        )
        latest = self._history.latest
        ready = latest.pods if latest is not None else 0
        desired = decision.desired_replicas
        if self._pending is not None and desired < self._pending[1]:
            self._pending = None
        if self._pending is None and desired > ready and desired > current_replicas:
            self._pending = (now, desired)
        return decision

"""SampleHistory: the collector's state and the recent TickSamples of one fleet, trimmed by age."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from warmpool_operator.scaling.collector import CollectorState, Scrape, TickSample, collect


class SampleHistory:
    """Folds each tick's scrapes into a TickSample and keeps the last `keep_seconds` of them."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._collector = CollectorState()
        self._samples: deque[TickSample] = deque()

    @property
    def samples(self) -> Sequence[TickSample]:
        """Samples in time order (a live view: do not hold on to it across observations)."""
        return self._samples

    @property
    def latest(self) -> TickSample | None:
        return self._samples[-1] if self._samples else None

    def observe(self, scrapes: Sequence[Scrape], now: float) -> TickSample:
        self._collector, sample = collect(self._collector, scrapes, now)
        self._samples.append(sample)
        while self._samples and self._samples[0].t <= now - self.keep_seconds:
            self._samples.popleft()
        return sample

"""What the simulator drives a fleet with: the Policy protocol, and the operator's Autoscaler behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from warmpool_operator.scaling.autoscaler import Autoscaler
from warmpool_operator.scaling.collector import Scrape
from warmpool_operator.scaling.decider import Decision


class Policy(Protocol):
    """What drives a fleet: fed scrapes, asked for a replica count."""

    @property
    def name(self) -> str: ...

    @property
    def wants_scrapes(self) -> bool:
        """False for policies that never look at metrics (a fixed fleet, a known schedule)."""
        ...

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None: ...

    def decide(self, current_replicas: int, now: float) -> Decision: ...


class OursPolicy:
    """The operator's Autoscaler, exactly as the operator runs it, as a policy of the simulator."""

    name = "warmpool"
    wants_scrapes = True

    def __init__(self, autoscaler: Autoscaler) -> None:
        self.autoscaler = autoscaler

    def observe(self, scrapes: Sequence[Scrape], now: float) -> None:
        self.autoscaler.observe(scrapes, now)

    def decide(self, current_replicas: int, now: float) -> Decision:
        return self.autoscaler.decide(current_replicas, now)

"""What a scrape of one runtime pod gives per tuple: draw counters and gauges."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class TupleKey(NamedTuple):
    """A (tenant, module sha256) tuple (a NamedTuple: hashed in C, it keys many dicts per tick)."""

    tenant: str
    module: str


@dataclass(frozen=True, slots=True)
class TupleCounters:
    """One tuple on one pod: `tensor_wasm_pool_*` series of that tuple."""

    hits: float
    """`draws_total{result="hit"}` (a counter, reset when the process restarts)."""
    misses: float
    """`draws_total{result="miss"}` (a counter)."""
    in_flight: float
    """Invocations of the tuple running now, warm or cold."""
    warm: float
    """Idle warm instances of the tuple now."""


@dataclass(frozen=True, slots=True)
class PodScrape:
    """One Ready pod's scrape: its tuples' counters and gauges."""

    pod: str
    tuples: Mapping[TupleKey, TupleCounters]


@dataclass(frozen=True, slots=True)
class FleetObservations:
    """One tick's view of the fleet."""

    tuples: Collection[TupleKey]
    """The tuples the fleet must serve (from the WarmPools): the desired tuple set."""
    pods: Sequence[PodScrape]
    """Scrapes of the Ready pods (a pod whose scrape failed is left out)."""
    pods_asked: int
    """Pods the fleet currently asks for (Ready or starting)."""

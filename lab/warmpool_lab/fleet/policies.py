"""Fleet policies for the simulator: the product's decide() behind simulated scrapes, schedules, static fleets."""

from __future__ import annotations

from collections.abc import Sequence

from warmpool_lab.fleet.model import FleetModel
from warmpool_operator.fleet.decide import FleetState, decide
from warmpool_operator.fleet.observations import FleetObservations, PodScrape, TupleKey
from warmpool_operator.fleet.placement import place_under_cap
from warmpool_operator.fleet.spec import FleetSpec, FleetTuning


def spec_for(model: FleetModel, *, target: float, floor: int = 1) -> FleetSpec:
    """The fleet spec a run uses: the model's cap, pods and timing, the run's target."""
    return FleetSpec(
        warm_floor=floor,
        warm_cap_per_tuple=model.cap,
        max_total_warm=model.cap,
        base_memory_mb=model.base_memory_mb,
        instance_memory_mb=model.instance_memory_mb,
        min_pods=model.min_pods,
        max_pods=256,
        target_miss_ratio=target,
        tick_seconds=model.tick_seconds,
        resize_seconds=model.resize_seconds,
    )


class DecidePolicy:
    """The product's fleet decision, fed only what the simulated runtime pods export."""

    name = "fleet"
    wants_scrapes = True

    def __init__(self, spec: FleetSpec, tuning: FleetTuning | None = None) -> None:
        self.spec = spec
        self.tuning = tuning or FleetTuning()
        self.state = FleetState()
        self.keys: list[TupleKey] = []
        self.evictions = 0

    def start(self, tenants: Sequence[str]) -> tuple[int, list[int]]:
        # The simulator's scrapes name tuples by tenant with an empty module; the spec's tuples match.
        self.keys = [TupleKey(name, "") for name in tenants]
        floors = dict.fromkeys(self.keys, self.spec.warm_floor)
        placed = place_under_cap(floors, {}, capacity=self.spec.pod_capacity, floor=self.spec.warm_floor)
        return self.spec.min_pods, [placed.warm[key] for key in self.keys]

    def tick(self, now: float, scrapes: Sequence[PodScrape], pods_asked: int) -> tuple[int, list[int]]:
        observations = FleetObservations(tuples=self.keys, pods=scrapes, pods_asked=pods_asked)
        decision, self.state = decide(self.spec, self.state, observations, now, self.tuning)
        self.evictions += decision.evictions
        warm = decision.warm
        return decision.pods, [warm.get(key, 0) for key in self.keys]


class SchedulePolicy:
    """A fleet that follows a known timeline of (t, pods, warm per tenant), e.g. a clairvoyant one."""

    wants_scrapes = False

    def __init__(self, name: str, schedule: Sequence[tuple[float, int, list[int]]]) -> None:
        self.name = name
        self.schedule = sorted(schedule, key=lambda row: row[0])
        self._next = 0
        self._current: tuple[int, list[int]] = (0, [])

    def start(self, tenants: Sequence[str]) -> tuple[int, list[int]]:
        self._next = 0
        self._current = (self.schedule[0][1], list(self.schedule[0][2])) if self.schedule else (0, [0] * len(tenants))
        return self._current[0], list(self._current[1])

    def tick(self, now: float, scrapes: Sequence[PodScrape], pods_asked: int) -> tuple[int, list[int]]:
        while self._next < len(self.schedule) and self.schedule[self._next][0] <= now:
            _, pods, warm = self.schedule[self._next]
            self._current = (pods, list(warm))
            self._next += 1
        return self._current[0], list(self._current[1])


class StaticPolicy:
    """A fixed shared fleet: `pods` pods, the same warm count for every tenant."""

    wants_scrapes = False

    def __init__(self, pods: int, warm: int) -> None:
        self.name = f"static({pods}x{warm})"
        self.pods, self.warm = pods, warm
        self._tenants = 0

    def start(self, tenants: Sequence[str]) -> tuple[int, list[int]]:
        self._tenants = len(tenants)
        return self.pods, [self.warm] * self._tenants

    def tick(self, now: float, scrapes: Sequence[PodScrape], pods_asked: int) -> tuple[int, list[int]]:
        return self.pods, [self.warm] * self._tenants


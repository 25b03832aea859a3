"""The fleet decision: a pure function of (spec, state, observations, now) → pods and warm per tuple.

No clock, Kubernetes, HTTP or kopf in here. Each tuple's load in Erlangs is its arrival rate times
its holding time (Little's law); under random routing each pod sees `load / pods`, so a tuple's
warm count per pod is the fewest instances with Erlang B at the target. Pods are added only when
those counts would not fit a pod, and removed when they fit in fewer.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from warmpool_operator.fleet.observations import FleetObservations, TupleKey
from warmpool_operator.fleet.placement import place_under_cap
from warmpool_operator.fleet.sizing import pods_for, warm_for_load
from warmpool_operator.fleet.spec import FleetSpec, FleetTuning
from warmpool_operator.fleet.tracker import Decay, TupleState, latest_surge, observe_tuple, surge_mark
from warmpool_operator.scaling.periodic import Surge, forecast

HOLDING_PRIOR_SECONDS = 1.0
"""Holding time assumed before any tuple has been measured."""
DEFAULT_TUNING = FleetTuning()


class FleetReason(enum.Enum):
    """Why the fleet has the pods it has after a decision."""

    NO_PODS = "no Ready pod answered: hold"
    BASELINE = "first scrape: counters recorded, warm counts at the floor"
    FITS = "the tuples fit the pods"
    SCALE_UP = "the tuples' warm counts would pass a pod's capacity: pods added"
    SCALE_DOWN = "the tuples fit in fewer pods: pods removed"
    DOWN_DELAYED = "the tuples fit in fewer pods: waiting out the scale-down delay"
    DOES_NOT_FIT = "the tuples do not fit a pod at any pod count up to max pods: the coldest give up instances"


class WarmReason(enum.Enum):
    """What sized one tuple's warm count."""

    FLOOR = "floor"
    STEADY = "steady load"
    PEAK = "recent peak"
    CLIMB = "climbing load"
    SURGE = "surge held"
    PREWARM = "predicted surge"
    TUPLE_CAP = "per-tuple cap"
    EVICTED = "capacity: gave up instances"


@dataclass(frozen=True, slots=True)
class PodCounters:
    """A pod's last counters: per tuple (hits + misses, misses), and when they were read."""

    t: float
    counts: Mapping[TupleKey, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class FleetState:
    """What the decision remembers: last counters per pod, a small state per tuple."""

    last_tick: float | None = None
    pods: Mapping[str, PodCounters] = field(default_factory=dict)
    tuples: Mapping[TupleKey, TupleState] = field(default_factory=dict)
    holding: float = HOLDING_PRIOR_SECONDS
    """The fleet's mean holding time (seconds), the prior of every tuple's."""
    down_since: float | None = None
    """Since when the tuples have fitted in fewer pods."""


@dataclass(frozen=True, slots=True)
class FleetDecision:
    """Pods to ask for, warm instances of each tuple on every pod, and why."""

    pods: int
    warm: Mapping[TupleKey, int]
    reason: FleetReason
    warm_reasons: Mapping[TupleKey, WarmReason]
    evictions: int
    """Instances the tuples wanted that the capacity of a pod did not allow (for a counter)."""
    loads: Mapping[TupleKey, float]
    """Each tuple's load the sizing used, in Erlangs over the whole fleet."""
    arrivals: float = 0.0
    """Invocations counted in the tick."""
    misses: float = 0.0
    """Misses counted in the tick."""

    @property
    def warm_per_pod(self) -> int:
        return sum(self.warm.values())


@dataclass(frozen=True, slots=True)
class _Tick:
    arrivals: dict[TupleKey, float]
    misses: float
    missed: dict[TupleKey, float]
    in_flight: dict[TupleKey, float]
    pods: dict[str, PodCounters]


def _read_counters(state: FleetState, observations: FleetObservations, now: float) -> _Tick:
    """Per-tuple arrivals since the last tick, from per-pod counters.

    A pod first seen after the first tick counts from zero (a Service routes nothing to a pod
    before it is Ready); a counter that went down was reset by a restart and counts from zero.
    A pod whose scrape failed keeps its counters for a while; its next delta is spread over the
    whole span, so a lost scrape does not look like a burst.
    """
    arrivals: dict[TupleKey, float] = {}
    in_flight: dict[TupleKey, float] = {}
    pods: dict[str, PodCounters] = {
        name: counters for name, counters in state.pods.items() if counters.t > now - 60.0
    }
    misses = 0.0
    missed_by: dict[TupleKey, float] = {}
    last = state.last_tick
    for scrape in observations.pods:
        before = pods.get(scrape.pod)
        if before is None and last is not None:
            before = PodCounters(last, {})
        counts: dict[TupleKey, tuple[float, float]] = {}
        share = 0.0
        if before is not None and last is not None and now > before.t:
            share = (now - last) / (now - before.t)
        old = before.counts if before is not None else {}
        for key, c in scrape.tuples.items():
            total = c.hits + c.misses
            counts[key] = (total, c.misses)
            in_flight[key] = in_flight.get(key, 0.0) + c.in_flight
            if share > 0.0:
                prior = old.get(key)
                drawn, missed = total, c.misses
                if prior is not None and total >= prior[0]:
                    drawn, missed = total - prior[0], max(0.0, c.misses - prior[1])
                if drawn:
                    arrivals[key] = arrivals.get(key, 0.0) + drawn * share
                    if missed:
                        missed_by[key] = missed_by.get(key, 0.0) + missed * share
                        misses += missed * share
        pods[scrape.pod] = PodCounters(now, counts)
    return _Tick(arrivals, misses, missed_by, in_flight, pods)


def _holding(tuples: Mapping[TupleKey, TupleState], prior: float) -> float:
    busy = sum(s.busy for s in tuples.values())
    rate = sum(s.long_rate for s in tuples.values())
    return busy / rate if rate > 0.0 and busy > 0.0 else prior


def _size_rate(
    s: TupleState, *, now: float, spec: FleetSpec, tuning: FleetTuning, per_pod: float, target: float,
) -> tuple[float, WarmReason, TupleState]:
    """The arrival rate to size a tuple for, which signal gave it, and the tuple's state with the
    forecast it used (recomputed only when a surge began or ended).

    `per_pod` turns a rate into a load on one pod (holding time / Ready pods).
    """
    best, why = s.rate, WarmReason.STEADY
    if s.peak > best:
        best, why = s.peak, WarmReason.PEAK
    last, previous = s.last_rate, s.previous_rate
    if last is not None and last > best:
        best, why = last, WarmReason.PEAK
    dt = spec.tick_seconds
    climb = 0.0
    if last is not None and previous is not None:
        count, before = last * dt, previous * dt
        if count > before + tuning.burst_sigmas * math.sqrt(before + 1.0):
            climb = last + tuning.climb_factor * (last - previous)
    model = s.surges
    surge = latest_surge(model)
    if surge is None:
        return (climb, WarmReason.CLIMB, s) if climb > best else (best, why, s)

    floor, cap = spec.warm_floor, spec.warm_cap_per_tuple
    ordinary = warm_for_load(max(model.baseline_rate, s.peak) * per_pod, target, floor, cap)
    biggest = max((x.peak_rate for x in model.surges), default=surge.peak_rate)

    def relevant(candidate: Surge) -> bool:
        # A surge counts when it needs more than the tuple's ordinary peaks and is of the size of
        # its biggest: small chance spikes between a timer's bursts must not break its period.
        return candidate.peak_rate >= tuning.surge_share * biggest and warm_for_load(
            candidate.peak_rate * per_pod, target, floor, cap
        ) > ordinary

    mark = surge_mark(model)
    if mark == s.prediction_mark:
        predicted = s.prediction
    else:
        predicted = forecast(model, relevant=relevant, tick_seconds=dt) if model.surges else None
        s = replace(s, prediction=predicted, prediction_mark=mark)
    credible = predicted is not None and (
        predicted.confirmations >= 2 or predicted.track_record is None or predicted.track_record >= 0.5
    )
    if model.current is not None:
        if model.current.peak_rate * s.surge_gain > best:
            best, why = model.current.peak_rate * s.surge_gain, WarmReason.SURGE
        # A predicted surge was prewarmed for its known peak: no hedge for it climbing on.
        if not credible and climb > best:
            best, why = climb, WarmReason.CLIMB
    elif not credible and now <= surge.last + tuning.surge_hold_seconds and surge.peak_rate * s.surge_gain > best:
        # No period yet: the surge may be a timer's, so its level is held until it would be back.
        best, why = surge.peak_rate * s.surge_gain, WarmReason.SURGE
    if credible and predicted is not None:
        lead = spec.resize_seconds + dt + predicted.jitter
        late = max(predicted.jitter, dt)
        due = predicted.next_onset - lead <= now <= predicted.next_onset + predicted.duration + late
        expected = predicted.peak_rate * tuning.surge_margin * s.surge_gain
        # Once the surge is under way the forecast already points at the next one: the prewarm is
        # held through the surge seen now.
        due = due or model.current is not None
        if due and expected > best:
            best, why = expected, WarmReason.PREWARM
    return best, why, s


def decide(
    spec: FleetSpec,
    state: FleetState,
    observations: FleetObservations,
    now: float,
    tuning: FleetTuning = DEFAULT_TUNING,
) -> tuple[FleetDecision, FleetState]:
    """Pods and warm counts per tuple at `now`, and the next state. O(tuples × pods) per call."""
    wanted_tuples = list(observations.tuples)
    asked = max(spec.min_pods, min(observations.pods_asked, spec.max_pods))
    ready = len(observations.pods)
    floor, cap, target = spec.warm_floor, spec.warm_cap_per_tuple, spec.target_miss_ratio
    if ready == 0:
        warm = {key: max(floor, 0) for key in wanted_tuples}
        return FleetDecision(
            asked, warm, FleetReason.NO_PODS, dict.fromkeys(warm, WarmReason.FLOOR), 0, dict.fromkeys(warm, 0.0)
        ), state
    tick = _read_counters(state, observations, now)
    if state.last_tick is None or now <= state.last_tick:
        placed = place_under_cap(dict.fromkeys(wanted_tuples, floor), {}, capacity=spec.pod_capacity, floor=floor)
        first = FleetState(last_tick=now, pods=tick.pods, tuples=state.tuples, holding=state.holding)
        return FleetDecision(
            asked, placed.warm, FleetReason.BASELINE, dict.fromkeys(placed.warm, WarmReason.FLOOR),
            placed.evictions, dict.fromkeys(placed.warm, 0.0),
        ), first

    dt = now - state.last_tick
    decay = Decay.of(dt, tuning)
    old = state.tuples
    fresh = TupleState()
    tuples: dict[TupleKey, TupleState] = {}
    for key in wanted_tuples:
        tuples[key] = observe_tuple(
            old.get(key, fresh), tick.arrivals.get(key, 0.0), tick.missed.get(key, 0.0), tick.in_flight.get(key, 0.0),
            now=now, dt=dt, decay=decay, pods=ready, target=target, tuning=tuning,
        )
    holding = _holding(tuples, state.holding)
    sizing_target = target * tuning.sizing_share
    prior = tuning.holding_prior_arrivals
    span = tuning.holding_seconds
    loads: dict[TupleKey, float] = {}
    needs: dict[TupleKey, float] = {}
    """Loads without bursts held in case they come back: what pods are added for."""
    reasons: dict[TupleKey, WarmReason] = {}
    for key, tracked in tuples.items():
        s = tracked
        # Little's law over the holding window, leaning on the fleet's holding time while few arrived.
        own = (s.busy * span + prior * holding) / (s.long_rate * span + prior)
        rate, why, s = _size_rate(
            s, now=now, spec=spec, tuning=tuning, per_pod=own / ready, target=sizing_target
        )
        if (why is WarmReason.PREWARM) != s.prewarmed:
            s = replace(s, prewarmed=why is WarmReason.PREWARM)
        if s is not tracked:
            tuples[key] = s
        loads[key] = rate * own
        needs[key] = (max(s.rate, s.peak, s.last_rate or 0.0) if why is WarmReason.SURGE and s.surges.current is None
                      else rate) * own
        reasons[key] = why

    load_list = list(needs.values())

    # Floors that cannot all fit a pod do not shrink with more pods: pods are sized without them,
    # and the placement takes the floors of the coldest tuples.
    pod_floor = floor if floor * len(load_list) <= spec.pod_capacity else 0

    def fewest(high: int, fill: float) -> tuple[int, bool]:
        return pods_for(
            load_list, target=sizing_target, floor=pod_floor, cap=cap, pod_capacity=spec.pod_capacity,
            low=spec.min_pods, high=high, fill=fill,
        )

    needed, fits = fewest(spec.max_pods, 1.0)
    if not fits or pod_floor != floor:
        # Overcommitted: every tuple with any load needs an instance on every pod, so spreading
        # a tuple thinner stops paying once it is down to single instances, which every added pod
        # holds again. No more pods than the instances wanted on the minimum fleet need at a pod's
        # capacity each; the placement takes instances from the coldest.
        low = spec.min_pods
        wanted_total = sum(warm_for_load(load / low, sizing_target, pod_floor, cap) for load in load_list) * low
        needed = min(needed, max(low, math.ceil(wanted_total / spec.pod_capacity)))
    down_since = None
    if needed > asked:
        pods, reason = needed, FleetReason.SCALE_UP
    elif needed < asked and (fewer := fewest(asked, tuning.down_fill)[0]) < asked:
        down_since = state.down_since if state.down_since is not None else now
        if now - down_since >= spec.scale_down_delay_seconds:
            pods, reason, down_since = fewer, FleetReason.SCALE_DOWN, None
        else:
            pods, reason = asked, FleetReason.DOWN_DELAYED
    else:
        pods, reason = asked, FleetReason.FITS

    wanted: dict[TupleKey, int] = {}
    essential: dict[TupleKey, int] = {}
    for key, load in loads.items():
        w = warm_for_load(load / ready, sizing_target, floor, cap)
        wanted[key] = w
        essential[key] = w if needs[key] >= load else warm_for_load(needs[key] / ready, sizing_target, floor, cap)
        if w == floor and reasons[key] is WarmReason.STEADY:
            reasons[key] = WarmReason.FLOOR
        elif w == cap and cap > floor:
            reasons[key] = WarmReason.TUPLE_CAP
    placed = place_under_cap(wanted, needs, capacity=spec.pod_capacity, floor=floor, needed=essential)
    for key in placed.evicted:
        reasons[key] = WarmReason.EVICTED
    if not fits:
        reason = FleetReason.DOES_NOT_FIT
    next_state = FleetState(
        last_tick=now, pods=tick.pods, tuples=tuples, holding=holding, down_since=down_since
    )
    decision = FleetDecision(
        pods=pods,
        warm=placed.warm,
        reason=reason,
        warm_reasons=reasons,
        evictions=placed.evictions,
        loads=loads,
        arrivals=sum(tick.arrivals.values()),
        misses=tick.misses,
    )
    return decision, next_state

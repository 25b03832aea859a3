"""The scaling decision: a pure function of (spec, observations, state, now) → desired replicas.

No clock, Kubernetes, HTTP or kopf in here. Sizing works from measured load: a pod with `w` warm
instances behind random routing is a loss system, so the miss ratio at a per-pod load follows
Erlang's formula B(w, load / pods), and the fleet is the fewest pods that keeps B at the target.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from warmpool_operator.scaling.collector import TickSample
from warmpool_operator.scaling.erlang import erlang_b, pods_needed
from warmpool_operator.scaling.periodic import Forecast, Surge, SurgeModel, forecast
from warmpool_operator.scaling.spec import AutoscalingSpec
from warmpool_operator.scaling.window import WindowStats, aggregate, holding_time, rate_trend


class Signal(enum.Enum):
    """A signal that asks for pods; the value is how the decision's reason names it."""

    STABLE = "stable"
    """The stable window's arrival rate."""
    BASELINE = "baseline"
    """The rate outside confirmed periodic surges (the forecast sizes the surges)."""
    STABLE_AFTER_DROP = "stable (after a drop)"
    """The panic window's rate, far below the stable window's old level."""
    STABLE_RISING = "stable (rising)"
    """A significant rise across the stable window, projected one start-up ahead."""
    PANIC = "panic"
    BURST = "burst"
    """The latest tick alone, far above the stable rate."""
    CLIMB = "climb"
    """A burst still climbing steeply, hedged one more tick; not a measured size."""
    PREWARM = "prewarm"
    """The peak of a predicted periodic surge."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """Constants of the decision that are not part of the WarmPool spec."""

    holding_window_seconds: float = 300.0
    """Window for the mean invocation duration (Little's law); durations drift slowly."""
    min_arrivals_for_holding: float = 30.0
    """Fewer invocations than this in that window: size from the in-flight gauge instead."""
    burst_sigmas: float = 3.0
    """The latest tick counts as a burst when its arrivals exceed the stable rate's by this many
    Poisson deviations; it is then sized on its own instead of diluted in the panic window."""
    startup_prior_seconds: float = 10.0
    """Assumed pod start-up time until one has been observed."""
    panic_sigmas: float = 2.0
    """The panic window is sized on its arrival count less this many Poisson deviations, so that
    chance highs of a few seconds of traffic do not buy pods (they would be held for the whole
    scale-down delay); a real burst is far above that margin."""
    trend_sigmas: float = 2.0
    """A rise across the stable window is extrapolated over the start-up time only when its
    slope is this many standard errors above zero."""
    miss_budget_window_seconds: float = 600.0
    """The target is a miss ratio over time, not at every instant: over this window, misses well
    below it are budget the steady sizing may spend (a fleet between N and N+1 pods spends part
    of its time at N instead of sitting at N+1 far below the target)."""
    max_budget_relaxation: float = 2.0
    """The steady sizing's instantaneous target is at most this multiple of the spec's."""
    budget_share: float = 0.7
    """Only misses below this share of the target count as budget: relaxing and tightening lag
    the window, so the ratio overshoots what the window shows."""
    budget_sigmas: float = 2.0
    """Misses are held against the target at this many Poisson deviations above their count."""
    min_expected_misses_for_budget: float = 20.0
    """Below this many misses expected in the window at the target, the ratio is too noisy to
    spend: the steady sizing keeps the spec's target."""
    min_budget_coverage: float = 0.9
    """Share of the budget window that measurements must cover before any budget is spent: a
    ratio over the last minutes says little about the next ten."""
    max_climb_factor: float = 4.0
    """A steep climb is projected to at most this multiple of the latest tick's rate."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One scaling decision."""

    desired_replicas: int
    reason: str
    """Human-readable: what was measured and why this many pods."""
    observed_miss_ratio: float | None
    """Misses / invocations over the stable window; None when nothing arrived."""
    scale_event: bool
    """The decision changes the replica count."""
    load: float | None = None
    """Estimated load in Erlangs (invocations in flight), None without data."""
    signal: str = "hold"
    """What sized the decision: a Signal's name in lower case, or `hold` when nothing was measured."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """A past sizing, remembered for the scale-down delay."""

    t: float
    pods: int
    anticipated: bool
    """Asked for a predicted surge: it does not hold pods once that surge is over."""


@dataclass(frozen=True, slots=True)
class DeciderState:
    """What the decider remembers between decisions."""

    recent: tuple[Wanted, ...] = ()
    level_since: float | None = None
    holding_seconds: float | None = None
    """The last hold time used: kept while the window sees too few invocations to measure one (a
    near-idle pool between timer bursts minutes apart still knows how long its invocations hold)."""
    """Start of the current traffic level after a drop: the stable window does not reach back
    past it, so the old level cannot come back into the average as the window slides."""


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything measured so far, as the collector and surge model left it."""

    samples: Sequence[TickSample]
    """Fleet samples in time order, covering at least the longest window."""
    surges: SurgeModel = field(default_factory=SurgeModel)
    startup_seconds: float | None = None
    """Observed lag from asking for pods to seeing them Ready; None until one scale-up completed."""


@dataclass(frozen=True, slots=True)
class _Load:
    stable: WindowStats
    panic: WindowStats
    holding: float | None
    capacity: int
    last_rate: float | None
    last_interval: float
    previous_rate: float | None

    def erlangs(self, rate: float | None, fallback: float | None) -> float:
        if rate is not None and self.holding is not None:
            return rate * self.holding
        return fallback or 0.0


def _hold(spec: AutoscalingSpec, current: int, why: str, miss: float | None) -> Decision:
    desired = min(max(current, spec.min_replicas), spec.max_replicas)
    if desired != current:
        why += f"; bounds [{spec.min_replicas}, {spec.max_replicas}] give {desired}"
    return Decision(desired, why, miss, desired != current)


def _surge_spans(surges: SurgeModel, tick: float) -> list[tuple[float, float]]:
    """The ticks of recorded surges and the tick after each (which holds the burst's tail)."""
    spans = [(s.onset, s.last + tick) for s in surges.surges]
    if surges.current is not None:
        spans.append((surges.current.onset, math.inf))
    return spans


def _measure(
    spec: AutoscalingSpec, observations: Observations, now: float, tuning: Tuning, stable_seconds: float, *,
    known_holding: float | None,
) -> _Load | str:
    samples = observations.samples
    panic = aggregate(samples, now, spec.panic_window_seconds)
    if panic.arrival_rate is None:
        latest = samples[-1] if samples and samples[-1].t > now - spec.panic_window_seconds else None
        if latest is None:
            return f"no scrape in the last {spec.panic_window_seconds:g} s"
        if latest.reporting:
            return "no rates yet: counters need a second scrape"
        return (
            f"no usable metrics in the last {spec.panic_window_seconds:g} s "
            f"({latest.reporting}/{latest.pods} pods answered)"
        )
    stable = aggregate(samples, now, stable_seconds)
    latest_capacity = next((s.capacity_per_pod for s in reversed(samples) if s.capacity_per_pod is not None), None)
    capacity = round(latest_capacity) if latest_capacity is not None else 0
    if capacity < 1:
        return "pods report no warm capacity (warmInstancesPerTuple is 0?)"
    window = max(tuning.holding_window_seconds, spec.stable_window_seconds)
    rated = (s for s in reversed(samples) if s.arrival_rate is not None)
    last = next(rated)
    previous = next(rated, None)
    # Bursts leave the gauge's Little's law biased: hold times come from the ticks outside them,
    # else the last hold time used, and only without one from every tick (bursts included).
    spans = _surge_spans(observations.surges, spec.tick_seconds)
    clean = holding_time(samples, now, window, tuning.min_arrivals_for_holding, spans)
    holding = clean or known_holding or holding_time(samples, now, window, tuning.min_arrivals_for_holding)
    return _Load(
        stable=stable,
        panic=panic,
        holding=holding,
        capacity=capacity,
        last_rate=last.arrival_rate,
        last_interval=last.interval,
        previous_rate=previous.arrival_rate if previous is not None else None,
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the surge forecast means for this decision."""

    forecast: Forecast | None
    confirmed: bool
    """Three or more evenly spaced onsets, the latest of them predicted."""
    prewarm: bool
    """Ask for the forecast surge's pods now."""
    anticipated: bool
    """This decision serves a predicted surge, so it must not hold pods after it."""
    in_surge: bool
    """The predicted surge is under way."""


def _plan(spec: AutoscalingSpec, observations: Observations, fc: Forecast | None, now: float, startup: float) -> _Plan:
    """`startup`: how long before the onset the surge's pods must be asked for (their start-up, and a
    tick for each further step the scale-up rate limit needs to reach them)."""
    if fc is None:
        return _Plan(None, False, False, False, False)
    confirmed = fc.confirmations >= 2
    # A tentative period (two onsets) is acted on while predictions have tended to come true:
    # with bursts at random times they do not, and every prewarm would be wasted.
    credible = confirmed or fc.track_record is None or fc.track_record >= 0.5
    # Onsets and the start-up lag are both measured on the scrape grid, so asking one start-up
    # before the predicted onset is on time for an exact period; the forecast's margin (the fit's
    # jitter, at least a share of the period) is added ahead: a pod held a few seconds early costs
    # little, a burst that comes before its pods misses most of its invocations. A late burst
    # finds the pods still there for the surge's length and the fit's jitter after the onset.
    lead = startup + fc.margin
    late = max(fc.jitter, spec.tick_seconds)
    prewarm = credible and fc.next_onset - lead <= now <= fc.next_onset + fc.duration + late
    current = observations.surges.current
    in_surge = confirmed and current is not None and current.onset == fc.latest_onset
    anticipated = prewarm or in_surge or (confirmed and now <= fc.latest_last + spec.panic_window_seconds)
    return _Plan(fc, confirmed, prewarm or in_surge, anticipated, in_surge)


def _stable_rate(
    spec: AutoscalingSpec, observations: Observations, load: _Load, *, plan: _Plan, now: float, startup: float,
    tuning: Tuning,
) -> tuple[Signal, float | None]:
    """The steady arrival rate to size for, and which steady signal it is."""
    if plan.confirmed:
        # The stable window mixes the surges into the baseline; the forecast covers the surges,
        # so the steady part is sized from the rate outside them.
        return Signal.BASELINE, observations.surges.baseline_rate
    rate = load.stable.arrival_rate
    if rate is None:
        return Signal.STABLE, None
    if _dropped(load, tuning.burst_sigmas + 1.0):
        # The panic window is far below the stable average, which still holds the old level;
        # the scale-down delay alone guards against the load coming back.
        return Signal.STABLE_AFTER_DROP, load.panic.arrival_rate
    trend = rate_trend(observations.samples, now, load.stable.seconds)
    if trend is not None and trend.slope > tuning.trend_sigmas * trend.slope_error:
        # A steady rise: the window's mean lags it by half a window, and pods asked now serve a
        # start-up from now, so size for the line's value then. After a step the line overshoots
        # the new level; the panic window's rate bounds it.
        projected = trend.rate_now + trend.slope * startup
        return Signal.STABLE_RISING, max(rate, min(projected, load.panic.arrival_rate or projected))
    return Signal.STABLE, rate


def steady_target(spec: AutoscalingSpec, samples: Sequence[TickSample], now: float, tuning: Tuning) -> float:
    """The instantaneous miss target for steady load: the spec's, relaxed while the misses of the
    budget window (counted with a margin for chance) stay below it."""
    target = spec.target_miss_ratio
    window = aggregate(samples, now, tuning.miss_budget_window_seconds)
    if (window.arrivals * target < tuning.min_expected_misses_for_budget
            or window.covered < tuning.min_budget_coverage * window.seconds):
        return target
    bound = (window.misses + tuning.budget_sigmas * math.sqrt(window.misses + 1.0)) / window.arrivals
    return target * min(tuning.max_budget_relaxation, max(1.0, tuning.budget_share * target / bound))


def _sizes(
    load: _Load, plan: _Plan, stable: tuple[Signal, float | None], need: Callable[[float], int], *,
    need_steady: Callable[[float], int], startup: float, tuning: Tuning,
) -> tuple[dict[Signal, int], float]:
    """Pods each signal asks for, and the highest load measured (Erlangs).

    Steady signals are sized by `need_steady` (the budgeted target), bursts and surges by `need`.
    """
    steady, stable_rate = stable
    stable_load = load.erlangs(stable_rate, load.stable.in_flight)
    panic_load = load.erlangs(_lower_rate(load.panic, tuning.panic_sigmas), load.panic.in_flight)
    sized = {steady: need_steady(stable_load), Signal.PANIC: need_steady(panic_load)}
    peak = max(stable_load, panic_load)
    last, previous, interval = load.last_rate, load.previous_rate, load.last_interval
    if last is not None and load.stable.arrival_rate is not None:
        count = last * interval
        if _excess(count, load.stable.arrival_rate * interval, tuning.burst_sigmas):
            # The latest tick alone is a burst: size for it rather than for its share of a window.
            burst_load = load.erlangs(last, None)
            sized[Signal.BURST] = need(burst_load)
            peak = max(peak, burst_load)
            climbing = previous is not None and _excess(count, previous * interval, tuning.burst_sigmas)
            if climbing and previous is not None and not plan.anticipated:
                # Still climbing steeply, and pods asked now serve from a start-up later until the
                # pods of the next decision are Ready: hedge for the climb going on that long (the
                # tick's rate is its mean, half a tick back). Only measured sizes hold pods back,
                # so if the climb stops, the hedge's pods that are not Ready yet are cancelled.
                horizon = startup + 1.5 * interval
                projected = last + (last - previous) / interval * horizon
                sized[Signal.CLIMB] = need(load.erlangs(min(projected, tuning.max_climb_factor * last), None))
    if plan.prewarm and plan.forecast is not None:
        sized[Signal.PREWARM] = need(_surge_load(load, plan.forecast))
    return sized, peak


def decide(
    spec: AutoscalingSpec,
    observations: Observations,
    state: DeciderState,
    *,
    current_replicas: int,
    now: float,
    tuning: Tuning = Tuning(),
) -> tuple[Decision, DeciderState]:
    """Desired replicas for the WarmPool at `now`, and the decider's next state."""
    stable_seconds = spec.stable_window_seconds
    if state.level_since is not None:
        stable_seconds = min(stable_seconds, max(now - state.level_since, spec.panic_window_seconds))
    measured = _measure(spec, observations, now, tuning, stable_seconds, known_holding=state.holding_seconds)
    if isinstance(measured, str):
        return _hold(spec, current_replicas, f"hold {current_replicas}: {measured}", None), state
    load = measured
    target, w = spec.target_miss_ratio, load.capacity

    def need(erlangs: float) -> int:
        return pods_needed(erlangs, w, target)

    relaxed = steady_target(spec, observations.samples, now, tuning)

    def need_steady(erlangs: float) -> int:
        return pods_needed(erlangs, w, relaxed)

    def relevant(surge: Surge) -> bool:
        # A surge the fleet's floor carries anyway (the first trickle of traffic over a baseline
        # still at zero) predicts nothing worth pods, and would spoil the track record of periods.
        floor = max(need(load.erlangs(surge.baseline_rate, None)), spec.min_replicas, 1)
        return need(load.erlangs(surge.peak_rate, None)) > floor

    startup = observations.startup_seconds or tuning.startup_prior_seconds
    fc = forecast(observations.surges, relevant=relevant, tick_seconds=spec.tick_seconds)
    steps = _steps_to(spec, current_replicas, need(_surge_load(load, fc))) if fc is not None else 0
    plan = _plan(spec, observations, fc, now, startup + max(0, steps - 1) * spec.tick_seconds)
    stable = _stable_rate(spec, observations, load, plan=plan, now=now, startup=startup, tuning=tuning)
    sized, peak = _sizes(load, plan, stable, need, need_steady=need_steady, startup=startup, tuning=tuning)
    driver = max(sized, key=lambda k: sized[k])
    wanted = sized[driver]

    # Scale-down delay: keep the most any decision of the window wanted, except decisions made
    # for a predicted surge (the forecast brings those pods back in time for the next one).
    horizon = now - spec.scale_down_delay_seconds
    recent = tuple(r for r in state.recent if r.t > horizon)
    held = max([wanted, *(r.pods for r in recent if not r.anticipated)])
    measured_pods = max(v for k, v in sized.items() if k is not Signal.CLIMB)
    if stable[0] is Signal.STABLE_RISING:
        # Load that is still rising would soon take back pods removed now.
        held = max(held, min(current_replicas, measured_pods + 1))
    level_since = state.level_since if stable_seconds < spec.stable_window_seconds else None
    if stable[0] is Signal.STABLE_AFTER_DROP:
        level_since = now - spec.panic_window_seconds
    next_state = DeciderState(
        recent=(*recent, Wanted(now, measured_pods, plan.anticipated)), level_since=level_since,
        holding_seconds=load.holding,
    )

    desired = min(max(held, spec.min_replicas), spec.max_replicas)
    up_limit = max(math.ceil(current_replicas * spec.max_scale_up_rate), current_replicas + 1)
    # The scale-down rate limit guards pods that serve; pods asked for but not Ready yet (a hedge
    # for a climb that stopped) may all be cancelled at once.
    ready = observations.samples[-1].pods
    down_limit = math.floor(min(current_replicas, ready) / spec.max_scale_down_rate)
    limited = min(max(desired, down_limit), up_limit)

    holding = f"{load.holding:.2f} s each" if load.holding is not None else "from the in-flight gauge"
    budget = f" (steady load for B <= {relaxed:.2g}: misses under budget)" if relaxed > target else ""
    parts = [
        f"load {peak:.1f} Erlangs ({holding}); "
        + ", ".join(f"{k.value} {v}" for k, v in sized.items())
        + f" pods of {w} warm for B <= {target:g}{budget}"
    ]
    if driver is Signal.PREWARM and fc is not None:
        if plan.in_surge:
            parts.append(f"holding the prewarm through the predicted surge (period {fc.period:.0f} s)")
        else:
            parts.append(f"prewarming for the surge expected at t={fc.next_onset:.0f} s (period {fc.period:.0f} s)")
    if held > wanted:
        parts.append(f"scale-down to {wanted} delayed ({held} wanted within {spec.scale_down_delay_seconds:g} s)")
    if desired != held:
        parts.append(f"bounds [{spec.min_replicas}, {spec.max_replicas}] give {desired}")
    if limited != desired:
        parts.append(f"rate limit from {current_replicas} gives {limited}")
    if limited > 0:
        parts.append(f"expected miss ratio {erlang_b(w, peak / limited):.2g}")
    headline = f"scale {current_replicas} -> {limited}" if limited != current_replicas else f"keep {limited}"
    reason = f"{headline}: " + "; ".join(parts)
    observed = aggregate(observations.samples, now, spec.stable_window_seconds).miss_ratio
    return Decision(limited, reason, observed, limited != current_replicas, peak, driver.name.lower()), next_state


def _surge_load(load: _Load, fc: Forecast) -> float:
    """Erlangs of a predicted surge: its peak rate, or what the recent surges' misses imply when more
    (a burst shorter than a tick shows only part of its rate in the tick's count)."""
    return max(load.erlangs(fc.peak_rate, None), fc.peak_load)


def _steps_to(spec: AutoscalingSpec, current: int, wanted: int) -> int:
    """Decisions the scale-up rate limit needs to go from `current` to `wanted` pods."""
    steps, pods = 0, current
    while pods < wanted:
        pods = max(math.ceil(pods * spec.max_scale_up_rate), pods + 1)
        steps += 1
    return steps


def _excess(count: float, expected: float, sigmas: float) -> bool:
    return count > expected + sigmas * math.sqrt(expected + 1.0)


def _lower_rate(window: WindowStats, sigmas: float) -> float | None:
    if window.arrival_rate is None or window.covered <= 0:
        return None
    count = window.arrivals
    return max(0.0, count - sigmas * math.sqrt(count)) / window.covered


def _dropped(load: _Load, sigmas: float) -> bool:
    stable, panic = load.stable.arrival_rate, load.panic
    if stable is None or panic.arrival_rate is None:
        return False
    expected = stable * panic.covered
    return panic.arrivals < expected - sigmas * math.sqrt(expected + 1.0)

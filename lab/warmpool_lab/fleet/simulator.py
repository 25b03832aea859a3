"""Event-driven replay of a multi-tenant trace against a shared fleet driven by a FleetPolicy.

The model of `shared/traces/README.md`: pods asked for at t > 0 are Ready `startup` later (those
of t = 0 at once), pods taken away leave at once (not-Ready first, then the newest); a raised
warm count takes effect `resize` after it is asked for, a lowered one at once; each invocation
goes to a uniformly random Ready pod and is a hit when that pod has an idle warm instance of its
tenant. A pod that becomes Ready holds the fleet's warm counts in effect. Every tick the policy
sees each Ready pod's per-tuple counters and gauges, as the runtime exports them.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from warmpool_lab.fleet.model import FleetModel, FleetPolicy, FleetResult
from warmpool_lab.fleet.trace import TenantTrace
from warmpool_operator.fleet.observations import PodScrape, TupleCounters, TupleKey


class _Pod:
    __slots__ = ("busy", "dead", "dirty", "hits", "misses", "name", "running", "series")

    def __init__(self, name: str, tenants: int) -> None:
        self.name = name
        self.busy = [0] * tenants
        """Warm instances held, per tenant."""
        self.running = [0] * tenants
        """Invocations in flight (warm or cold), per tenant."""
        self.hits = [0] * tenants
        self.misses = [0] * tenants
        self.series: dict[TupleKey, TupleCounters] = {}
        """The tuples' series as last scraped (only tenants this pod has served have any)."""
        self.dirty: set[int] = set()
        """Tenants whose series changed since the last scrape."""
        self.dead = False


def _scrape(pod: _Pod, keys: Sequence[TupleKey], eff: list[int]) -> PodScrape:
    busy, running, hits, misses, series = pod.busy, pod.running, pod.hits, pod.misses, pod.series
    for k in pod.dirty:
        series[keys[k]] = TupleCounters(
            float(hits[k]), float(misses[k]), float(running[k]), float(max(0, eff[k] - busy[k]))
        )
    pod.dirty.clear()
    return PodScrape(pod.name, dict(series))


def simulate_fleet(trace: TenantTrace, policy: FleetPolicy, model: FleetModel | None = None) -> FleetResult:
    """Replay `trace` against a shared fleet driven by `policy`."""
    model = model or FleetModel()
    tenants = len(trace.tenants)
    keys = [TupleKey(name, "") for name in trace.tenants]
    end = trace.end
    learn = model.learning_seconds
    startup, resize, tick = model.startup_seconds, model.resize_seconds, model.tick_seconds
    m0, m = model.base_memory_mb, model.instance_memory_mb
    arrivals: list[float] = trace.arrivals.tolist()
    durations: list[float] = trace.durations.tolist()
    owner: list[int] = trace.tenant.tolist()
    routing: list[float] = np.random.default_rng(model.seed).random(len(arrivals)).tolist()

    pods_asked, asked = policy.start(trace.tenants)
    asked = list(asked)
    eff = list(asked)
    sum_eff = sum(eff)
    created = 0
    ready: list[_Pod] = []
    pending: deque[float] = deque()
    raises: list[tuple[float, int, int]] = []
    releases: list[tuple[float, int, _Pod, int, bool]] = []
    timeline: list[tuple[float, str, int]] = [(0.0, "pods", pods_asked)]
    timeline += [(0.0, trace.tenants[k], w) for k, w in enumerate(asked)]
    inv = [0] * tenants
    missed = [0] * tenants
    memory = counted_memory = 0.0
    last_t = 0.0
    max_warm = sum_eff if pods_asked else 0
    max_pods = pods_asked

    def new_pod() -> _Pod:
        nonlocal created
        created += 1
        return _Pod(f"pod-{created}", tenants)

    for _ in range(pods_asked):
        ready.append(new_pod())

    def account(t: float) -> None:
        nonlocal memory, counted_memory, last_t
        if t > last_t:
            rate = len(ready) * (m0 + m * sum_eff)
            memory += rate * (t - last_t)
            if t > learn:
                counted_memory += rate * (t - max(last_t, learn))
            last_t = t

    def release_until(t: float) -> None:
        while releases and releases[0][0] <= t:
            _, _, pod, k, hit = heapq.heappop(releases)
            if not pod.dead:
                pod.dirty.add(k)
                pod.running[k] -= 1
                if hit:
                    pod.busy[k] -= 1

    def apply(now: float, pods: int, warm: list[int]) -> None:
        nonlocal pods_asked, sum_eff, max_pods
        if pods != pods_asked:
            timeline.append((now, "pods", pods))
            have = len(ready) + len(pending)
            if pods > have:
                for _ in range(pods - have):
                    if startup <= 0.0 or now <= 0.0:
                        account(now)
                        ready.append(new_pod())
                    else:
                        pending.append(now + startup)
            else:
                for _ in range(have - pods):
                    if pending:
                        pending.pop()
                    else:
                        account(now)
                        ready.pop().dead = True
            pods_asked = pods
            max_pods = max(max_pods, pods)
        for k, w in enumerate(warm):
            if w == asked[k]:
                continue
            for pod in ready:
                if pod.series:
                    pod.dirty.add(k)
            timeline.append((now, trace.tenants[k], w))
            asked[k] = w
            if w < eff[k]:
                account(now)
                sum_eff -= eff[k] - w
                eff[k] = w
            elif w > eff[k]:
                if resize <= 0.0 or now <= 0.0:
                    account(now)
                    sum_eff += w - eff[k]
                    eff[k] = w
                else:
                    heapq.heappush(raises, (now + resize, k, w))

    tick_index = 0
    next_tick = 0.0 if tick > 0 else math.inf
    inf = math.inf

    def advance(t: float) -> float:
        """Handle raises, pods becoming Ready and ticks up to t in time order; the next event's time."""
        nonlocal tick_index, next_tick, sum_eff, max_warm
        while True:
            due = raises[0][0] if raises else inf
            up = pending[0] if pending else inf
            first = min(due, up, next_tick)
            if first > t or first >= end:
                return first
            release_until(first)
            if due == first:
                _, k, w = heapq.heappop(raises)
                v = min(w, asked[k])
                if v > eff[k]:
                    for pod in ready:
                        if pod.series:
                            pod.dirty.add(k)
                    account(first)
                    sum_eff += v - eff[k]
                    eff[k] = v
            elif up == first:
                pending.popleft()
                account(first)
                ready.append(new_pod())
            else:
                scrapes = [_scrape(p, keys, eff) for p in ready] if policy.wants_scrapes else []
                pods, warm = policy.tick(first, scrapes, pods_asked)
                apply(first, pods, warm)
                tick_index += 1
                next_tick = tick_index * tick
            if ready:
                max_warm = max(max_warm, sum_eff)

    next_event = advance(0.0)
    for i, t in enumerate(arrivals):
        if t >= next_event:
            next_event = advance(t)
        if releases and releases[0][0] <= t:
            release_until(t)
        k = owner[i]
        counted = t >= learn
        if counted:
            inv[k] += 1
        count = len(ready)
        if not count:
            if counted:
                missed[k] += 1
            continue
        pod = ready[int(routing[i] * count)]
        pod.running[k] += 1
        pod.dirty.add(k)
        hit = pod.busy[k] < eff[k]
        if hit:
            pod.busy[k] += 1
            pod.hits[k] += 1
        else:
            pod.misses[k] += 1
            if counted:
                missed[k] += 1
        heapq.heappush(releases, (t + durations[i], i, pod, k, hit))
    advance(math.nextafter(end, 0.0))
    account(end)
    return FleetResult(
        policy=policy.name,
        trace=trace.name,
        invocations=sum(inv),
        misses=sum(missed),
        tenant_invocations=tuple(inv),
        tenant_misses=tuple(missed),
        memory_mb_seconds=memory,
        memory_counted_mb_seconds=counted_memory,
        max_warm_per_pod=max_warm,
        cap=model.cap,
        max_pods=max_pods,
        evictions=int(getattr(policy, "evictions", 0)),
        timeline=tuple(timeline),
    )

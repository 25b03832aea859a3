"""Dedicated per-tenant pools (one Deployment per WarmPool, 4 warm per pod) under a per-tenant autoscaler.

Each tenant has its own pods, routed to uniformly at random among its Ready ones, with the fleet
model's start-up lag. The autoscaler is Erlang-from-recent-peak: every tick it measures each
tenant's load (arrivals over the tick × holding time from Little's law on the in-flight gauge)
and asks for the fewest pods of 4 warm instances (at least one) whose Erlang loss at the highest
load of the last minute meets the target; a scale-down thus waits for a minute of lower load.
(Driving the single-pool decider per tenant is possible with `warmpool_lab.simulator` but takes
about a second per tenant: minutes per trace.)
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from warmpool_lab.fleet.clairvoyant import DEDICATED_WARM
from warmpool_lab.fleet.model import FleetModel, FleetResult
from warmpool_lab.fleet.trace import TenantTrace
from warmpool_operator.scaling.erlang import pods_needed

PEAK_WINDOW_SECONDS = 60.0
HOLDING_SECONDS = 300.0
HOLDING_PRIOR_ARRIVALS = 20.0


class _Pool:
    __slots__ = ("arrived", "busy_avg", "in_flight", "pending", "rate_avg", "ready", "recent")

    def __init__(self) -> None:
        self.ready: list[list[int]] = [[0]]
        """Each Ready pod as a one-element list: its warm instances held (a cell the releases share)."""
        self.pending: deque[float] = deque()
        self.arrived = 0
        self.in_flight = 0
        self.rate_avg = 0.0
        self.busy_avg = 0.0
        self.recent: deque[tuple[float, float]] = deque()


def simulate_dedicated(
    trace: TenantTrace,
    model: FleetModel | None = None,
    *,
    target: float = 0.01,
    schedule: npt.NDArray[np.int64] | None = None,
    window_seconds: float = 10.0,
) -> FleetResult:
    """Replay `trace` against dedicated per-tenant pools (one Ready pod each at t = 0).

    With a `schedule` (pods per tenant and window, e.g. the dedicated clairvoyant's) the pools follow
    it instead, each window's pods Ready when it starts.
    """
    model = model or FleetModel()
    startup = model.startup_seconds
    if schedule is not None:
        model = replace(model, tick_seconds=window_seconds)
        startup = 0.0
    tenants = len(trace.tenants)
    end, learn, tick = trace.end, model.learning_seconds, model.tick_seconds
    per_pod = model.base_memory_mb + model.instance_memory_mb * DEDICATED_WARM
    pools = [_Pool() for _ in range(tenants)]
    arrivals: list[float] = trace.arrivals.tolist()
    durations: list[float] = trace.durations.tolist()
    owner: list[int] = trace.tenant.tolist()
    routing: list[float] = np.random.default_rng(model.seed).random(len(arrivals)).tolist()
    releases: list[tuple[float, int, int, list[int], bool]] = []
    starting: list[tuple[float, int]] = []
    inv, missed = [0] * tenants, [0] * tenants
    ready_total = tenants
    memory = counted = 0.0
    last_t = 0.0
    max_pods = 1
    alpha = 1.0 - math.exp(-tick / HOLDING_SECONDS)

    def account(t: float) -> None:
        nonlocal memory, counted, last_t
        if t > last_t:
            rate = ready_total * per_pod
            memory += rate * (t - last_t)
            if t > learn:
                counted += rate * (t - max(last_t, learn))
            last_t = t

    def release_until(t: float) -> None:
        while releases and releases[0][0] <= t:
            _, _, k, cell, hit = heapq.heappop(releases)
            pools[k].in_flight -= 1
            if hit:
                cell[0] -= 1

    def decide(now: float) -> None:
        nonlocal ready_total, max_pods
        if schedule is not None:
            column = min(int(now / window_seconds + 1e-9), schedule.shape[1] - 1)
            for k, pool in enumerate(pools):
                resize(k, pool, int(schedule[k, column]), now)
            return
        busy = sum(p.busy_avg for p in pools)
        rate = sum(p.rate_avg for p in pools)
        prior = busy / rate if rate > 0 and busy > 0 else 1.0
        for k, pool in enumerate(pools):
            arrived = pool.arrived / tick
            pool.arrived = 0
            pool.rate_avg += alpha * (arrived - pool.rate_avg)
            pool.busy_avg += alpha * (pool.in_flight - pool.busy_avg)
            holding = (pool.busy_avg * HOLDING_SECONDS + HOLDING_PRIOR_ARRIVALS * prior) / (
                pool.rate_avg * HOLDING_SECONDS + HOLDING_PRIOR_ARRIVALS
            )
            recent = pool.recent
            recent.append((now, arrived * holding))
            while recent[0][0] <= now - PEAK_WINDOW_SECONDS:
                recent.popleft()
            peak = max(load for _, load in recent)
            resize(k, pool, max(1, pods_needed(peak, DEDICATED_WARM, target)), now)

    def resize(k: int, pool: _Pool, want: int, now: float) -> None:
        nonlocal ready_total, max_pods
        have = len(pool.ready) + len(pool.pending)
        if want > have:
            for _ in range(want - have):
                if startup <= 0.0 or now <= 0.0:
                    account(now)
                    pool.ready.append([0])
                    ready_total += 1
                else:
                    pool.pending.append(now + startup)
                    heapq.heappush(starting, (now + startup, k))
        elif want < have:
            for _ in range(have - want):
                if pool.pending:
                    pool.pending.pop()
                else:
                    account(now)
                    pool.ready.pop()
                    ready_total -= 1
        max_pods = max(max_pods, want)

    next_tick = 0.0 if schedule is not None else tick

    def advance(t: float) -> None:
        nonlocal next_tick, ready_total
        while True:
            up = starting[0][0] if starting else math.inf
            first = min(up, next_tick)
            if first > t or first >= end:
                return
            release_until(first)
            if up == first:
                _, k = heapq.heappop(starting)
                pool = pools[k]
                # A scale-down may have cancelled this start: only pods still pending become Ready.
                if pool.pending and pool.pending[0] <= first:
                    pool.pending.popleft()
                    account(first)
                    pool.ready.append([0])
                    ready_total += 1
            else:
                decide(first)
                next_tick += tick

    for i, t in enumerate(arrivals):
        if t >= next_tick or (starting and starting[0][0] <= t):
            advance(t)
        if releases and releases[0][0] <= t:
            release_until(t)
        k = owner[i]
        pool = pools[k]
        pool.arrived += 1
        pool.in_flight += 1
        counted_now = t >= learn
        if counted_now:
            inv[k] += 1
        cell = pool.ready[int(routing[i] * len(pool.ready))] if pool.ready else [DEDICATED_WARM]
        hit = cell[0] < DEDICATED_WARM
        if hit:
            cell[0] += 1
        elif counted_now:
            missed[k] += 1
        heapq.heappush(releases, (t + durations[i], i, k, cell, hit))
    advance(math.nextafter(end, 0.0))
    account(end)
    return FleetResult(
        policy="dedicated" if schedule is None else "dedicated-clairvoyant",
        trace=trace.name,
        invocations=sum(inv),
        misses=sum(missed),
        tenant_invocations=tuple(inv),
        tenant_misses=tuple(missed),
        memory_mb_seconds=memory,
        memory_counted_mb_seconds=counted,
        max_warm_per_pod=DEDICATED_WARM,
        cap=model.cap,
        max_pods=max_pods,
    )

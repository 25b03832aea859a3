"""Call lanes: a call runs inline on the server thread within a small budget, else on a worker thread.

The inline lane answers without a thread handoff; a call that needs longer than the budget is
interrupted and re-run whole, from a clean instance, on a worker with its full deadline (safe
because every call starts from a clean instance). An export that overruns the budget repeatedly
skips the inline lane for a while (`SlowExports`). Calls that go to a worker are admitted first
(`WorkerLane`: per-tenant bounds and worker shares, the pod's queue bound); calls that complete
inline hold no shared resource beyond their small budget and are never queued or shed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from warmpool_runtime.engine import EpochClock, ticks_for
from warmpool_runtime.errors import DeadlineExceeded, GuestTrap, RuntimeFault, Saturated, TenantLimit
from warmpool_runtime.instance import WarmInstance
from warmpool_runtime.pool import TuplePool
from warmpool_runtime.registry import Target
from warmpool_runtime.settings import RuntimeSettings
from warmpool_runtime.stats import PoolStats

CallArgs = Sequence[Any] | bytes
"""JSON numbers, one per parameter (the numeric ABI), or a request payload (the bytes ABI)."""
CallResult = list[int | float] | bytes
"""One number per result (the numeric ABI), or the response payload (the bytes ABI)."""
PendingCall = asyncio.Future[CallResult]
"""A call running on a worker thread; its exception is the call's RuntimeFault, if any."""

ExportKey = tuple[str, str, str]


class SlowExports:
    """Counts inline overruns per export; enough in a row send the export to the worker lane for a while."""

    def __init__(self, strikes: int, seconds: float) -> None:
        self._strikes_needed = strikes
        self._seconds = seconds
        self._until: dict[ExportKey, float] = {}
        self._strikes: dict[ExportKey, int] = {}

    def is_slow(self, key: ExportKey) -> bool:
        return bool(self._until) and self._until.get(key, 0.0) > time.monotonic()

    def strike(self, key: ExportKey) -> None:
        """Count one overrun."""
        strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
        if strikes >= self._strikes_needed:
            self._until[key] = time.monotonic() + self._seconds
            del self._strikes[key]

    def clear(self, key: ExportKey) -> None:
        """A call within the budget: overruns must come in a row to count."""
        if self._strikes:
            self._strikes.pop(key, None)


class _Tenant:
    """One tenant's share of the worker lane: its queued calls and how many of its calls run."""

    __slots__ = ("name", "queue", "running", "scheduled", "shed")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[_Job] = deque()
        self.running = 0
        self.scheduled = False
        """In the round-robin ring: it has queued calls and is below its worker share."""
        self.shed: Counter[str] = Counter()
        """Calls refused, by reason (`tenant_limit`, `saturated`)."""


@dataclass(frozen=True, slots=True)
class TenantLoad:
    """One tenant's worker-lane load, as the metrics read it."""

    tenant: str
    running: int
    queued: int
    shed: dict[str, int]


class _Job:
    """One queued call: what runs it, the Future its caller awaits, and the timer that bounds its wait."""

    __slots__ = ("abandon", "future", "loop", "run", "timer")

    def __init__(self, run: Callable[[], CallResult], future: PendingCall, loop: asyncio.AbstractEventLoop,
                 abandon: Callable[[], None] | None) -> None:
        self.run: Callable[[], CallResult] | None = run
        self.abandon = abandon
        """What gives back what the call holds (its drawn instance) when it never runs."""
        self.future = future
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None


class WorkerLane:
    """Worker threads shared fairly between tenants, with bounded queues.

    Each tenant has its own queue; free workers take calls from the tenants round-robin, so one
    tenant's backlog never sits in front of another's call, and no tenant runs on more than its
    share of the workers, so a tenant whose guests all hang until their deadline still leaves
    workers to the others. A tenant with `tenant_max_calls` calls running or queued is refused
    (`TenantLimit`, 429). The pod is under pressure only while every worker is busy: then the queued
    calls are its backlog, and past `max_queued` a call is refused (`Saturated`, 503); while a worker
    is idle, queued calls wait only for their own tenant's share, so one tenant alone can make the
    pod neither refuse others nor turn unready. No call waits for a worker longer than its own
    deadline: one still queued then is refused then, the same way.
    """

    def __init__(self, settings: RuntimeSettings, tenants: Iterable[str] = ()) -> None:
        self._workers = settings.workers
        names = set(tenants)
        self._configured_share = settings.tenant_max_workers
        self._share = settings.tenant_max_workers or (
            settings.workers if len(names) == 1 else max(1, settings.workers - 1))
        """Workers one tenant may occupy: `tenant_max_workers`, else all but one, so that a tenant whose
        guests are all stuck leaves one to the others; all of them on a pod configured for one tenant."""
        self._max_calls = settings.tenant_max_calls
        self._max_queued = settings.max_queued_calls
        self._high = max(1, math.ceil(settings.queue_high_water * settings.max_queued_calls))
        self._low = math.floor(settings.queue_low_water * settings.max_queued_calls)
        self._tenants: dict[str, _Tenant] = {name: _Tenant(name) for name in names}
        self._ring: deque[_Tenant] = deque()
        self._queued = 0
        self._running = 0
        self.saturated = False
        """The backlog reached the high-water mark and has not yet fallen to the low-water mark."""
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"wasm-call-{i}", daemon=True)
                         for i in range(settings.workers)]
        for thread in self._threads:
            thread.start()

    def set_tenants(self, tenants: Iterable[str]) -> None:
        """The tenants the pod now serves (a live config change): their worker share follows their count, and
        idle tenants no longer served are forgotten."""
        names = set(tenants)
        with self._cond:
            self._share = self._configured_share or (
                self._workers if len(names) == 1 else max(1, self._workers - 1))
            for name in [n for n, t in self._tenants.items()
                         if n not in names and not t.running and not t.queue]:
                del self._tenants[name]
            for name in names:
                self._tenants.setdefault(name, _Tenant(name))
            for t in self._tenants.values():  # a larger share lets queued calls start now
                if t.queue and not t.scheduled and t.running < self._share:
                    t.scheduled = True
                    self._ring.append(t)
                    self._cond.notify()

    @property
    def backlog(self) -> int:
        """Calls queued while every worker is busy (0 while one is idle)."""
        return self._queued if self._running >= self._workers else 0

    def admit(self, tenant: str, retry_after: int) -> None:
        """Raise the fault that refuses a new call of `tenant` now, if any (serving thread)."""
        with self._cond:
            t = self._tenants.get(tenant)
            if t is None:
                t = self._tenants[tenant] = _Tenant(tenant)
            if t.running + len(t.queue) >= self._max_calls:
                t.shed["tenant_limit"] += 1
                fault: RuntimeFault = TenantLimit(f"tenant {tenant} has {self._max_calls} calls running or queued")
            elif self.backlog >= self._max_queued:
                t.shed["saturated"] += 1
                fault = Saturated(f"all workers are busy and {self._queued} calls are queued on this runtime")
            else:
                return
        fault.retry_after_seconds = retry_after
        raise fault

    def submit(self, tenant: str, run: Callable[[], CallResult], loop: asyncio.AbstractEventLoop, *,
               max_wait: float, retry_after: int, abandon: Callable[[], None] | None = None) -> PendingCall:
        """Queue an admitted call (serving thread: nothing it admitted can have been taken since); a call
        no worker took within `max_wait` seconds is refused then, and `abandon` called."""
        future: PendingCall = loop.create_future()
        job = _Job(run, future, loop, abandon)
        job.timer = loop.call_later(max_wait, self._expire, job, max_wait, retry_after)
        with self._cond:
            t = self._tenants[tenant]
            t.queue.append(job)
            self._queued += 1
            if not t.scheduled and t.running < self._share:
                t.scheduled = True
                self._ring.append(t)
            self._update_saturation()
            self._cond.notify()
        return future

    def close(self) -> None:
        """Stop the workers once their calls end (each within its deadline); queued calls are cancelled."""
        with self._cond:
            self._closed = True
            jobs = [job for t in self._tenants.values() for job in t.queue]
            for t in self._tenants.values():
                t.queue.clear()
                t.scheduled = False
            self._ring.clear()
            self._queued = 0
            self._cond.notify_all()
        for job in jobs:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                job.loop.call_soon_threadsafe(job.future.cancel)

    def load(self) -> list[TenantLoad]:
        with self._cond:
            return [TenantLoad(t.name, t.running, len(t.queue), dict(t.shed)) for t in self._tenants.values()]

    def _expire(self, job: _Job, waited: float, retry_after: int) -> None:
        """(serving thread) Refuse a call still queued after its longest wait."""
        with self._cond:
            t = next((t for t in self._tenants.values() if job in t.queue), None)
            if t is None:
                return  # a worker took it
            t.queue.remove(job)
            self._queued -= 1
            if not t.queue and t.scheduled:
                t.scheduled = False
                self._ring.remove(t)
            reason = "tenant_limit" if t.running >= self._share else "saturated"
            t.shed[reason] += 1
            self._update_saturation()
        job.run = None
        if job.abandon is not None:
            job.abandon()
        kind = TenantLimit if reason == "tenant_limit" else Saturated
        fault = kind(f"no worker was free for tenant {t.name}'s call within its {waited:g} s deadline")
        fault.retry_after_seconds = retry_after
        if not job.future.done():
            job.future.set_exception(fault)

    # Under the lock ------------------------------------------------------------------------------
    def _update_saturation(self) -> None:
        backlog = self.backlog
        if backlog >= self._high:
            self.saturated = True
        elif backlog <= self._low:
            self.saturated = False

    # Worker threads ------------------------------------------------------------------------------
    def _next(self) -> tuple[_Tenant, _Job] | None:
        with self._cond:
            while not self._ring:
                if self._closed:
                    return None
                self._cond.wait()
            t = self._ring.popleft()
            job = t.queue.popleft()
            t.running += 1
            self._running += 1
            self._queued -= 1
            if t.queue and t.running < self._share:
                self._ring.append(t)  # to the back: the other tenants' calls come first
            else:
                t.scheduled = False
            self._update_saturation()
            return t, job

    def _done(self, t: _Tenant) -> None:
        with self._cond:
            t.running -= 1
            self._running -= 1
            if t.queue and not t.scheduled:
                t.scheduled = True
                self._ring.append(t)
                self._cond.notify()
            self._update_saturation()

    def _work(self) -> None:
        while (taken := self._next()) is not None:
            t, job = taken
            run, job.run, job.abandon = job.run, None, None  # the expiry timer keeps the job: not its instance
            try:
                outcome: CallResult | BaseException = run() if run is not None else []
            except BaseException as exc:  # handed to the caller's future
                outcome = exc
            finally:
                self._done(t)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                job.loop.call_soon_threadsafe(_settle, job, outcome)
            del run, job, outcome


def _settle(job: _Job, outcome: CallResult | BaseException) -> None:
    if job.timer is not None:
        job.timer.cancel()
    future = job.future
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class CallLanes:
    """Runs calls on resolved targets. `call` runs on the event loop thread only."""

    def __init__(self, settings: RuntimeSettings, clock: EpochClock, tenants: Iterable[str] = ()) -> None:
        self.workers = WorkerLane(settings, tenants)
        self._clock = clock
        self._inline_ticks = (
            ticks_for(settings.inline_budget_ms, settings.epoch_tick_ms) if settings.inline_budget_ms else 0
        )
        self._inline_seconds = settings.inline_budget_ms / 1000.0
        self.slow_exports = SlowExports(settings.slow_strikes, settings.slow_export_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Complete worker calls on this loop."""
        self._loop = loop

    @property
    def saturated(self) -> bool:
        """Calls wait for a worker past the high-water mark (and not yet back under the low one)."""
        return self.workers.saturated

    def close(self) -> None:
        self.workers.close()

    def call(self, target: Target, args: CallArgs) -> CallResult | PendingCall:
        """The result when the call completed inline, else a Future of it; raises a call's RuntimeFault."""
        clock = self._clock
        clock.busy += 1
        if clock.parked:
            clock.wake()
        stats = target.pool.stats
        stats.in_flight += 1
        start = time.perf_counter()
        try:
            result = self._start(target, args, start)
        except BaseException as exc:
            _account(clock, stats, start, exc)
            raise
        if isinstance(result, asyncio.Future):
            result.add_done_callback(
                lambda f: _account(clock, stats, start, None if f.cancelled() else f.exception()))
            return result
        _account(clock, stats, start, None)
        return result

    def _start(self, target: Target, args: CallArgs, started: float) -> CallResult | PendingCall:
        pool, export = target.pool, target.export
        if self._inline_ticks == 0 or not pool.template.inline_ok or self.slow_exports.is_slow(target.key):
            return self._on_worker(target, args, pool.acquire)
        instance = pool.acquire()
        if instance is None:
            return self._on_worker(target, args, _no_instance)
        full_ticks = pool.template.deadline_ticks
        budget = min(self._inline_ticks, full_ticks)
        try:
            result = _run(instance, export, args, budget)
            if time.perf_counter() - started > self._inline_seconds:
                self.slow_exports.strike(target.key)  # slow but not interrupted
            else:
                self.slow_exports.clear(target.key)
            return result
        except DeadlineExceeded:
            if budget >= full_ticks:
                raise
        finally:
            pool.release(instance)
        # Over the inline budget: re-run whole on a worker, with the full deadline.
        self.slow_exports.strike(target.key)
        return self._on_worker(target, args, pool.take_uncounted)

    def _on_worker(self, target: Target, args: CallArgs, draw: Callable[[], WarmInstance | None]) -> PendingCall:
        """Admit the call to the worker lane, draw its instance (after admission: a refused call takes
        none) and queue it."""
        pool = target.pool
        tenant = pool.template.tenant
        timeout = pool.template.limits.timeout_ms / 1000
        retry_after = max(1, math.ceil(timeout))
        self.workers.admit(tenant, retry_after)
        instance = draw()
        loop = self._loop or asyncio.get_running_loop()
        run = partial(_run_drawn, pool, instance, target.export, args, pool.template.deadline_ticks)
        abandon = None if instance is None else partial(pool.release, instance)
        return self.workers.submit(tenant, run, loop, max_wait=timeout, retry_after=retry_after, abandon=abandon)


def _no_instance() -> None:
    return None


def _account(clock: EpochClock, stats: PoolStats, start: float, exc: BaseException | None) -> None:
    clock.busy -= 1
    stats.in_flight -= 1
    stats.invoke_seconds.observe(time.perf_counter() - start)
    if exc is None:
        stats.ok += 1
        return
    code = exc.code if isinstance(exc, RuntimeFault) else "internal"
    stats.invocations[code] += 1
    if isinstance(exc, GuestTrap):
        stats.traps[exc.details.get("trap") or exc.code] += 1


def _run(instance: WarmInstance, export: str, args: CallArgs, ticks: int) -> CallResult:
    if isinstance(args, bytes | bytearray | memoryview):
        return instance.call_bytes(export, bytes(args), ticks)
    return instance.call_numeric(export, args, ticks)


def _run_drawn(pool: TuplePool, instance: WarmInstance | None, export: str, args: CallArgs,
               ticks: int) -> CallResult:
    """Worker-thread path: instantiate when the draw missed, call, hand the instance back."""
    if instance is None:
        instance = pool.instantiate()
    try:
        if pool.template.wasi:
            instance.enter_host_calls()
        return _run(instance, export, args, ticks)
    finally:
        pool.release(instance)

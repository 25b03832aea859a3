"""Call lanes: a call runs inline on the server thread within a small budget, else on a worker thread.

The inline lane answers without a thread handoff; a call that needs longer than the budget is
interrupted and re-run whole, from a clean instance, on a worker with its full deadline (safe
because every call starts from a clean instance). An export that overruns the budget repeatedly
skips the inline lane for a while (`SlowExports`). `CallLanes.call` is the one entry for every
call, so admission rules (per-tenant concurrency, load shedding) belong at its top.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from warmpool_runtime.engine import ticks_for
from warmpool_runtime.errors import DeadlineExceeded, GuestTrap, RuntimeFault
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


class CallLanes:
    """Runs calls on resolved targets. `call` runs on the event loop thread only."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self._workers = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="wasm-call")
        self._inline_ticks = (
            ticks_for(settings.inline_budget_ms, settings.epoch_tick_ms) if settings.inline_budget_ms else 0
        )
        self._inline_seconds = settings.inline_budget_ms / 1000.0
        self.slow_exports = SlowExports(settings.slow_strikes, settings.slow_export_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Complete worker calls on this loop."""
        self._loop = loop

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)

    def call(self, target: Target, args: CallArgs) -> CallResult | PendingCall:
        """The result when the call completed inline, else a Future of it; raises a call's RuntimeFault."""
        stats = target.pool.stats
        stats.in_flight += 1
        start = time.perf_counter()
        try:
            result = self._start(target, args, start)
        except BaseException as exc:
            _account(stats, start, exc)
            raise
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda f: _account(stats, start, None if f.cancelled() else f.exception()))
            return result
        _account(stats, start, None)
        return result

    def _start(self, target: Target, args: CallArgs, started: float) -> CallResult | PendingCall:
        pool, export = target.pool, target.export
        full_ticks = pool.template.deadline_ticks
        instance = pool.acquire()
        if (instance is None or self._inline_ticks == 0 or not pool.template.inline_ok
                or self.slow_exports.is_slow(target.key)):
            return self._on_worker(pool, instance, export, args, full_ticks)
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
        return self._on_worker(pool, pool.take_uncounted(), export, args, full_ticks)

    def _on_worker(self, pool: TuplePool, instance: WarmInstance | None, export: str, args: CallArgs,
                   ticks: int) -> PendingCall:
        loop = self._loop or asyncio.get_running_loop()
        return loop.run_in_executor(self._workers, _run_drawn, pool, instance, export, args, ticks)


def _account(stats: PoolStats, start: float, exc: BaseException | None) -> None:
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
        return _run(instance, export, args, ticks)
    finally:
        pool.release(instance)

"""The runtime: loads tuples, owns their pools, and runs invocations inline or on worker threads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import wasmtime

from warmpool_runtime import abi
from warmpool_runtime.config import RuntimeConfig, TupleConfig
from warmpool_runtime.engine import EngineSettings, EpochTicker, build_engine, ticks_for
from warmpool_runtime.errors import (
    DeadlineExceeded,
    GuestTrap,
    ModuleError,
    NotReady,
    RuntimeFault,
    UnknownModule,
    UnknownTenant,
)
from warmpool_runtime.instance import Template, WarmInstance
from warmpool_runtime.modules import WASI_P1, ModuleStore
from warmpool_runtime.pool import InstanceFactory, Refiller, TuplePool
from warmpool_runtime.stats import PoolStats

log = logging.getLogger(__name__)

SLOW_EXPORT_SECONDS = 10.0
"""How long an export that overran the inline budget goes straight to a worker."""
SLOW_STRIKES = 3
"""Inline calls in a row over the budget before an export counts as slow: one overrun can be the
thread losing its core (a shared machine, a GC pause), and the worker lane costs every call ~50 µs."""
BLOCKING_WASI = frozenset({"poll_oneoff", "fd_read", "fd_pread", "sock_accept", "sock_recv", "sched_yield"})
"""WASI calls that can wait: a guest importing one never runs on the server thread."""
_NUMERIC = frozenset({"i32", "i64", "f32", "f64"})


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved invocation target: looked up once per route, then reused by every call to it."""

    pool: TuplePool
    export: str
    key: tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class TupleStatus:
    tenant: str
    sha256: str
    warm: int
    target: int
    ready: bool
    error: RuntimeFault | None


class Runtime:
    """All pools of one process. Invocations enter on the event loop thread only."""

    def __init__(self, config: RuntimeConfig, engine_settings: EngineSettings | None = None,
                 factory: InstanceFactory = WarmInstance) -> None:
        self.config = config
        settings = engine_settings or EngineSettings()
        # Fuel metering must be compiled in; only pay for it when some tuple asks for a fuel budget.
        needs_fuel = any(t.limits.fuel is not None for t in config.tuples)
        self.engine_settings = replace(settings, consume_fuel=settings.consume_fuel or needs_fuel)
        self.engine = build_engine(self.engine_settings)
        self.modules = ModuleStore(self.engine, config.compiled_cache_dir)
        self.linker = wasmtime.Linker(self.engine)
        if config.wasi:
            self.linker.define_wasi()
        self.pools: dict[tuple[str, str], TuplePool] = {}
        self.load_errors: dict[tuple[str, str], RuntimeFault] = {}
        self.tenants = {t.tenant for t in config.tuples}
        self._floors = config.floors()
        self._factory = factory
        self._ticker = EpochTicker(self.engine, self.engine_settings.epoch_tick_ms)
        self._refiller = Refiller()
        self._workers = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="wasm-call")
        self._inline_ticks = (
            ticks_for(config.inline_budget_ms, self.engine_settings.epoch_tick_ms) if config.inline_budget_ms else 0
        )
        self._slow: dict[tuple[str, str, str], float] = {}
        self._strikes: dict[tuple[str, str, str], int] = {}
        self._inline_seconds = config.inline_budget_ms / 1000.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # Lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._ticker.start()
        self._refiller.start()

    def load_all(self) -> None:
        """Load, verify and compile every tuple's module, then ask the refill thread to prewarm."""
        for tuple_config in self.config.tuples:
            try:
                pool = self._load(tuple_config)
            except RuntimeFault as exc:
                self.load_errors[tuple_config.key] = exc
                log.error("tuple %s/%s not loaded: %s", tuple_config.tenant, tuple_config.sha256[:12], exc)
                continue
            self.pools[tuple_config.key] = pool
            self._refiller.request(pool)

    def _load(self, t: TupleConfig) -> TuplePool:
        module = self.modules.load(t.source, t.sha256, t.limits.max_module_bytes, self.config.wasi)
        try:
            pre = self.linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"module {t.sha256[:12]} cannot be linked: {exc}") from exc
        layout = self.modules.layouts.get(t.sha256)
        in_place = None
        if layout is not None and layout.in_place_reset_ok:
            mutable = [e for e in module.exports if isinstance(e.type, wasmtime.GlobalType) and e.type.mutable]
            if all(str(e.type.content) in _NUMERIC for e in mutable):  # type: ignore[union-attr]
                in_place = tuple(e.name for e in mutable)
        template = Template(
            tenant=t.tenant,
            sha256=t.sha256,
            engine=self.engine,
            pre=pre,
            signatures=abi.signatures_of(module),
            has_memory=abi.exports_memory(module),
            wasi=self.config.wasi and any(i.module == "wasi_snapshot_preview1" for i in module.imports),
            limits=t.limits,
            deadline_ticks=ticks_for(t.limits.timeout_ms, self.engine_settings.epoch_tick_ms),
            in_place_globals=in_place,
            clock=self._ticker.clock,
            inline_ok=not any(i.module == WASI_P1 and i.name in BLOCKING_WASI for i in module.imports),
        )
        pool = TuplePool(template, self._floors[t.key], self._refiller, self._factory)
        # One instantiation up front: a module whose start function traps fails here, with its reason.
        pool.instantiate()
        if self._loop is not None:
            pool.serve_on(self._loop)
        return pool

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._refiller.stop()
        self._ticker.stop()
        for pool in self.pools.values():
            pool.drain()

    # Status ----------------------------------------------------------------------------------
    def statuses(self) -> list[TupleStatus]:
        out = []
        for t in self.config.tuples:
            pool = self.pools.get(t.key)
            error = self.load_errors.get(t.key) or (pool.last_error if pool else None)
            out.append(TupleStatus(
                tenant=t.tenant, sha256=t.sha256, warm=pool.warm if pool else 0,
                target=self._floors[t.key], ready=bool(pool and pool.ready), error=error,
            ))
        return out

    @property
    def ready(self) -> bool:
        return len(self.pools) == len(self.config.tuples) and all(p.ready for p in self.pools.values())

    # Invocation ------------------------------------------------------------------------------
    def pool_for(self, tenant: str, sha256: str) -> TuplePool:
        pool = self.pools.get((tenant, sha256))
        if pool is not None:
            return pool
        if tenant not in self.tenants:
            raise UnknownTenant(f"no tenant {tenant!r} on this runtime", tenant=tenant)
        error = self.load_errors.get((tenant, sha256))
        if error is not None:
            raise NotReady(f"module {sha256[:12]} of tenant {tenant} failed to load: {error.message}",
                           cause=error.code)
        if any(t.key == (tenant, sha256) for t in self.config.tuples):
            raise NotReady(f"module {sha256[:12]} of tenant {tenant} is still loading")
        raise UnknownModule(f"tenant {tenant} has no module {sha256}", tenant=tenant, sha256=sha256)

    def target(self, tenant: str, sha256: str, export: str) -> Target:
        """Resolve a call's target; raises the fault a caller should see for an unknown one."""
        pool = self.pool_for(tenant, sha256)
        abi.lookup(pool.template.signatures, export)  # an unknown export is not a draw
        return Target(pool, export, (tenant, sha256, export))

    def invoke_now(self, tenant: str, sha256: str, export: str, args: Sequence[Any] | bytes) -> Any:
        """The result when the call completed inline, else an asyncio Future of it.

        Numeric args (a list) give a list of results; a bytes payload gives bytes (the bytes ABI).
        """
        return self.call(self.target(tenant, sha256, export), args)

    def call(self, target: Target, args: Sequence[Any] | bytes) -> Any:
        """`invoke_now` on a resolved target."""
        if self._loop is None:
            self._serve_on(asyncio.get_running_loop())
        stats = target.pool.stats
        stats.in_flight += 1
        start = time.perf_counter()
        try:
            result = self._start(target, args, start)
        except BaseException as exc:
            _finish(stats, start, exc)
            raise
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda f: _finish(stats, start, None if f.cancelled() else f.exception()))
            return result
        _finish(stats, start, None)
        return result

    def _serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for pool in list(self.pools.values()):
            pool.serve_on(loop)

    async def invoke(self, tenant: str, sha256: str, export: str, args: Sequence[Any] | bytes) -> Any:
        result = self.invoke_now(tenant, sha256, export, args)
        return await result if isinstance(result, asyncio.Future) else result

    def _start(self, target: Target, args: Sequence[Any] | bytes, started: float) -> Any:
        pool, export = target.pool, target.export
        full_ticks = pool.template.deadline_ticks
        instance = pool.acquire()
        if (instance is None or self._inline_ticks == 0 or not pool.template.inline_ok
                or (self._slow and self._slow.get(target.key, 0.0) > time.monotonic())):
            return self._worker(pool, instance, export, args, full_ticks)
        budget = min(self._inline_ticks, full_ticks)
        try:
            result = _call(instance, export, args, budget)
            if time.perf_counter() - started > self._inline_seconds:
                self._strike(target.key)  # slow but not interrupted
            elif self._strikes:
                self._strikes.pop(target.key, None)
            return result
        except DeadlineExceeded:
            if budget >= full_ticks:
                raise
        finally:
            pool.release(instance)
        # Over the inline budget: every call starts from a clean instance, so re-running it whole on
        # a worker (with the full deadline) is safe.
        self._strike(target.key)
        return self._worker(pool, pool.take_uncounted(), export, args, full_ticks)

    def _strike(self, key: tuple[str, str, str]) -> None:
        """Count an inline overrun; enough in a row send the export to the workers for a while."""
        strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
        if strikes >= SLOW_STRIKES:
            self._slow[key] = time.monotonic() + SLOW_EXPORT_SECONDS
            del self._strikes[key]

    def _worker(self, pool: TuplePool, instance: WarmInstance | None, export: str, args: Sequence[Any] | bytes,
                ticks: int) -> asyncio.Future[Any]:
        loop = self._loop or asyncio.get_running_loop()
        return loop.run_in_executor(self._workers, _call_fresh, pool, instance, export, args, ticks)


def _finish(stats: PoolStats, start: float, exc: BaseException | None) -> None:
    stats.in_flight -= 1
    stats.invoke_seconds.observe(time.perf_counter() - start)
    if exc is None:
        stats.ok += 1
        return
    code = exc.code if isinstance(exc, RuntimeFault) else "internal"
    stats.invocations[code] += 1
    if isinstance(exc, GuestTrap):
        stats.traps[exc.details.get("trap") or exc.code] += 1


def _call(instance: WarmInstance, export: str, args: Sequence[Any] | bytes, ticks: int) -> Any:
    if isinstance(args, bytes | bytearray | memoryview):
        return instance.call_bytes(export, bytes(args), ticks)
    return instance.call_numeric(export, args, ticks)


def _call_fresh(pool: TuplePool, instance: WarmInstance | None, export: str, args: Sequence[Any] | bytes,
                ticks: int) -> Any:
    """Worker-thread path: instantiate when the draw missed, call, hand the instance back."""
    if instance is None:
        instance = pool.instantiate()
    try:
        return _call(instance, export, args, ticks)
    finally:
        pool.release(instance)

"""Tuple registry: loads each (tenant, module) tuple into a warm pool, owns the pools and their floors, routes calls."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import wasmtime

from warmpool_contract import SHORT_HASH
from warmpool_runtime import abi
from warmpool_runtime.config import RuntimeConfig, TupleConfig
from warmpool_runtime.engine import EpochClock, ticks_for
from warmpool_runtime.errors import ModuleError, NotReady, RuntimeFault, UnknownModule, UnknownTenant
from warmpool_runtime.instance import ResetMode, Template, WarmInstance
from warmpool_runtime.modules import WASI_P1, ModuleStore
from warmpool_runtime.pool import InstanceFactory, Refiller, TuplePool
from warmpool_runtime.wasi_host import define_wasi

log = logging.getLogger(__name__)

BLOCKING_WASI = frozenset({"poll_oneoff", "fd_read", "fd_pread", "sock_accept", "sock_recv", "sched_yield"})
"""WASI calls that can wait: a guest importing one never runs on the server thread."""
_NUMERIC = frozenset({"i32", "i64", "f32", "f64"})

TupleKey = tuple[str, str]
"""(tenant, module sha256)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved call target: looked up once per route, then reused by every call to it."""

    pool: TuplePool
    export: str
    key: tuple[str, str, str]
    """(tenant, sha256, export): what the call lanes count slow exports by."""


@dataclass(frozen=True, slots=True)
class TupleStatus:
    """One tuple as `/readyz` reports it."""

    tenant: str
    sha256: str
    warm: int
    target: int
    ready: bool
    error: RuntimeFault | None


class TupleRegistry:
    """The configured tuples, their pools (once loaded) and load errors. Lookups run on the serving thread;
    loading runs on another one."""

    def __init__(self, config: RuntimeConfig, engine: wasmtime.Engine, clock: EpochClock, refiller: Refiller,
                 factory: InstanceFactory = WarmInstance) -> None:
        self._config = config
        self._engine = engine
        self._clock = clock
        self._refiller = refiller
        self._factory = factory
        self.modules = ModuleStore(engine, config.compiled_cache_dir, config.settings)
        self._linker = wasmtime.Linker(engine)
        if config.wasi:
            define_wasi(self._linker)  # poll_oneoff bounded by the call's deadline
        self.pools: dict[TupleKey, TuplePool] = {}
        self.load_errors: dict[TupleKey, RuntimeFault] = {}
        self._tenants = {t.tenant for t in config.tuples}
        self._floors = config.floors()
        # Pools are added on the loading thread while the serving thread may attach its loop: both
        # happen under this lock, so no pool misses the loop.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    # Loading ---------------------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load, verify and compile every tuple's module, `settings.parallel_loads` at a time (a slow source
        holds back no other tuple); each pool goes to the refill thread to prewarm as soon as it loads."""
        workers = max(1, min(self._config.settings.parallel_loads, len(self._config.tuples)))
        with ThreadPoolExecutor(workers, thread_name_prefix="module-load") as executor:
            for _ in executor.map(self._load_and_prewarm, self._config.tuples):
                pass

    def _load_and_prewarm(self, t: TupleConfig) -> None:
        try:
            pool = self.load(t)
        except RuntimeFault as exc:
            self.load_errors[t.key] = exc
            log.error("tuple %s/%s not loaded: %s", t.tenant, t.sha256[:SHORT_HASH], exc.message)
            return
        self._refiller.request(pool)

    def load(self, t: TupleConfig) -> TuplePool:
        """Load one tuple into a pool and register it (not yet prewarmed); raises the fault that keeps it out."""
        module = self.modules.load(t.source, t.sha256, t.limits.max_module_bytes, self._config.wasi)
        try:
            with self._lock:  # tuples load on several threads; the Linker is shared
                pre = self._linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"module {t.sha256[:SHORT_HASH]} cannot be linked: {exc}") from exc
        pool = TuplePool(self._template(t, module, pre), self._floors[t.key], self._refiller, self._factory,
                         self._config.settings.loop_recycle_max_seconds)
        # One instantiation up front: a module whose start function traps fails here, with its reason.
        pool.instantiate()
        with self._lock:
            self.pools[t.key] = pool
            if self._loop is not None:
                pool.serve_on(self._loop)
        return pool

    def _template(self, t: TupleConfig, module: wasmtime.Module, pre: wasmtime.InstancePre) -> Template:
        reset_mode = ResetMode.RECYCLE
        in_place_globals: tuple[str, ...] = ()
        layout = self.modules.layouts.get(t.sha256)
        if layout is not None and layout.in_place_reset_ok:
            mutable = [e for e in module.exports if isinstance(e.type, wasmtime.GlobalType) and e.type.mutable]
            if all(str(e.type.content) in _NUMERIC for e in mutable):  # type: ignore[union-attr]
                reset_mode, in_place_globals = ResetMode.TRY_IN_PLACE, tuple(e.name for e in mutable)
        return Template(
            tenant=t.tenant,
            sha256=t.sha256,
            engine=self._engine,
            pre=pre,
            signatures=abi.signatures_of(module),
            has_memory=abi.exports_memory(module),
            wasi=self._config.wasi and any(i.module == WASI_P1 for i in module.imports),
            limits=t.limits,
            deadline_ticks=ticks_for(t.limits.timeout_ms, self._config.settings.epoch_tick_ms),
            clock=self._clock,
            reset_mode=reset_mode,
            in_place_globals=in_place_globals,
            inline_ok=not any(i.module == WASI_P1 and i.name in BLOCKING_WASI for i in module.imports),
        )

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reset every pool, present and future, on this loop's thread."""
        with self._lock:
            self._loop = loop
            for pool in self.pools.values():
                pool.serve_on(loop)

    def drain(self) -> None:
        for pool in list(self.pools.values()):
            pool.drain()

    # Status ------------------------------------------------------------------------------------------
    def statuses(self) -> list[TupleStatus]:
        out = []
        for t in self._config.tuples:
            pool = self.pools.get(t.key)
            error = self.load_errors.get(t.key) or (pool.last_error if pool else None)
            out.append(TupleStatus(
                tenant=t.tenant, sha256=t.sha256, warm=pool.warm if pool else 0,
                target=self._floors[t.key], ready=bool(pool and pool.ready), error=error,
            ))
        return out

    @property
    def ready(self) -> bool:
        """Every configured tuple is loaded and prewarmed."""
        return len(self.pools) == len(self._config.tuples) and all(p.ready for p in self.pools.values())

    # Routing -----------------------------------------------------------------------------------------
    def pool_for(self, tenant: str, sha256: str) -> TuplePool:
        """The tuple's pool; raises the fault a caller should see when there is none."""
        pool = self.pools.get((tenant, sha256))
        if pool is not None:
            return pool
        if tenant not in self._tenants:
            raise UnknownTenant(f"no tenant {tenant!r} on this runtime", tenant=tenant)
        short = sha256[:SHORT_HASH]
        error = self.load_errors.get((tenant, sha256))
        if error is not None:
            # Callers get the code only; the reason (which names the source) is for the operator, in /readyz.
            raise NotReady(f"module {short} of tenant {tenant} failed to load ({error.code}); see /readyz",
                           cause=error.code)
        if (tenant, sha256) in self._floors:
            raise NotReady(f"module {short} of tenant {tenant} is still loading")
        raise UnknownModule(f"tenant {tenant} has no module {sha256}", tenant=tenant, sha256=sha256)

    def target(self, tenant: str, sha256: str, export: str) -> Target:
        """Resolve a call's target; raises the fault a caller should see for an unknown one."""
        pool = self.pool_for(tenant, sha256)
        abi.lookup(pool.template.signatures, export)  # an unknown export is not a draw
        return Target(pool, export, (tenant, sha256, export))

"""Tuple registry: loads each (tenant, module) tuple into a warm pool, owns the pools and their floors, routes
calls, and applies a new tuple set live (added tuples load in the background, removed ones drain)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Literal

import wasmtime

from warmpool_contract import SHORT_HASH
from warmpool_runtime import abi
from warmpool_runtime.config import RuntimeConfig, TupleConfig
from warmpool_runtime.engine import EpochClock, ticks_for
from warmpool_runtime.errors import ModuleError, NotReady, RuntimeFault, UnknownModule, UnknownTenant
from warmpool_runtime.instance import ResetMode, Template, WarmInstance
from warmpool_runtime.modules import WASI_P1, ModuleStore
from warmpool_runtime.pool import InstanceFactory, Refiller, TuplePool
from warmpool_runtime.reconfig import TupleChanges, capped_floors, diff
from warmpool_runtime.tokens import TokenFile
from warmpool_runtime.wasi_host import define_wasi

log = logging.getLogger(__name__)

BLOCKING_WASI = frozenset({"poll_oneoff", "fd_read", "fd_pread", "sock_accept", "sock_recv", "sched_yield"})
"""WASI calls that can wait: a guest importing one never runs on the server thread."""
_NUMERIC = frozenset({"i32", "i64", "f32", "f64"})

TupleKey = tuple[str, str]
"""(tenant, module sha256)."""
State = Literal["loading", "warm", "failed"]


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved call target: looked up once per route, then reused by every call to it."""

    pool: TuplePool
    export: str
    key: tuple[str, str, str]
    """(tenant, sha256, export): what the call lanes count slow exports by."""
    auth: TokenFile | None = None
    """The bearer tokens a call needs, when the tuple requires one."""
    version: int = 0
    """The registry's route version it was resolved under (a route cache refuses it once that changed)."""


class RouteCache(dict[bytes, Target]):
    """Targets resolved by request path, kept by a server; its registry empties it whenever a route changes,
    so a removed tuple's pool is not held by a cached target until the next request comes in."""

    def __init__(self, version: Callable[[], int]) -> None:
        super().__init__()
        self._version = version

    def __setitem__(self, key: bytes, target: Target) -> None:
        # Stored first, checked after: a target resolved before a route change that lands meanwhile is
        # either dropped here or emptied by the change, never kept.
        super().__setitem__(key, target)
        if target.version != self._version():
            self.pop(key, None)


@dataclass(frozen=True, slots=True)
class TupleStatus:
    """One tuple as `/readyz` reports it."""

    tenant: str
    sha256: str
    warm: int
    target: int
    ready: bool
    error: RuntimeFault | None
    state: State = "loading"


class _Entry:
    """One configured tuple: its config, its pool once loaded (None while loading or failed), its load error."""

    __slots__ = ("auth", "config", "draws", "error", "last_used", "pool", "submitted")

    def __init__(self, config: TupleConfig, auth: TokenFile | None, now: float) -> None:
        self.config = config
        self.auth = auth
        self.pool: TuplePool | None = None
        self.error: RuntimeFault | None = None
        self.draws = 0
        self.submitted = False
        """Its load was handed to a loader thread (once: startup and a live change may both ask)."""
        self.last_used = now
        """When a call last drew from its pool (sampled by `tick`, never on the call path)."""


def _outcome(entry: _Entry) -> tuple[RuntimeFault | None, bool]:
    """The tuple's error (its load's, or its pool's refill's) and whether its pool holds its floor."""
    pool = entry.pool
    return entry.error or (pool.last_error if pool else None), bool(pool and pool.ready)


def _state(error: RuntimeFault | None, ready: bool) -> State:
    return "failed" if error is not None else "warm" if ready else "loading"


class TupleRegistry:
    """The configured tuples, their pools (once loaded) and load errors. Lookups run on the serving thread;
    loading runs on the loader threads, `apply` and `tick` on the config watcher's."""

    def __init__(self, config: RuntimeConfig, engine: wasmtime.Engine, clock: EpochClock, refiller: Refiller,
                 factory: InstanceFactory = WarmInstance, *, fuel: bool | None = None) -> None:
        self._config = config
        self._engine = engine
        self._clock = clock
        self._refiller = refiller
        self._factory = factory
        self._fuel = (config.needs_fuel or config.settings.consume_fuel) if fuel is None else fuel
        """Fuel metering is compiled into the engine: a tuple may set `limits.fuel`."""
        self.modules = ModuleStore(engine, config.compiled_cache_dir, config.settings)
        self._linker = wasmtime.Linker(engine)
        if config.wasi:
            define_wasi(self._linker)  # poll_oneoff bounded by the call's deadline
        self.pools: dict[TupleKey, TuplePool] = {}
        """Routable pools: a tuple's pool appears once loaded and prewarmed, and leaves when it is removed."""
        self.load_errors: dict[TupleKey, RuntimeFault] = {}
        self.version = 0
        """Bumped whenever a route changes: resolved targets cached before it are stale."""
        self._route_caches: weakref.WeakValueDictionary[int, RouteCache] = weakref.WeakValueDictionary()
        now = time.monotonic()
        self._token_files: dict[str, TokenFile] = {}
        self.token_files_refused: Counter[str] = Counter()
        """Token digests files refused for their size or kind, by path (counted on the watcher's thread)."""
        self._entries: dict[TupleKey, _Entry] = {t.key: _Entry(t, self._auth(t), now) for t in config.tuples}
        self._initial = list(self._entries.values())
        """The tuples of the config the process started with that may still be loading (see `initial_loading`)."""
        self._tenants = frozenset(t.tenant for t in config.tuples)
        self._floors = config.floors()
        # Pools are added on the loading threads while the serving thread may attach its loop, and the
        # watcher changes the tuple set: all of it under this lock, so no pool misses the loop.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loader = ThreadPoolExecutor(max(1, config.settings.parallel_loads), thread_name_prefix="module-load")
        self._retiring: list[tuple[TuplePool, float]] = []
        """Pools no longer routed, each with the time its calls in flight must have finished by."""
        self._drainer: threading.Thread | None = None
        """The thread draining `_retiring`, while it holds any."""

    @property
    def config(self) -> RuntimeConfig:
        """The config whose tuples are present (its settings are those the process started with)."""
        return self._config

    @property
    def tenants(self) -> frozenset[str]:
        return self._tenants

    def _auth(self, t: TupleConfig) -> TokenFile | None:
        path = t.token_digests_file
        if path is None:
            return None
        found = self._token_files.get(path)
        if found is None:
            found = self._token_files[path] = TokenFile(path, self._token_file_refused)
        return found

    def _token_file_refused(self, path: str) -> None:
        self.token_files_refused[path] += 1

    # Loading ---------------------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load, verify, compile and prewarm every configured tuple, `settings.parallel_loads` at a time (a
        slow source holds back no other tuple); each becomes routable as soon as it is warm."""
        with self._lock:
            entries = list(self._entries.values())
        wait(self._submit(entries))

    def _submit(self, entries: list[_Entry]) -> list[Future[None]]:
        with self._lock:
            fresh = [e for e in entries if not e.submitted]
            for e in fresh:
                e.submitted = True
        return [self._loader.submit(self._load_entry, e) for e in fresh]

    def _load_entry(self, entry: _Entry) -> None:
        t = entry.config
        try:
            pool = self.load(t)
        except Exception as exc:
            if not isinstance(exc, RuntimeFault):
                log.exception("tuple %s/%s: loading crashed", t.tenant, t.sha256[:SHORT_HASH])
                exc = ModuleError(f"module {t.sha256[:SHORT_HASH]} could not be loaded ({type(exc).__name__}); "
                                  "see the runtime's log")
            with self._lock:
                current = self._entries.get(t.key) is entry
                old = None
                if current:
                    entry.error = exc
                    self.load_errors[t.key] = exc
                    # A replacement that fails: the old pool's source or limits are no longer the config's.
                    old = self.pools.pop(t.key, None)
                    self._routes_changed()
            if old is not None:
                self._retire(old)
            if current:
                log.error("tuple %s/%s not loaded: %s", t.tenant, t.sha256[:SHORT_HASH], exc.message)
            return
        # Prewarm before routing: the first calls to a new tuple find warm instances. A failed refill
        # stops here; the refill thread retries it.
        while pool.refill_once():
            pass
        with self._lock:
            if self._entries.get(t.key) is not entry:  # removed or replaced while it loaded
                pool.drain()
                return
            old = self.pools.get(t.key)
            entry.pool = pool
            self.pools[t.key] = pool
            self.load_errors.pop(t.key, None)
            if self._loop is not None:
                pool.serve_on(self._loop)
            floor = self._floors.get(t.key, 0)
            self._routes_changed()
        if pool.floor != floor:
            pool.resize(floor)
        self._refiller.request(pool)
        if old is not None and old is not pool:
            self._retire(old)
        log.info("tuple %s/%s is loaded (%d warm)", t.tenant, t.sha256[:SHORT_HASH], pool.warm)

    def load(self, t: TupleConfig) -> TuplePool:
        """Load one tuple into a new pool, not yet routable nor prewarmed; raises the fault that keeps it out."""
        if t.limits.fuel is not None and not self._fuel:
            raise ModuleError(f"module {t.sha256[:SHORT_HASH]} sets limits.fuel, but fuel metering is compiled "
                              "in at start only: set settings.consumeFuel and restart")
        module = self.modules.load(t.source, t.sha256, t.limits.max_module_bytes, self._config.wasi)
        try:
            with self._lock:  # tuples load on several threads; the Linker is shared
                pre = self._linker.instantiate_pre(module)
                floor = self._floors.get(t.key, 0)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"module {t.sha256[:SHORT_HASH]} cannot be linked: {exc}") from exc
        pool = TuplePool(self._template(t, module, pre), floor, self._refiller, self._factory,
                         self._config.settings.loop_recycle_max_seconds)
        # One instantiation up front: a module whose start function or `_initialize` traps, runs past its
        # deadline or exceeds its limits fails here, with its reason.
        pool.instantiate()
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
            initializer=abi.initializer_of(module),  # raises for a WASI command
        )

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reset every pool, present and future, on this loop's thread."""
        with self._lock:
            self._loop = loop
            for pool in self.pools.values():
                pool.serve_on(loop)

    def drain(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
        for pool in list(self.pools.values()):
            pool.drain()

    # Live changes ------------------------------------------------------------------------------------
    def apply(self, new: RuntimeConfig) -> TupleChanges:
        """Make the tuple set `new`'s: removed tuples stop routing now and drain in the background, added and
        replaced ones load in the background (a replaced tuple keeps serving from its old pool until then),
        resized ones change their floor. Tuples not named by the changes are never touched."""
        changes = diff(self._config, new)
        # Settings shape the engine, the workers and the listener: they keep their running values.
        new = replace(new, settings=self._config.settings, wasi=self._config.wasi,
                      compiled_cache_dir=self._config.compiled_cache_dir)
        now = time.monotonic()
        retired: list[TuplePool] = []
        loads: list[_Entry] = []
        rebuilt = {t.key for t in (*changes.add, *changes.replace)}
        with self._lock:
            for key in changes.remove:
                self._entries.pop(key, None)
                self.load_errors.pop(key, None)
                pool = self.pools.pop(key, None)
                if pool is not None:
                    retired.append(pool)
            entries: dict[TupleKey, _Entry] = {}
            for t in new.tuples:
                entry = self._entries.get(t.key)
                if entry is None or t.key in rebuilt:
                    entry = _Entry(t, self._auth(t), now)
                    self.load_errors.pop(t.key, None)
                    loads.append(entry)
                else:
                    entry.config, entry.auth = t, self._auth(t)
                entries[t.key] = entry
            self._entries = entries
            # A tuple removed or replaced no longer holds readiness back, nor (through its entry) its pool's memory.
            self._initial = [e for e in self._initial if entries.get(e.config.key) is e]
            used = {t.token_digests_file for t in new.tuples}
            self._token_files = {p: f for p, f in self._token_files.items() if p in used}
            self._config = new
            self._tenants = frozenset(t.tenant for t in new.tuples)
            self._routes_changed()
        for pool in retired:
            self._retire(pool)
        self._apply_floors()
        self._submit(loads)
        return changes

    def _retire(self, pool: TuplePool) -> None:
        """Drain a pool that no longer routes: calls in flight finish (within their deadline), then its
        instances are freed. One thread drains every retired pool, however many a config change removes."""
        limit = 2 * pool.template.limits.timeout_ms / 1000 + 1.0  # a queued wait, then the call itself
        with self._lock:
            self._retiring.append((pool, time.monotonic() + limit))
            if self._drainer is None:
                self._drainer = threading.Thread(target=self._drain_retired, name="tuple-drain", daemon=True)
                self._drainer.start()

    def _drain_retired(self) -> None:
        """The drain thread: frees each retired pool once it is idle or past its deadline; ends with none left."""
        while True:
            with self._lock:
                if not self._retiring:
                    self._drainer = None
                    return
                now = time.monotonic()
                done: list[TuplePool] = []
                waiting: list[tuple[TuplePool, float]] = []
                for pool, deadline in self._retiring:
                    if pool.busy and now < deadline:
                        waiting.append((pool, deadline))
                    else:
                        done.append(pool)
                self._retiring = waiting
            for pool in done:
                pool.drain()
                sha256 = pool.template.sha256
                with self._lock:
                    in_use = any(key[1] == sha256 for key in self._entries)
                if not in_use:
                    self.modules.forget(sha256)
                log.info("tuple %s/%s drained", pool.template.tenant, sha256[:SHORT_HASH])
            if not done:
                time.sleep(0.01)

    def _apply_floors(self) -> None:
        """Recompute every floor under `maxTotalWarm` (warmest first while the cap binds) and resize the pools
        whose floor moved; O(tuples)."""
        with self._lock:
            entries = list(self._entries.values())
            config = self._config
            recency = {e.config.key: e.last_used for e in entries}
            binds = sum(t.warm for t in config.tuples) > config.max_total_warm
            floors = capped_floors(config.tuples, config.max_total_warm, recency if binds else None)
            self._floors = floors
            moves = [(e.pool, floors[e.config.key], floors[e.config.key] < e.config.warm)
                     for e in entries if e.pool is not None and e.pool.floor != floors[e.config.key]]
        for pool, floor, evicting in moves:
            pool.resize(floor, evicting=evicting)

    def tick(self, now: float | None = None) -> None:
        """Periodic upkeep off the call path (the config watcher's thread): note which tuples were used,
        let the warmest take the cap's slots when it binds, and re-read changed token files."""
        now = time.monotonic() if now is None else now
        used = False
        with self._lock:
            for entry in self._entries.values():
                pool = entry.pool
                if pool is not None and (draws := pool.stats.hits + pool.stats.misses) != entry.draws:
                    entry.draws, entry.last_used, used = draws, now, True
            binds = sum(t.warm for t in self._config.tuples) > self._config.max_total_warm
            token_files = list(self._token_files.values())
        if used and binds:
            self._apply_floors()
        for token_file in token_files:
            token_file.refresh()

    # Status ------------------------------------------------------------------------------------------
    def statuses(self) -> list[TupleStatus]:
        with self._lock:
            entries = list(self._entries.values())
            floors = dict(self._floors)
        out = []
        for entry in entries:
            t = entry.config
            pool = entry.pool
            error, ready = _outcome(entry)
            out.append(TupleStatus(
                tenant=t.tenant, sha256=t.sha256, warm=pool.warm if pool else 0,
                target=floors.get(t.key, 0), ready=ready, error=error, state=_state(error, ready),
            ))
        return out

    def initial_loading(self) -> list[TupleKey]:
        """The tuples of the config the process started with that are still loading. Warm and failed are final
        here, and a tuple a later config removed or replaced no longer counts, so the list only shrinks."""
        with self._lock:
            if self._initial:
                self._initial = [e for e in self._initial
                                 if self._entries.get(e.config.key) is e and _state(*_outcome(e)) == "loading"]
            return [e.config.key for e in self._initial]

    @property
    def ready(self) -> bool:
        """Every configured tuple is loaded and prewarmed."""
        with self._lock:
            entries = list(self._entries.values())
        return all(e.pool is not None and e.pool.ready for e in entries)

    # Routing -----------------------------------------------------------------------------------------
    def route_cache(self) -> RouteCache:
        """A new cache of resolved targets, emptied whenever a route changes (held weakly here)."""
        cache = RouteCache(lambda: self.version)
        with self._lock:
            self._route_caches[id(cache)] = cache
        return cache

    def _routes_changed(self) -> None:
        """(under the lock) Stale every resolved target: bump the version and empty the route caches."""
        self.version += 1
        for cache in list(self._route_caches.values()):
            cache.clear()

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
        if (tenant, sha256) in self._entries:
            raise NotReady(f"module {short} of tenant {tenant} is still loading")
        raise UnknownModule(f"tenant {tenant} has no module {sha256}", tenant=tenant, sha256=sha256)

    def auth_for(self, tenant: str, sha256: str) -> TokenFile | None:
        """The tokens a call to the tuple needs (None: no token, or no such tuple)."""
        entry = self._entries.get((tenant, sha256))
        return None if entry is None else entry.auth

    def target(self, tenant: str, sha256: str, export: str) -> Target:
        """Resolve a call's target; raises the fault a caller should see for an unknown one."""
        version = self.version  # read first: a change that lands while resolving makes the target stale
        pool = self.pool_for(tenant, sha256)
        abi.lookup(pool.template.signatures, export)  # an unknown export is not a draw
        return Target(pool, export, (tenant, sha256, export), self.auth_for(tenant, sha256), version)

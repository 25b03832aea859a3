"""Warm instance pools per (tenant, module): O(1) acquire, recycle-on-release off the request path.

Reset is done by recycling: the used instance's Store is dropped (the pooling allocator returns
its slot and restores memory from the copy-on-write image) and a fresh instance is stamped from
the module's InstancePre on the refill thread. That restores memory, every global and every
table — exported or not — to their post-start values, and costs less than copying back a
snapshot of a memory larger than ~1 MiB (see `warmpool bench runtime`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from warmpool_runtime.errors import RuntimeFault
from warmpool_runtime.instance import Template, WarmInstance
from warmpool_runtime.stats import PoolStats

log = logging.getLogger(__name__)

InstanceFactory = Callable[[Template], WarmInstance]


class TuplePool:
    """The warm set of one tuple. `acquire` runs on one thread (the server's); release from any."""

    def __init__(self, template: Template, floor: int, refiller: Refiller,
                 factory: InstanceFactory = WarmInstance) -> None:
        self.template = template
        self.floor = floor
        self.stats = PoolStats()
        self.last_error: RuntimeFault | None = None
        self._warm: deque[WarmInstance] = deque()
        self._refiller = refiller
        self._factory = factory

    @property
    def warm(self) -> int:
        return len(self._warm)

    @property
    def ready(self) -> bool:
        return len(self._warm) >= self.floor and self.last_error is None

    def acquire(self) -> WarmInstance | None:
        """A warm instance (a hit), or None (a miss: the caller instantiates one, off this thread)."""
        try:
            instance = self._warm.popleft()
        except IndexError:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        self._refiller.request(self)
        return instance

    def take_uncounted(self) -> WarmInstance | None:
        """A warm instance for re-running a call that left the inline lane; not a new draw."""
        try:
            return self._warm.popleft()
        except IndexError:
            return None

    def release(self, instance: WarmInstance) -> None:
        """Hand the used instance to the refill thread; never returned to the warm set as is."""
        self._refiller.retire(self, instance)

    def instantiate(self) -> WarmInstance:
        start = time.perf_counter()
        instance = self._factory(self.template)
        self.stats.instantiate_seconds.observe(time.perf_counter() - start)
        return instance

    def refill_once(self) -> bool:
        """Add one instance if below the floor; False when full or when instantiation failed."""
        if len(self._warm) >= self.floor:
            return False
        try:
            instance = self.instantiate()
        except RuntimeFault as exc:
            self.stats.reset_failed += 1
            self.last_error = exc
            log.warning("refill of %s/%s failed: %s", self.template.tenant, self.template.sha256[:12], exc)
            return False
        except Exception as exc:
            self.stats.reset_failed += 1
            log.exception("refill of %s/%s crashed: %s", self.template.tenant, self.template.sha256[:12], exc)
            return False
        self.last_error = None
        self._warm.append(instance)
        return True

    def prewarm(self, n: int) -> int:
        """Synchronously fill up to `n` (capped by the floor); returns the warm count."""
        while len(self._warm) < min(n, self.floor) and self.refill_once():
            pass
        return len(self._warm)

    def drain(self) -> None:
        self._warm.clear()


class Refiller:
    """One background thread that drops used instances and tops pools back up to their floors."""

    def __init__(self, retry_seconds: float = 1.0, max_backlog: int = 32) -> None:
        self._max_backlog = max_backlog
        self._queue: queue.SimpleQueue[tuple[TuplePool | None, WarmInstance | None]] = queue.SimpleQueue()
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasm-refill", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put_nowait((None, None))
        self._thread.join(timeout=2.0)

    def request(self, pool: TuplePool) -> None:
        self._queue.put_nowait((pool, None))

    def retire(self, pool: TuplePool, instance: WarmInstance) -> None:
        if self._queue.qsize() < self._max_backlog:
            self._queue.put_nowait((pool, instance))
            return
        # Saturated: don't let queued used instances pin pool slots; the caller's reference is the
        # last one, so the slot frees as soon as it returns.
        if instance.grew:
            pool.stats.terminated["memory_grew"] += 1
        self._queue.put_nowait((pool, None))

    def _run(self) -> None:
        failing: set[TuplePool] = set()
        while not self._stop.is_set():
            try:
                pool, used = self._queue.get(timeout=self._retry if failing else None)
            except queue.Empty:
                # Periodic retry of pools whose refill failed (a module whose start traps, say).
                for failed in list(failing):
                    self._fill(failed, failing)
                continue
            if pool is None:  # stop() wakes us with an empty item
                continue
            if used is not None and used.grew:
                pool.stats.terminated["memory_grew"] += 1
            del used  # dropping the Store frees the instance slot for reuse
            self._fill(pool, failing)

    def _fill(self, pool: TuplePool, failing: set[TuplePool]) -> None:
        while pool.warm < pool.floor:
            if not pool.refill_once():
                if pool.warm < pool.floor:
                    failing.add(pool)
                return
        failing.discard(pool)

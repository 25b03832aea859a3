"""Warm instance pools per (tenant, module): O(1) acquire, reset on return, off the request path.

A pool keeps `floor` instances of its tuple: idle in the warm set or lent to a call. A draw with
none idle is a miss, served by a cold instance that is thrown away afterwards, as a pod with `w`
warm instances behaves in the fleet model the autoscaler sizes against.

Reset happens after the response is written (scheduled on the event loop), never before it:
- in place, when the module's whole mutable state is reachable from the host (see `layout`):
  copy the post-start memory image back and restore the exported mutable globals;
- otherwise by recycling: drop the used Store (the pooling allocator resets the slot from the
  copy-on-write image) and stamp a fresh instance from the InstancePre. That also restores
  unexported globals and tables, which no in-place restore could reach.
Cheap recycles run on the event loop (a handoff to another thread costs more in GIL traffic
than it saves); expensive ones, and refills after failures, run on the refill thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from warmpool_contract import SHORT_HASH
from warmpool_runtime.errors import RuntimeFault
from warmpool_runtime.instance import ResetMode, Snapshot, Template, WarmInstance
from warmpool_runtime.settings import RuntimeSettings
from warmpool_runtime.stats import PoolStats

log = logging.getLogger(__name__)

InstanceFactory = Callable[[Template], WarmInstance]
_DEFAULTS = RuntimeSettings()


class TuplePool:
    """The warm set of one tuple. `acquire` runs on the serving thread; `release` from any thread."""

    def __init__(self, template: Template, floor: int, refiller: Refiller, factory: InstanceFactory = WarmInstance,
                 loop_recycle_max_seconds: float = _DEFAULTS.loop_recycle_max_seconds) -> None:
        self.template = template
        self.floor = floor
        self.stats = PoolStats()
        self.last_error: RuntimeFault | None = None
        self.reset_mode = template.reset_mode
        self.snapshot: Snapshot | None = None
        """The post-start state an in-place reset restores; set when `reset_mode` becomes IN_PLACE."""
        self.instantiate_avg = 0.0
        self._loop_recycle_max_seconds = loop_recycle_max_seconds
        self._warm: deque[WarmInstance] = deque()
        self._lent = 0
        self._pending = 0  # slots being filled: an instance resetting or instantiating for the warm set
        self._returning = 0  # of those, slots whose instance came back from a call (still capacity)
        # The warm set and the counts move on the serving thread and the refill thread; every
        # check-then-add happens under this lock, so the pool never holds more than its floor.
        self._lock = threading.Lock()
        self._refiller = refiller
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reset on this loop's thread from now on (until then, on the refill thread)."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    @property
    def warm(self) -> int:
        return len(self._warm)

    @property
    def ready(self) -> bool:
        """Every slot of the floor holds an instance, idle, lent to a call, or being reset after one."""
        return len(self._warm) + self._lent + self._returning >= self.floor and self.last_error is None

    def missing(self) -> int:
        """Slots below the floor that nobody is filling yet."""
        return self.floor - len(self._warm) - self._lent - self._pending

    def acquire(self) -> WarmInstance | None:
        """An idle warm instance (a hit), or None (a miss: the caller instantiates a cold one)."""
        instance = self.take_uncounted()
        if instance is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return instance

    def take_uncounted(self) -> WarmInstance | None:
        """An idle instance without counting a draw (re-running a call that left the inline lane)."""
        with self._lock:
            if not self._warm:
                return None
            self._lent += 1
            return self._warm.pop()  # the most recently reset: its memory is still in cache

    def release(self, instance: WarmInstance) -> None:
        """Take an instance back after its call; it is reset before anyone sees it again."""
        if not instance.from_pool:
            # A cold instance served one miss and is thrown away: dropped by the caller as it returns,
            # at once, so a burst of misses never piles up pool slots waiting for the loop.
            if instance.grew:
                self.stats.terminated["memory_grew"] += 1
            if self.missing() > 0:
                self._refiller.request(self)
            return
        loop = self._loop
        if loop is None or (self.reset_mode is not ResetMode.IN_PLACE
                            and self.instantiate_avg > self._loop_recycle_max_seconds):
            self._refiller.retire(self, instance)
        elif threading.get_ident() == self._loop_thread:
            loop.call_soon(self.reset, instance)
        else:
            loop.call_soon_threadsafe(self.reset, instance)

    def reset(self, instance: WarmInstance) -> None:
        """Return a used instance to the warm set clean, or terminate it and instantiate a fresh one."""
        returned = instance.from_pool
        # The slot stays claimed while it is reset, so no refill races for it; a slot the floor lost
        # meanwhile (a resize down, a removal) is given up and the instance dropped.
        if not self._claim(returned=returned):
            return
        snapshot = self.snapshot  # set exactly when reset_mode is IN_PLACE
        if snapshot is not None and instance.restore(snapshot):
            self._settle(instance, returned)
            return
        if instance.grew:
            self.stats.terminated["memory_grew"] += 1
        del instance  # dropping the Store frees its slot for reuse
        if not self._fill(returned):
            self._refiller.request(self)

    def instantiate(self) -> WarmInstance:
        start = time.perf_counter()
        instance = self._factory(self.template)
        elapsed = time.perf_counter() - start
        self.stats.instantiate_seconds.observe(elapsed)
        self.instantiate_avg = elapsed if not self.instantiate_avg else 0.9 * self.instantiate_avg + 0.1 * elapsed
        return instance

    def _claim(self, returned: bool = False) -> bool:
        """Reserve one slot of the floor for an instance about to join the warm set.

        With `returned`, the slot is the one an instance held during its call: lent becomes pending.
        """
        with self._lock:
            if returned:
                self._lent -= 1
                if len(self._warm) + self._lent + self._pending >= self.floor:
                    return False
                self._returning += 1
            elif self.missing() <= 0:
                return False
            self._pending += 1
            return True

    def _settle(self, instance: WarmInstance | None, returned: bool = False) -> None:
        """Fill a claimed slot with `instance`, or give the claim up (None)."""
        with self._lock:
            self._pending -= 1
            if returned:
                self._returning -= 1
            if instance is not None:
                instance.from_pool = True
                self._warm.append(instance)

    def refill_once(self) -> bool:
        """Add one instance if below the floor; False when full or when instantiation failed."""
        return self._claim() and self._fill(returned=False)

    def _fill(self, returned: bool) -> bool:
        """Instantiate into a claimed slot; on failure the claim is given up and False returned."""
        try:
            instance = self.instantiate()
            if self.reset_mode is ResetMode.TRY_IN_PLACE:
                self._choose_reset(instance)
        except RuntimeFault as exc:
            self._settle(None, returned)
            self.stats.reset_failed += 1
            self.last_error = exc
            log.warning("refill of %s/%s failed: %s", self.template.tenant, self.template.sha256[:SHORT_HASH], exc)
            return False
        except Exception as exc:
            self._settle(None, returned)
            self.stats.reset_failed += 1
            log.exception("refill of %s/%s crashed: %s", self.template.tenant, self.template.sha256[:SHORT_HASH], exc)
            return False
        self.last_error = None
        self._settle(instance, returned)
        return True

    def _choose_reset(self, instance: WarmInstance) -> None:
        """Reset in place only where it is cheaper than recycling: copying a large memory back costs
        more than letting the pooling allocator reset a slot and instantiating anew."""
        snapshot = instance.snapshot()
        restore = min(_timed(instance.restore, snapshot) for _ in range(3))
        instantiate = min(_timed(self.instantiate) for _ in range(3))
        if restore < instantiate:
            self.snapshot = snapshot
            self.reset_mode = ResetMode.IN_PLACE
        else:
            self.reset_mode = ResetMode.RECYCLE
            log.info("%s/%s: recycling (%.0f µs) is cheaper than an in-place reset (%.0f µs)",
                     self.template.tenant, self.template.sha256[:SHORT_HASH], instantiate * 1e6, restore * 1e6)

    def resize(self, floor: int, evicting: bool = False) -> int:
        """Change the warm floor; idle instances over it are dropped at once (counted as evictions when
        `evicting`, the cap taking them for other tuples), lent ones as they return. Returns how many
        were dropped; a raised floor is filled by the refill thread."""
        with self._lock:
            self.floor = floor
            excess = min(len(self._warm), len(self._warm) + self._lent + self._pending - floor)
            dropped = [self._warm.popleft() for _ in range(max(0, excess))]  # the coldest first
        if dropped and evicting:
            self.stats.evictions += len(dropped)
        if self.missing() > 0:
            self._refiller.request(self)
        return len(dropped)

    @property
    def busy(self) -> bool:
        """A call holds one of its instances, or one is being reset after a call."""
        return self.stats.in_flight > 0 or self._lent > 0 or self._returning > 0

    def drain(self) -> None:
        """Drop every idle instance and keep none from now on (a removed tuple)."""
        with self._lock:
            self.floor = 0
            self._warm.clear()


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


class Refiller:
    """A background thread for resets that must not run on the event loop, and refills to the floor."""

    def __init__(self, retry_seconds: float = 1.0) -> None:
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
        self._queue.put_nowait((pool, instance))

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
            if used is not None:
                pool.reset(used)
                del used
            self._fill(pool, failing)

    def _fill(self, pool: TuplePool, failing: set[TuplePool]) -> None:
        while pool.missing() > 0:
            if not pool.refill_once():
                if pool.missing() > 0:
                    failing.add(pool)
                return
        failing.discard(pool)

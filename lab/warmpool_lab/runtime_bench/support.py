"""Helpers shared by the measurements: timing without the collector, event loops, waits, side pools, cores."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from warmpool_runtime.instance import Template
from warmpool_runtime.pool import Refiller, TuplePool

T = TypeVar("T")


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Keep the cyclic collector out of a timed section."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function on a fresh event loop of the kind the server uses."""
    import uvloop

    result: T = uvloop.run(main())
    return result




def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.001)


def side_pool(template: Template, floor: int) -> tuple[TuplePool, Refiller]:
    """A pool of its own, with a refill thread that is not started (the caller decides when)."""
    refiller = Refiller()
    return TuplePool(template, floor, refiller), refiller


def prewarm(pool: TuplePool, n: int) -> None:
    """Fill a side pool on this thread (its refill thread is not running): `n` instances, at most its floor."""
    while pool.warm < min(n, pool.floor) and pool.refill_once():
        pass


def free_pool(pool: TuplePool, refiller: Refiller) -> None:
    """Hand every instance back to the engine: let the refill thread reset what was retired, then drop all.

    The refill queue holds (pool, instance) pairs; until it is drained, those instances keep their
    Stores, and so their pooling-allocator slots, alive.
    """
    refiller.start()
    try:
        wait_until(lambda: pool.warm >= pool.floor, 10.0, "the refill thread to take back retired instances")
    finally:
        refiller.stop()
    pool.drain()
    gc.collect()




def cores() -> tuple[int | None, int | None]:
    """(server core, client core): two distinct CPUs this process may use, if there are two."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)

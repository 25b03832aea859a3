"""Warm pool behaviour with a real wasmtime: hits and misses, reset on return, termination, caps."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import invoke, settle, wait_until
from tests.runtime.wasm import IN_PLACE, STATEFUL, tuple_entry, write_module
from warmpool_runtime.errors import GuestTrap, InstantiateFailed
from warmpool_runtime.instance import ResetMode, Template, WarmInstance

pytestmark = pytest.mark.component
ADMIT_ALL = {"tenantMaxCalls": 1000, "maxQueuedCalls": 1000}
"""Worker-lane bounds that admit every call of a test that floods one tuple (by default most would be shed)."""


async def test_draws_are_hits_while_warm_then_misses_when_empty(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(warm=2))
    _, sha = stateful
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.warm == 2
    first, second = pool.acquire(), pool.acquire()
    assert first is not None
    assert second is not None
    assert pool.acquire() is None  # empty: a miss
    assert (pool.stats.hits, pool.stats.misses) == (2, 1)
    pool.release(first)
    pool.release(second)
    await settle(lambda: pool.warm == 2)
    assert await invoke(runtime, "acme", sha, "add", [2, 3]) == [5]
    assert pool.stats.hits == 3


async def test_every_acquire_sees_memory_globals_and_tables_as_after_start(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(warm=1))
    _, sha = stateful
    for _ in range(5):
        assert await invoke(runtime, "acme", sha, "peek", []) == [0]
        assert await invoke(runtime, "acme", sha, "counter", []) == [1]
        assert await invoke(runtime, "acme", sha, "slot_is_null", []) == [1]
        await invoke(runtime, "acme", sha, "poke", [1234])
        await invoke(runtime, "acme", sha, "fill_slot", [])
        await settle(lambda: runtime.registry.pool_for("acme", sha).warm == 1)


def test_a_mutated_instance_is_never_handed_out_again(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(warm=1))
    _, sha = stateful
    pool = runtime.registry.pool_for("acme", sha)
    used = pool.acquire()
    assert used is not None
    used.call_numeric("poke", [99], pool.template.deadline_ticks)
    used.call_numeric("counter", [], pool.template.deadline_ticks)
    pool.release(used)
    wait_until(lambda: pool.warm == 1)
    fresh = pool.acquire()
    assert fresh is not None
    assert fresh is not used
    assert fresh.call_numeric("peek", [], pool.template.deadline_ticks) == [0]
    assert fresh.call_numeric("counter", [], pool.template.deadline_ticks) == [1]


def test_an_instance_whose_memory_grew_is_terminated(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(warm=1))
    _, sha = stateful
    pool = runtime.registry.pool_for("acme", sha)
    used = pool.acquire()
    assert used is not None
    assert used.call_numeric("grow", [1], pool.template.deadline_ticks) == [1]
    assert used.grew
    pool.release(used)
    wait_until(lambda: pool.stats.terminated["memory_grew"] == 1 and pool.warm == 1)
    fresh = pool.acquire()
    assert fresh is not None
    assert not fresh.grew
    assert fresh.memory_len() == 65536


def test_a_failing_reset_never_poisons_the_pool(make_runtime, one_tuple, stateful) -> None:
    # The factory seam stands in for an instantiation that fails (slot exhaustion, a flaky start):
    # wasmtime cannot be made to fail on demand otherwise. The second and third recycles fail.
    calls = {"n": 0}

    def flaky(template: Template) -> WarmInstance:
        calls["n"] += 1
        if calls["n"] in (4, 5):
            raise InstantiateFailed("injected instantiation failure")
        return WarmInstance(template)

    runtime = make_runtime(one_tuple(warm=1), factory=flaky)  # calls 1 (load check) and 2 (prewarm)
    _, sha = stateful
    pool = runtime.registry.pool_for("acme", sha)
    used = pool.acquire()
    assert used is not None
    pool.release(used)  # refill: call 3 succeeds
    wait_until(lambda: pool.warm == 1)
    used = pool.acquire()
    assert used is not None
    pool.release(used)  # refill: calls 4 and 5 fail, then the retry succeeds
    wait_until(lambda: pool.stats.reset_failed >= 1)
    wait_until(lambda: pool.warm == 1 and pool.ready)
    assert pool.stats.reset_failed == 2
    fresh = pool.acquire()
    assert fresh is not None
    assert fresh.call_numeric("counter", [], pool.template.deadline_ticks) == [1]


def test_readiness_holds_while_a_used_instance_is_recycled(make_runtime, one_tuple, stateful) -> None:
    # A slow instantiation (the factory seam sleeps) stretches the recycle that follows each call:
    # the slot still holds capacity, so a readiness probe then must not see the pod as unready.
    gate = threading.Event()

    def slow(template: Template) -> WarmInstance:
        if gate.is_set():
            time.sleep(0.05)
        return WarmInstance(template)

    runtime = make_runtime(one_tuple(warm=2), factory=slow)
    _, sha = stateful
    pool = runtime.registry.pool_for("acme", sha)
    gate.set()
    seen = []
    for _ in range(3):
        used = pool.acquire()
        assert used is not None
        pool.release(used)  # recycled on the refill thread (no loop attached)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            seen.append(pool.ready)
    wait_until(lambda: pool.warm == 2)
    assert all(seen)
    assert pool.ready


HIDDEN_COUNTER = """(module
  (type $unary (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (global $calls (mut i32) (i32.const 0))
  (elem (i32.const 0) $double)
  (func $double (type $unary) (i32.mul (local.get 0) (i32.const 2)))
  (func (export "count") (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (global.get $calls))
  (func (export "apply") (param i32) (result i32)
    (call_indirect (type $unary) (local.get 0) (i32.const 0))))"""


async def test_a_guest_hiding_its_global_behind_a_read_only_table_is_reset_in_place(make_runtime, tmp_path) -> None:
    # As a compiled guest keeps its `__stack_pointer` to itself and calls through a function table:
    # the runtime exports the global under a reserved name, so the in-place reset restores it.
    path, sha = write_module(tmp_path, HIDDEN_COUNTER)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1)]})
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.template.reset_mode is ResetMode.TRY_IN_PLACE
    assert pool.template.in_place_globals == ("__warmpool_global_0",)
    assert set(pool.template.signatures) == {"count", "apply"}  # the reserved export is not callable
    for _ in range(5):
        assert await invoke(runtime, "acme", sha, "count", []) == [1]
        await settle(lambda: pool.warm == 1)
    assert await invoke(runtime, "acme", sha, "apply", [21]) == [42]


def test_max_total_warm_caps_the_sum_across_tuples(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    runtime = make_runtime({
        "maxTotalWarm": 5,
        "tuples": [tuple_entry("acme", path, sha, 4), tuple_entry("beta", path, sha, 4)],
    })
    acme, beta = runtime.registry.pool_for("acme", sha), runtime.registry.pool_for("beta", sha)
    assert (acme.floor, beta.floor) == (4, 1)
    for _ in range(3):
        for pool in (acme, beta):
            instance = pool.acquire()
            if instance is not None:
                pool.release(instance)
        wait_until(lambda: acme.warm == 4 and beta.warm == 1)
        assert acme.warm + beta.warm <= 5


async def test_zero_warm_disables_pooling(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(warm=0))
    _, sha = stateful
    pool = runtime.registry.pool_for("acme", sha)
    assert runtime.registry.ready
    assert pool.warm == 0
    assert await invoke(runtime, "acme", sha, "add", [1, 1]) == [2]
    assert await invoke(runtime, "acme", sha, "add", [2, 2]) == [4]
    assert (pool.stats.hits, pool.stats.misses, pool.warm) == (0, 2, 0)


async def test_stores_are_never_shared_between_concurrent_calls(make_runtime, stateful) -> None:
    path, sha = stateful
    # inlineBudgetMs 0 sends every call to the worker threads, so calls really run concurrently.
    runtime = make_runtime({"settings": {"inlineBudgetMs": 0, "workers": 4, **ADMIT_ALL},
                            "tuples": [tuple_entry("acme", path, sha, 4)]})
    # Each call bumps a mutable global once: an instance shared by two calls, or reused without a
    # reset, would answer 2 or more.
    results = await asyncio.gather(*(invoke(runtime, "acme", sha, "counter", []) for _ in range(300)))
    assert results == [[1]] * 300
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.stats.hits + pool.stats.misses == 300


async def test_in_place_reset_restores_memory_and_globals_and_reuses_the_instance(make_runtime, tmp_path) -> None:
    path, sha = write_module(tmp_path, IN_PLACE)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1)]})
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.template.in_place_globals == ("count", "scale")
    assert pool.reset_mode is ResetMode.IN_PLACE  # measured cheaper than recycling a one-page guest
    seen = set()
    for _ in range(4):
        await settle(lambda: pool.warm == 1)
        seen.add(id(pool._warm[0]))
        assert await invoke(runtime, "acme", sha, "peek", []) == [42]
        await asyncio.sleep(0)  # the reset runs on the loop right after the call
        assert await invoke(runtime, "acme", sha, "counter", []) == [1]
        await asyncio.sleep(0)
        assert await invoke(runtime, "acme", sha, "bump_scale", []) == [3.0]
        await asyncio.sleep(0)
        await invoke(runtime, "acme", sha, "poke", [7])
        await asyncio.sleep(0)
        with pytest.raises(GuestTrap):
            await invoke(runtime, "acme", sha, "trap", [])
        await asyncio.sleep(0)
    assert len(seen) == 1  # the same instance, reset in place every time
    assert pool.stats.terminated["memory_grew"] == 0
    assert await invoke(runtime, "acme", sha, "grow", [1]) == [1]
    await asyncio.sleep(0)
    await settle(lambda: pool.warm == 1)
    assert pool.stats.terminated["memory_grew"] == 1
    assert id(pool._warm[0]) not in seen  # grown: replaced, not restored
    assert await invoke(runtime, "acme", sha, "peek", []) == [42]


async def test_releases_from_worker_threads_are_reset_on_the_loop(make_runtime, tmp_path) -> None:
    path, sha = write_module(tmp_path, IN_PLACE)
    runtime = make_runtime({"settings": {"inlineBudgetMs": 0, **ADMIT_ALL},
                            "tuples": [tuple_entry("acme", path, sha, 2)]})
    results = await asyncio.gather(*(invoke(runtime, "acme", sha, "counter", []) for _ in range(100)))
    assert results == [[1]] * 100
    await asyncio.sleep(0.01)
    pool = runtime.registry.pool_for("acme", sha)
    await settle(lambda: pool.warm == 2)
    assert pool.ready
    await asyncio.sleep(0.05)  # refills and resets racing on two threads never overfill the pool
    assert (pool.warm, pool.missing()) == (2, 0)


async def test_the_pool_never_holds_more_than_its_floor(make_runtime, tmp_path) -> None:
    path, sha = write_module(tmp_path, IN_PLACE)
    runtime = make_runtime({"settings": {"inlineBudgetMs": 0}, "tuples": [tuple_entry("acme", path, sha, 3)]})
    pool = runtime.registry.pool_for("acme", sha)
    for _ in range(20):
        await asyncio.gather(*(invoke(runtime, "acme", sha, "counter", []) for _ in range(12)))
        assert pool.warm <= pool.floor
    await settle(lambda: pool.warm == 3)
    await asyncio.sleep(0.05)
    assert pool.warm == 3

"""Deadlines inside host calls: a guest asleep in WASI is interrupted at its deadline; the ticker parks when idle."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import wasmtime

from tests.runtime.conftest import invoke, settle
from tests.runtime.wasm import NAP_C, SLEEPY, SLEEPY_START, STATEFUL, build_c, tuple_entry, write_module
from warmpool_runtime.errors import DeadlineExceeded, InstantiateFailed
from warmpool_runtime.instance import WarmInstance

pytestmark = pytest.mark.component

HANG_GUARD = 30.0
"""Seconds before a test that should take milliseconds is declared hung: the sleeps it relies on being cut
short are a minute long, so only a deadline that does not hold can reach it."""
MINUTE_MS = 60_000


async def test_a_wasi_sleep_past_the_deadline_answers_408_and_frees_the_worker(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, SLEEPY)
    runtime = make_runtime({"settings": {"workers": 1}, "tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=300)]})
    with pytest.raises(DeadlineExceeded) as interrupted:
        await asyncio.wait_for(invoke(runtime, "acme", sha, "sleep_ms", [MINUTE_MS]), HANG_GUARD)
    assert interrupted.value.status == 408
    # The only worker is free again: the next call runs at once (were the sleep not cut, it would wait
    # a minute for the worker and then be refused).
    assert await asyncio.wait_for(invoke(runtime, "acme", sha, "ping", []), HANG_GUARD) == [1]
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.stats.invocations["deadline_exceeded"] == 1


async def test_a_sleep_that_ends_before_the_deadline_sleeps_its_whole_time(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, SLEEPY)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=MINUTE_MS)]})
    # The guest checks on its own WASI clock that it did not wake early (it answers 2 then).
    assert await invoke(runtime, "acme", sha, "sleep_ms", [20]) == [1007]
    assert await invoke(runtime, "acme", sha, "sleep_until_ms", [20]) == [1007]


async def test_an_absolute_sleep_past_the_deadline_answers_408(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, SLEEPY)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=300)]})
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(invoke(runtime, "acme", sha, "sleep_until_ms", [MINUTE_MS]), HANG_GUARD)


async def test_a_c_guest_in_nanosleep_answers_408_and_the_next_call_runs(make_runtime, tmp_path: Path) -> None:
    path, sha = build_c(tmp_path, NAP_C, "nap")
    runtime = make_runtime({"settings": {"workers": 1}, "tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=500)]})
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(invoke(runtime, "acme", sha, "nap", [MINUTE_MS]), HANG_GUARD)
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(invoke(runtime, "acme", sha, "doze", [60]), HANG_GUARD)
    assert await asyncio.wait_for(invoke(runtime, "acme", sha, "nap", [1]), HANG_GUARD) == [7]


def test_a_start_function_that_sleeps_fails_to_load_at_its_deadline(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, SLEEPY_START)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=200)]}, wait_ready=False)
    error = runtime.registry.load_errors[("acme", sha)]
    assert error.code == "instantiate_failed"
    assert "deadline" in error.message


async def test_the_epoch_ticker_parks_while_idle_and_deadlines_still_hold(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    runtime = make_runtime({"settings": {"epochIdleParkMs": 5},
                            "tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=100)]})
    clock = runtime.clock
    pool = runtime.registry.pool_for("acme", sha)
    # Parked with the pool full: a refill still instantiating would wake the ticker (rightly).
    await settle(lambda: pool.warm >= 1 and clock.parked)
    epoch = clock.epoch
    await asyncio.sleep(0.05)
    assert clock.parked
    assert clock.epoch == epoch  # no ticks while nothing runs
    assert await invoke(runtime, "acme", sha, "add", [1, 2]) == [3]
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(invoke(runtime, "acme", sha, "spin", []), HANG_GUARD)
    assert clock.epoch > epoch
    await settle(lambda: clock.parked)  # and parks again


async def test_a_parked_ticker_wakes_for_a_start_function(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    runtime = make_runtime({"settings": {"epochIdleParkMs": 5},
                            "tuples": [tuple_entry("acme", path, sha, 1, timeoutMs=100)]})
    await settle(lambda: runtime.clock.parked)
    template = runtime.registry.pool_for("acme", sha).template
    spinning = wasmtime.Module(runtime.engine, """(module (func $s (loop $l (br $l))) (start $s))""")
    template = replace(template, pre=wasmtime.Linker(runtime.engine).instantiate_pre(spinning), signatures={},
                       has_memory=False)
    loop = asyncio.get_running_loop()
    with pytest.raises(InstantiateFailed):
        await asyncio.wait_for(loop.run_in_executor(None, WarmInstance, template), HANG_GUARD)

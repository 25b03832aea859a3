"""A guest that traps, loops, recurses, or eats memory gets a clear error and harms no one else."""

from __future__ import annotations

import asyncio

import pytest

from tests.runtime.conftest import call, invoke, settle
from warmpool_runtime import errors

pytestmark = pytest.mark.component


async def test_trap_reports_its_code(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple())
    _, sha = stateful
    with pytest.raises(errors.GuestTrap) as caught:
        await invoke(runtime, "acme", sha, "trap", [])
    assert caught.value.code == "guest_trap"
    assert caught.value.details["trap"] == "unreachable"
    with pytest.raises(errors.GuestTrap) as caught:
        await invoke(runtime, "acme", sha, "divide", [1, 0])
    assert caught.value.details["trap"] == "integer_division_by_zero"
    assert runtime.registry.pool_for("acme", sha).stats.traps == {"unreachable": 1, "integer_division_by_zero": 1}


async def test_infinite_loop_is_stopped_by_the_deadline(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(timeoutMs=50))
    _, sha = stateful
    with pytest.raises(errors.DeadlineExceeded):
        await invoke(runtime, "acme", sha, "spin", [])
    assert await invoke(runtime, "acme", sha, "add", [1, 2]) == [3]


async def test_runaway_guest_does_not_stop_others_from_being_served(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(warm=4, timeoutMs=400))
    _, sha = stateful
    spinning = asyncio.ensure_future(invoke(runtime, "acme", sha, "spin", []))
    await asyncio.sleep(0.01)  # let it leave the inline lane for a worker thread
    served = [await invoke(runtime, "acme", sha, "add", [i, i]) for i in range(20)]
    assert not spinning.done()  # the 20 calls completed while the runaway guest was still running
    assert served == [[2 * i] for i in range(20)]
    with pytest.raises(errors.DeadlineExceeded):
        await spinning


async def test_an_export_leaves_the_inline_lane_only_after_overrunning_it_repeatedly(
        make_runtime, one_tuple, stateful) -> None:
    # One overrun may be the server thread losing its core; only repeated ones move an export to the
    # worker threads, where every call pays a thread handoff.
    runtime = make_runtime(one_tuple(timeoutMs=5000))
    _, sha = stateful
    long_run = 50_000_000  # far past the 2 ms inline budget
    pool = runtime.registry.pool_for("acme", sha)

    async def drawn_warm(export: str, args: list[int]) -> object:
        await settle(lambda: pool.warm == pool.floor)  # a draw that missed would skip the inline lane
        return call(runtime, "acme", sha, export, args)

    overran = await drawn_warm("work", [long_run])
    assert isinstance(overran, asyncio.Future)  # interrupted inline, re-run whole on a worker
    assert await overran == [long_run]
    assert await drawn_warm("work", [1]) == [1]  # still inline

    for _ in range(runtime.config.settings.slow_strikes):
        overran = await drawn_warm("work", [long_run])
        assert isinstance(overran, asyncio.Future)
        assert await overran == [long_run]
    on_worker = await drawn_warm("work", [1])
    assert isinstance(on_worker, asyncio.Future)
    assert await on_worker == [1]
    assert await drawn_warm("add", [1, 2]) == [3]  # other exports stay inline


async def test_fuel_limit_stops_a_loop(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(fuel=10_000, timeoutMs=5000))  # a fuel limit turns metering on
    _, sha = stateful
    with pytest.raises(errors.FuelExhausted):
        await invoke(runtime, "acme", sha, "spin", [])
    assert await invoke(runtime, "acme", sha, "add", [2, 2]) == [4]


async def test_deep_recursion_hits_the_stack_limit(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple())
    _, sha = stateful
    with pytest.raises(errors.GuestTrap) as caught:
        await invoke(runtime, "acme", sha, "recurse", [0])
    assert caught.value.details["trap"] == "stack_overflow"


async def test_memory_grow_past_the_limit_is_refused(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple(memoryBytes=65536))  # the module starts at its one-page limit
    _, sha = stateful
    # The store limit makes memory.grow return -1, as the Wasm spec requires; the call itself succeeds.
    assert await invoke(runtime, "acme", sha, "grow", [10]) == [-1]
    # A guest that traps because its growth was refused, at its limit, is told so.
    with pytest.raises(errors.MemoryLimitExceeded) as caught:
        await invoke(runtime, "acme", sha, "grow_or_trap", [1])
    assert caught.value.status == 413
    assert caught.value.details["trap"] == "unreachable"
    assert await invoke(runtime, "acme", sha, "add", [1, 1]) == [2]


async def test_bad_arguments_are_rejected_before_the_guest_runs(make_runtime, one_tuple, stateful) -> None:
    runtime = make_runtime(one_tuple())
    _, sha = stateful
    for args in ([1], [1, 2, 3], ["1", 2], [1.5, 2], [True, 1], [2**32, 0]):
        with pytest.raises(errors.BadArguments):
            await invoke(runtime, "acme", sha, "add", args)
    assert await invoke(runtime, "acme", sha, "add", [2**32 - 1, 1]) == [0]  # unsigned input wraps
    assert await invoke(runtime, "acme", sha, "add64", [2**62, 2**62]) == [-(2**63)]
    assert await invoke(runtime, "acme", sha, "scale", [1.5, 2.0]) == [3.0]
    with pytest.raises(errors.UnknownExport):
        await invoke(runtime, "acme", sha, "nope", [])
    with pytest.raises(errors.UnknownTenant):
        await invoke(runtime, "other", sha, "add", [1, 2])
    with pytest.raises(errors.UnknownModule):
        await invoke(runtime, "acme", "0" * 64, "add", [1, 2])
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.stats.invocations["bad_arguments"] == 6


async def test_guests_that_can_block_in_a_host_call_never_run_on_the_server_thread(make_runtime, tmp_path) -> None:
    # The example's hold(ms) sleeps in WASI poll_oneoff, where no epoch deadline can interrupt it:
    # on the server thread it would stall every other request for the whole sleep.
    from warmpool_runtime.examples import build_example

    path, sha = build_example(tmp_path)
    runtime = make_runtime({"tuples": [{"tenant": "acme", "module": {"sha256": sha, "source": {"path": str(path)}},
                                        "warmInstancesPerTuple": 4}]})
    pool = runtime.registry.pool_for("acme", sha)
    assert not pool.template.inline_ok
    pending = call(runtime, "acme", sha, "hold", [300])
    assert isinstance(pending, asyncio.Future)  # handed to a worker, not completed inline
    others = [asyncio.ensure_future(invoke(runtime, "acme", sha, "hold", [300])) for _ in range(3)]
    await asyncio.sleep(0)
    assert pool.stats.in_flight == 4  # all four sleeping at once, on worker threads
    assert await invoke(runtime, "acme", sha, "add", [1, 2]) == [3]  # served meanwhile
    assert [await pending, *[await o for o in others]] == [[0]] * 4

"""The worker lane between tenants: round-robin queues, worker shares, per-tenant and pod-wide bounds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runtime.conftest import call, invoke, settle
from tests.runtime.wasm import SLEEPY, tuple_entry, write_module
from warmpool_runtime.errors import DeadlineExceeded, Saturated, TenantLimit
from warmpool_runtime.lanes import CallResult, PendingCall, WorkerLane
from warmpool_runtime.service import Runtime
from warmpool_runtime.settings import RuntimeSettings

HANG_GUARD = 30.0
"""Seconds before a test is declared hung (a liveness bound, never the assertion)."""
MINUTE_MS = 60_000


def load_of(lane: WorkerLane, tenant: str) -> tuple[int, int]:
    """(running, queued) of one tenant."""
    for load in lane.load():
        if load.tenant == tenant:
            return load.running, load.queued
    return 0, 0


class Gate:
    """Jobs that block until opened, recording the order they ran in."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.order: list[str] = []

    def job(self, name: str, wait: bool = False) -> Callable[[], CallResult]:
        def run() -> CallResult:
            self.order.append(name)
            if wait:
                self.opened.wait(HANG_GUARD)
            return [0]
        return run


def submit(lane: WorkerLane, tenant: str, run: Callable[[], CallResult]) -> PendingCall:
    lane.admit(tenant, 1)
    return lane.submit(tenant, run, asyncio.get_running_loop(), max_wait=HANG_GUARD, retry_after=1)


@pytest.mark.unit
async def test_a_free_worker_serves_the_tenants_round_robin() -> None:
    lane = WorkerLane(RuntimeSettings(workers=1), ["a", "b"])
    gate = Gate()
    try:
        first = submit(lane, "a", gate.job("a-first", wait=True))
        await settle(lambda: gate.order == ["a-first"])
        backlog = [submit(lane, "a", gate.job(f"a{i}")) for i in range(5)]
        other = submit(lane, "b", gate.job("b"))
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(first, *backlog, other), HANG_GUARD)
        # One FIFO would have run b last; per-tenant queues run it as soon as a worker is free.
        assert gate.order == ["a-first", "b", "a0", "a1", "a2", "a3", "a4"]
    finally:
        gate.opened.set()
        lane.close()


@pytest.mark.unit
async def test_one_tenant_never_holds_more_than_its_share_of_the_workers() -> None:
    lane = WorkerLane(RuntimeSettings(workers=3))  # share: all but one worker
    gate = Gate()
    try:
        calls = [submit(lane, "a", gate.job(f"a{i}", wait=True)) for i in range(5)]
        await settle(lambda: load_of(lane, "a") == (2, 3))
        other = submit(lane, "b", gate.job("b"))
        await asyncio.wait_for(other, HANG_GUARD)  # ran on the worker "a" may not take
        assert load_of(lane, "a") == (2, 3)
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(*calls), HANG_GUARD)
    finally:
        gate.opened.set()
        lane.close()


@pytest.mark.unit
async def test_a_tenant_past_its_bound_is_refused_with_retry_after_and_others_are_not() -> None:
    lane = WorkerLane(RuntimeSettings(workers=2, tenant_max_calls=3))
    gate = Gate()
    try:
        calls = [submit(lane, "a", gate.job(f"a{i}", wait=True)) for i in range(3)]
        with pytest.raises(TenantLimit) as refused:
            lane.admit("a", 4)
        assert refused.value.status == 429
        assert refused.value.retry_after_seconds == 4
        lane.admit("b", 1)  # another tenant is admitted
        assert lane.load()[0].shed == {"tenant_limit": 1}
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(*calls), HANG_GUARD)
    finally:
        gate.opened.set()
        lane.close()


@pytest.mark.unit
async def test_a_backlog_with_every_worker_busy_saturates_the_pod_until_it_drains() -> None:
    lane = WorkerLane(RuntimeSettings(workers=2, tenant_max_workers=1, max_queued_calls=4, queue_high_water=0.5,
                                      queue_low_water=0.25))
    gate = Gate()
    try:
        running = [submit(lane, "a", gate.job("a", wait=True))]
        queued = [submit(lane, "a", gate.job(f"a{i}")) for i in range(3)]  # waits for a's own share
        await settle(lambda: load_of(lane, "a") == (1, 3))
        assert not lane.saturated  # a worker is idle: only a's share holds these back
        running.append(submit(lane, "b", gate.job("b", wait=True)))
        await settle(lambda: load_of(lane, "b") == (1, 0))
        assert lane.saturated  # every worker busy, 3 queued >= high water 2
        queued.append(submit(lane, "c", gate.job("c")))
        with pytest.raises(Saturated) as refused:
            lane.admit("d", 2)
        assert refused.value.status == 503
        assert refused.value.retry_after_seconds == 2
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(*running, *queued), HANG_GUARD)
        assert not lane.saturated
    finally:
        gate.opened.set()
        lane.close()


@pytest.mark.unit
async def test_a_call_no_worker_takes_within_its_deadline_is_refused_and_gives_its_instance_back() -> None:
    lane = WorkerLane(RuntimeSettings(workers=1))
    gate = Gate()
    given_back = threading.Event()
    try:
        first = submit(lane, "a", gate.job("a-first", wait=True))
        await settle(lambda: gate.order == ["a-first"])
        loop = asyncio.get_running_loop()
        lane.admit("a", 3)
        waiting = lane.submit("a", gate.job("a-late"), loop, max_wait=0.05, retry_after=3, abandon=given_back.set)
        with pytest.raises(TenantLimit) as refused:  # "a" holds its whole share of the workers
            await asyncio.wait_for(waiting, HANG_GUARD)
        assert refused.value.retry_after_seconds == 3
        assert given_back.is_set()
        assert load_of(lane, "a") == (1, 0)
        gate.opened.set()
        await asyncio.wait_for(first, HANG_GUARD)
        assert gate.order == ["a-first"]  # the refused call never ran
    finally:
        gate.opened.set()
        lane.close()


@pytest.mark.component
async def test_another_tenants_call_runs_while_eight_guests_of_one_tenant_are_stuck(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, SLEEPY)
    runtime = make_runtime({"settings": {"workers": 4}, "tuples": [
        tuple_entry("alpha", path, sha, 2, timeoutMs=2000), tuple_entry("beta", path, sha, 2, timeoutMs=2000)]})
    stuck = [call(runtime, "alpha", sha, "sleep_ms", [MINUTE_MS]) for _ in range(8)]
    lane = runtime.lanes.workers
    await settle(lambda: load_of(lane, "alpha") == (3, 5))
    # beta's guest imports poll_oneoff, so its call needs a worker too.
    assert await asyncio.wait_for(invoke(runtime, "beta", sha, "ping", []), HANG_GUARD) == [1]
    assert await asyncio.wait_for(invoke(runtime, "beta", sha, "sleep_ms", [1]), HANG_GUARD) == [1007]
    assert not any(f.done() for f in stuck if isinstance(f, asyncio.Future))  # alpha's are still asleep
    outcomes = await asyncio.wait_for(asyncio.gather(*stuck, return_exceptions=True), HANG_GUARD)
    # Each either slept to its deadline, or waited for one of alpha's workers as long and was refused.
    assert all(isinstance(outcome, DeadlineExceeded | TenantLimit) for outcome in outcomes)
    assert sum(isinstance(outcome, DeadlineExceeded) for outcome in outcomes) >= 3


@pytest.mark.unit
async def test_a_pod_configured_for_one_tenant_gives_it_every_worker() -> None:
    lane = WorkerLane(RuntimeSettings(workers=3), ["a"])  # a dedicated pool's pod: no one to keep a worker for
    gate = Gate()
    try:
        calls = [submit(lane, "a", gate.job(f"a{i}", wait=True)) for i in range(5)]
        await settle(lambda: load_of(lane, "a") == (3, 2))
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(*calls), HANG_GUARD)
    finally:
        gate.opened.set()
        lane.close()


@pytest.mark.unit
async def test_a_tenants_worker_share_follows_the_tenants_the_pod_serves_now() -> None:
    lane = WorkerLane(RuntimeSettings(workers=3), ["a"])
    gate = Gate()
    try:
        lane.set_tenants(["a", "b"])  # a second tenant joined (live config): one worker is kept for the others
        calls = [submit(lane, "a", gate.job(f"a{i}", wait=True)) for i in range(5)]
        await settle(lambda: load_of(lane, "a") == (2, 3))
        lane.set_tenants(["a"])  # alone again: every worker, queued calls start at once
        await settle(lambda: load_of(lane, "a") == (3, 2))
        assert {load.tenant for load in lane.load()} == {"a"}  # an idle tenant no longer served is forgotten
        gate.opened.set()
        await asyncio.wait_for(asyncio.gather(*calls), HANG_GUARD)
    finally:
        gate.opened.set()
        lane.close()

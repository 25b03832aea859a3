"""Fleet reconciliations asked for together share one: N members created at once reconcile the fleet
about twice, not N times (each reconciliation lists every member and reads every fleet pod)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import TEST_CONFIG, make_client
from tests.operator.test_component_runtimefleet import member
from warmpool_operator.controller import Controller
from warmpool_operator.kinds import RUNTIMEFLEETS, WARMPOOLS
from warmpool_operator.metrics import OperatorMetrics
from warmpool_operator.probe import HttpProber

pytestmark = pytest.mark.component

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fleet_runs(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("warmpool_operator_reconcile_duration_seconds_count",
                                      {"trigger": "fleet-member"})
    return value or 0.0


async def test_concurrent_fleet_reconciliations_share_the_queued_one(cluster: EmulatedCluster) -> None:
    api = make_client(cluster.connection())
    registry = CollectorRegistry()
    ctl = Controller(config=TEST_CONFIG, api=api, prober=HttpProber(timeout_seconds=1.0, max_pods=0),
                     metrics=OperatorMetrics.create(registry), clock=lambda: NOW)
    try:
        await api.create(RUNTIMEFLEETS, "pools", {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                                                  "metadata": {"name": "shared"}, "spec": {}})
        for index in range(5):
            await api.create(WARMPOOLS, "pools", member(f"m{index}", "pools", f"tenant{index}"))
        results = await asyncio.gather(*(ctl.reconcile_fleet("pools", "shared", trigger="member")
                                         for _ in range(12)))
        # The first runs at once; the second queues behind it and the ten others share the second.
        assert fleet_runs(registry) == 2
        assert all(r is not None for r in results)
        assert all(r is results[1] for r in results[2:])
        members = {key for r in results if r is not None for key in r.outcome.members}
        assert members == {("pools", f"m{index}") for index in range(5)}

        # A member added after the shared one ran is seen by the next call, which runs again.
        await api.create(WARMPOOLS, "pools", member("late", "pools", "late"))
        later = await ctl.reconcile_fleet("pools", "shared", trigger="member")
        assert later is not None
        assert ("pools", "late") in later.outcome.members
        assert fleet_runs(registry) == 3
        assert ctl.fleet_queued == {}

        # The members' parsed specs are kept for the next reconciliation, no more than the members.
        assert len(ctl.fleet_specs[("pools", "shared")]) == 6
        await api.delete(WARMPOOLS, "pools", "late")
        after_delete = await ctl.reconcile_fleet("pools", "shared", trigger="member")
        assert after_delete is not None
        assert ("pools", "late") not in after_delete.outcome.members
        assert len(ctl.fleet_specs[("pools", "shared")]) == 5
        ctl.forget_fleet("pools", "shared")
        assert ("pools", "shared") not in ctl.fleet_specs
    finally:
        await ctl.readyz.close()


async def test_a_cancelled_queued_reconciliation_leaves_its_sharers_to_run_their_own(
    cluster: EmulatedCluster,
) -> None:
    api = make_client(cluster.connection())
    registry = CollectorRegistry()
    ctl = Controller(config=TEST_CONFIG, api=api, prober=HttpProber(timeout_seconds=1.0, max_pods=0),
                     metrics=OperatorMetrics.create(registry), clock=lambda: NOW)
    try:
        await api.create(RUNTIMEFLEETS, "pools", {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                                                  "metadata": {"name": "shared"}, "spec": {}})
        await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
        async with ctl.fleet_locks.hold("pools", "shared"):  # the fleet busy: callers queue
            owner = asyncio.create_task(ctl.reconcile_fleet("pools", "shared", trigger="member"))
            await asyncio.sleep(0)
            sharer = asyncio.create_task(ctl.reconcile_fleet("pools", "shared", trigger="member"))
            await asyncio.sleep(0)
            owner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await owner
        result = await sharer
        assert result is not None
        assert ("pools", "a") in result.outcome.members
        assert fleet_runs(registry) == 1
        assert ctl.fleet_queued == {}
    finally:
        await ctl.readyz.close()

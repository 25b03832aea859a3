"""The running operator against the kmock API emulator: create, update, delete, drift, no-op."""

from __future__ import annotations

import pytest

from tests.operator import scenarios
from tests.operator.harness import Cluster

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


async def test_create_reaches_ready_through_not_ready(cluster: Cluster) -> None:
    await scenarios.scenario_create(cluster)


async def test_module_hash_change_rolls_the_pods(cluster: Cluster) -> None:
    await scenarios.scenario_update_module_hash(cluster)


async def test_warm_count_change_rolls_the_pods(cluster: Cluster) -> None:
    await scenarios.scenario_update_warm_count(cluster)


async def test_delete_is_not_blocked_and_children_follow(cluster: Cluster) -> None:
    await scenarios.scenario_delete(cluster)


async def test_hand_edits_are_reverted_and_foreign_metadata_kept(cluster: Cluster) -> None:
    await scenarios.scenario_drift_restored(cluster)


async def test_settled_pool_is_not_written(cluster: Cluster) -> None:
    await scenarios.scenario_noop_without_writes(cluster)


async def test_autoscaled_replica_count_is_left_to_the_autoscaler(cluster: Cluster) -> None:
    await scenarios.scenario_autoscaled_replicas_left_alone(cluster)


async def test_pod_metadata_dropped_from_the_spec_leaves_the_template(cluster: Cluster) -> None:
    await scenarios.scenario_pod_metadata_follows_the_spec(cluster)

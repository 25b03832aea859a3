"""The running operator against the kmock API emulator: specs and pods that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operator import scenarios_failures as scenarios
from tests.operator.harness import Cluster

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


async def test_missing_configmap_then_missing_key_stall_and_recover(cluster: Cluster) -> None:
    await scenarios.scenario_configmap_missing(cluster)


async def test_unreachable_module_seen_by_the_pods_stalls(cluster: Cluster, tmp_path: Path) -> None:
    await scenarios.scenario_module_unreachable(cluster, tmp_path)


async def test_hash_mismatch_seen_by_the_pods_stalls_then_recovers(cluster: Cluster, tmp_path: Path) -> None:
    await scenarios.scenario_hash_mismatch(cluster, tmp_path)


async def test_crash_looping_pods_stall(cluster: Cluster) -> None:
    await scenarios.scenario_crash_looping(cluster)


async def test_unschedulable_pods_stall(cluster: Cluster) -> None:
    await scenarios.scenario_unschedulable(cluster)


async def test_invalid_spec_is_permanent_until_fixed(cluster: Cluster) -> None:
    # Only an emulated API accepts this spec; a real one refuses it by the CRD's CEL rules.
    await scenarios.scenario_invalid_spec(cluster)

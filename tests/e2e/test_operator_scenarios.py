"""The operator's component scenarios (tests/operator/scenarios*.py), run on the real local control plane."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import RealCluster
from tests.operator import scenarios, scenarios_failures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Scenario = Callable[..., Awaitable[None]]

EMULATOR_ONLY = {
    "scenario_invalid_spec": (
        "it starts from a WarmPool with two module sources, which only an emulated API accepts: the real "
        "API server refuses it by the CRD's CEL rule (test_operator_crd checks that refusal)"
    ),
}


def every_scenario() -> list[Any]:
    """Each `scenario_*` coroutine of the scenario modules, so that new ones run here too."""
    params = []
    for module in (scenarios, scenarios_failures):
        for name, function in vars(module).items():
            if name.startswith("scenario_") and inspect.iscoroutinefunction(function) \
                    and function.__module__ == module.__name__:
                marks = [pytest.mark.skip(reason=EMULATOR_ONLY[name])] if name in EMULATOR_ONLY else []
                params.append(pytest.param(function, id=name.removeprefix("scenario_"), marks=marks))
    return params


@pytest.fixture
async def real(crds: LocalCluster, namespace: str) -> AsyncIterator[RealCluster]:
    # The scenarios run their own operator for this namespace; the session's cluster-wide one
    # would act on the same pools (it comes back for tests that ask for it).
    crds.stop_operator()
    async with RealCluster(crds, namespace) as view:
        yield view


def test_every_scenario_is_collected() -> None:
    names = {param.id for param in every_scenario()}
    assert {"create", "delete", "drift_restored", "crash_looping", "hash_mismatch", "invalid_spec"} <= names


@pytest.mark.parametrize("scenario", every_scenario())
async def test_scenario_on_the_real_api_server(real: RealCluster, scenario: Scenario, tmp_path: Path) -> None:
    if "workdir" in inspect.signature(scenario).parameters:
        await scenario(real, workdir=tmp_path)
    else:
        await scenario(real)

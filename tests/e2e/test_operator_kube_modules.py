"""The operator talks to the real API server through the client's request layer only: no generated API class
or model of either client (sync or asyncio) is imported but the three kopf itself imports, and its session
closes cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]



def generated(name: str) -> bool:
    """A module of the generated code: the API packages whole, the models' submodules (the models package
    itself only holds a lazy loader, and the client's own module imports it)."""
    for client in ("kubernetes.client", "kubernetes.aio.client"):
        if name == f"{client}.api" or name.startswith((f"{client}.api.", f"{client}.models.")):
            return True
    return False


KOPF_IMPORTS = {"kubernetes.client.models.v1_object_meta", "kubernetes.client.models.v1_owner_reference",
                "kubernetes.client.models.v1_managed_fields_entry"}
"""kopf imports the synchronous client's `V1ObjectMeta` and `V1OwnerReference` whenever the package is
installed (to accept such objects in `kopf.adopt()`), and does without them when they are missing."""


def test_a_running_operator_loads_no_generated_api_or_model_module(crds: LocalCluster, namespace: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.operator_modules_probe", namespace],
        env={**os.environ, "KUBECONFIG": str(crds.kubeconfig)}, capture_output=True, text=True, timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    assert "kubernetes.aio.client.api_client" in loaded
    assert {name for name in loaded if generated(name)} <= KOPF_IMPORTS
    assert "Unclosed" not in result.stderr

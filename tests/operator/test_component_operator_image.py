"""The operator image's packages suffice: `warmpool operator run` reconciles a WarmPool to Ready through its
Kubernetes adapter (an emulated API server on loopback) with the pruned Kubernetes client code (the one list,
tools/operator-image.prune) and every package the operator image leaves out (wasmtime, uvloop, ...) unimportable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.operator.conftest import EmulatedCluster
from tests.operator.harness import PATIENCE_SECONDS, condition, wait_for, warmpool_manifest
from tests.operator.scenarios import all_children, pool_with
from tests.operator.test_component_restart import operator_process, write_kubeconfig
from tests.packaging.blocked import blocked_command, refused, target_rules
from tools.image_prune import Rule, pruned, read_rules
from warmpool_operator.kinds import WARMPOOLS

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]

KOPF_OPTIONAL = {"kubernetes.client.models.v1_object_meta", "kubernetes.client.models.v1_owner_reference"}
"""kopf looks for the client's model classes to accept them as well as dicts; the operator passes dicts."""


async def test_the_operator_reconciles_with_only_the_operator_images_packages(
    cluster: EmulatedCluster, tmp_path: Path
) -> None:
    rules = target_rules("operator")
    for absent in ("wasmtime/__init__.py", "uvloop/__init__.py", "httptools/__init__.py",
                   "kubernetes/aio/client/api/core_v1_api.py", "kubernetes/aio/client/models/v1_pod.py",
                   "kubernetes/client/api/core_v1_api.py", "kubernetes/client/models/v1_pod.py"):
        assert pruned(absent, rules), absent
    for present in ("kubernetes/aio/client/api_client.py", "kubernetes/aio/client/rest.py",
                    "kubernetes/client/api_client.py", "kubernetes/client/models/__init__.py", "kopf/__init__.py"):
        assert not pruned(present, rules), present
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(cluster.emulator.url).rstrip("/"), cluster.namespace)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("lean"))
    log = tmp_path / "operator.log"
    async with operator_process(kubeconfig, cluster.namespace, log, blocked_command(rules, tmp_path)) as proc:
        children = await wait_for(lambda: all_children(cluster, "lean"), what="the pool's children")
        assert {obj["kind"] for obj in children.values()} >= {"Deployment", "Service", "ConfigMap"}
        await wait_for(lambda: pool_with(cluster, "lean", "Ready", "False"), what="a status while rolling out")
        await cluster.roll_out("lean", 2)
        ready = await wait_for(lambda: pool_with(cluster, "lean", "Ready", "True"), what="Ready")
        assert condition(ready, "Stalled")["status"] == "False"
        assert proc.returncode is None
    text = log.read_text()
    assert "Traceback" not in text
    assert set(refused(text)) <= KOPF_OPTIONAL, refused(text)


def test_the_blocker_bites_when_the_operator_lacks_a_module_it_needs(tmp_path: Path) -> None:
    """The negative control: the asyncio client's REST layer (what `call_api` sends with) pruned too, the
    operator cannot start."""
    rules = (*target_rules("operator"), Rule("kubernetes/aio/client/rest.py", keep=False))
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9", "default")
    result = subprocess.run(
        [*blocked_command(rules, tmp_path), "operator", "run", "--namespace", "default", "--standalone",
         "--metrics-port", "0", "--health-port", "0"],
        capture_output=True, text=True, timeout=PATIENCE_SECONDS, check=False,
        env={"KUBECONFIG": str(kubeconfig), "PATH": ""},
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr.splitlines()[-1], result.stderr
    assert set(refused(result.stderr)) - KOPF_OPTIONAL == {"kubernetes.aio.client.rest"}, result.stderr


def test_the_blocked_modules_are_those_of_the_images_prune_list() -> None:
    rules = target_rules("operator")
    assert rules[-len(read_rules()):] == read_rules()

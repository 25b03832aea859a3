"""Start-up under contention on the real cluster: many pools applied at once all become Ready, none restarted."""

from __future__ import annotations

import copy
import json

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import example_documents, pool_pods, wait_pool_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Ten runtime processes starting together on the two shared cores (each compiles and prewarms).
# The local node agent ignores startupProbe, so this proves the patient liveness probe and the
# requests; the rendered startupProbe itself is tests/operator/test_render.py's.
POOLS = 10


def test_many_pools_started_at_once_all_become_ready_without_a_restart(operator: LocalCluster,
                                                                        namespace: str) -> None:
    config_map, template = example_documents()
    documents = [{**config_map, "metadata": {**config_map["metadata"], "namespace": namespace}}]
    names = [f"crowd-{index}" for index in range(POOLS)]
    for name in names:
        pool = copy.deepcopy(template)
        pool["metadata"] = {"name": name, "namespace": namespace}
        pool["spec"].update(replicas=1, warmInstancesPerTuple=2)
        del pool["spec"]["runtime"]  # the operator's default requests, memory limit and probes
        documents.append(pool)
    operator.kubectl("apply", "--filename=-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                "items": documents}))

    for name in names:
        wait_pool_ready(operator, namespace, name, replicas=1)
    for name in names:
        (pod,) = pool_pods(operator, namespace, name)
        (status,) = pod["status"]["containerStatuses"]
        assert status["restartCount"] == 0, (name, status)
        (container,) = pod["spec"]["containers"]
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert "memory" in container["resources"]["limits"]
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"

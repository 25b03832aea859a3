"""Scale-down under load on the real cluster: a client routing as a Service does loses no request.

The local plane's pod IPs are loopback addresses, which EndpointSlices may not hold; the client
applies the EndpointSlice controller's rule to the pods themselves (Ready, not being deleted).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import example_documents, example_module, pool_pods, wait_pool_ready
from warmpool.demo.load import ready_pod_targets
from warmpool_operator.render import selector_string
from warmpool_operator.runtime_config import DRAIN_SECONDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "classify"
SENDERS = 3


class Traffic:
    """Requests sent from a few threads to the IPs of the pods a Service would pick."""

    def __init__(self, cluster: LocalCluster, namespace: str, sha: str) -> None:
        self.cluster, self.namespace, self.sha = cluster, namespace, sha
        self.targets: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.served_by: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._follow, daemon=True)]
        self.threads += [threading.Thread(target=self._send, args=(seed,), daemon=True) for seed in range(SENDERS)]

    def refresh(self) -> None:
        pods = self.cluster.kubectl_json("get", "pods", f"--namespace={self.namespace}",
                                         f"--selector={selector_string(POOL)}")
        self.targets = ready_pod_targets(pods["items"])

    def ok(self) -> int:
        with self.lock:
            return self.outcomes["ok"]

    def _follow(self) -> None:
        while not self.stop.is_set():
            self.refresh()
            self.stop.wait(0.2)

    def _send(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            targets = self.targets
            if not targets:
                self.stop.wait(0.05)
                continue
            base = rng.choice(targets)
            outcome = self._call(base)
            with self.lock:
                self.outcomes[outcome] += 1
                if outcome == "ok":
                    self.served_by[base] += 1

    def _call(self, base: str) -> str:
        request = urllib.request.Request(f"{base}/v1/acme/{self.sha}/add", data=json.dumps({"args": [1, 2]}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body: Any = json.loads(response.read())
                return "ok" if response.status == 200 and body == {"results": [3]} else f"answer {body}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"connection error: {type(reason).__name__}"

    def __enter__(self) -> Traffic:
        self.refresh()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_scale_down_under_load_loses_no_request(operator: LocalCluster, namespace: str) -> None:
    config_map, pool = example_documents()
    pool["spec"]["replicas"] = 3
    for document in (config_map, pool):
        operator.apply({**document, "metadata": {**document["metadata"], "namespace": namespace}})
    wait_pool_ready(operator, namespace, POOL, replicas=3)
    _, sha = example_module()
    (grace,) = {pod["spec"]["terminationGracePeriodSeconds"] for pod in pool_pods(operator, namespace, POOL)}
    assert grace > DRAIN_SECONDS

    with Traffic(operator, namespace, sha) as traffic:
        operator.wait_for("traffic on all three pods", lambda: len(traffic.served_by) == 3)
        operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                         "--patch=" + json.dumps({"spec": {"replicas": 1}}))

        def scaled_down() -> bool:
            pods = operator.kubectl_json("get", "pods", f"--namespace={namespace}",
                                         f"--selector={selector_string(POOL)}")["items"]
            return len(pods) == 1  # the two removed pods are gone, not just terminating

        operator.wait_for("the removed pods gone", scaled_down, timeout_s=180)
        settled = traffic.ok()
        operator.wait_for("traffic served after the scale-down", lambda: traffic.ok() > settled + 20)

    failures = {outcome: count for outcome, count in traffic.outcomes.items() if outcome != "ok"}
    assert failures == {}, f"{failures} of {sum(traffic.outcomes.values())} requests failed"

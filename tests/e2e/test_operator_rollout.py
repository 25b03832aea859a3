"""Module-hash changes on the real cluster: a warm rollout to the new module, and a mismatch that stalls."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import (
    EXAMPLE,
    ROLLOUT_PATIENCE_SECONDS,
    RUNTIME_PORT,
    conditions,
    draws,
    example_module,
    expected_score,
    get_pool,
    get_text,
    invoke,
    pool_pods,
    ready_pods,
    wait_pool_ready,
)
from tests.operator.runtime_pods import free_port
from warmpool_operator.render import LABEL_MODULE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "classify"
V2_KEY = "classify-v2.wasm"


def v2_module(wasm: bytes) -> tuple[bytes, str]:
    """The example module plus a custom section: the same exports, other bytes, another sha256."""
    changed = wasm + b"\x00\x03\x02v2"
    return changed, hashlib.sha256(changed).hexdigest()


def ship(cluster: LocalCluster, namespace: str, key: str, wasm: bytes) -> None:
    patch = {"binaryData": {key: base64.b64encode(wasm).decode()}}
    cluster.kubectl("patch", "configmap", "classify-module", f"--namespace={namespace}", "--type=merge",
                    f"--patch={json.dumps(patch)}")


def point_at(cluster: LocalCluster, namespace: str, sha: str, key: str) -> None:
    patch = {"spec": {"module": {"sha256": sha, "source": {"configMapRef": {"name": "classify-module", "key": key}}}}}
    cluster.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                    f"--patch={json.dumps(patch)}")


@dataclass
class Traffic:
    """What a client calling the Ready pods by IP saw during a rollout."""

    served: dict[str, int] = field(default_factory=dict)
    """Successful invocations per module short hash."""
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(pod, module short hash, error) of invocations that got no answer."""
    ready_counts: list[int] = field(default_factory=list)
    pods_seen: dict[str, str] = field(default_factory=dict)
    """Pod name -> module short hash of every pod that served."""
    misses: dict[str, float] = field(default_factory=dict)
    """Pod name -> warm-pool misses of its tuple, last read."""
    warm_on_arrival: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Pod name -> its /readyz tuple the first time it was seen Ready."""

    def round(self, cluster: LocalCluster, namespace: str, shas: dict[str, str]) -> None:
        """One pass over the pool's Ready pods: /readyz of new ones, one score() each, /metrics."""
        pods = ready_pods(cluster, namespace, POOL)
        self.ready_counts.append(len(pods))
        for pod in pods:
            name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
            short = pod["metadata"]["labels"][LABEL_MODULE]
            try:
                if name not in self.warm_on_arrival:
                    _, body = get_text(f"http://{ip}:{RUNTIME_PORT}/readyz")
                    (self.warm_on_arrival[name],) = json.loads(body)["tuples"]
                status, answer = invoke(ip, shas[short], "score", [2.0, 0.5], timeout_s=5)
                self.misses[name] = draws(ip, shas[short]).misses
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                # A pod that was Ready when listed may be stopping by now (the old ones go).
                self.failures.append((name, short, str(exc)))
                continue
            assert status == 200, (name, short, answer)
            assert answer["results"][0] == pytest.approx(expected_score(2.0, 0.5), abs=1e-6)
            self.served[short] = self.served.get(short, 0) + 1
            self.pods_seen[name] = short


def test_a_module_hash_change_rolls_to_the_new_module_without_serving_cold(
    operator: LocalCluster, namespace: str
) -> None:
    wasm, sha = example_module()
    wasm2, sha2 = v2_module(wasm)
    operator.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}")
    wait_pool_ready(operator, namespace, POOL, replicas=2)
    ship(operator, namespace, V2_KEY, wasm2)
    shas = {sha[:12]: sha, sha2[:12]: sha2}  # old first
    traffic = Traffic()
    traffic.round(operator, namespace, shas)

    point_at(operator, namespace, sha2, V2_KEY)
    deadline = time.monotonic() + ROLLOUT_PATIENCE_SECONDS
    while True:
        traffic.round(operator, namespace, shas)
        pool = get_pool(operator, namespace, POOL)
        ready = conditions(pool).get("Ready") or {}
        modules = {p["metadata"]["labels"][LABEL_MODULE] for p in pool_pods(operator, namespace, POOL)}
        if (ready.get("status"), ready.get("observedGeneration"), modules) == ("True", 2, {sha2[:12]}):
            break
        assert time.monotonic() < deadline, f"the rollout did not finish: {pool.get('status')}"
    traffic.round(operator, namespace, shas)

    # Both versions served while rolling, the new one on every pod at the end, always from warm pools.
    assert traffic.served[sha[:12]] >= 2
    assert traffic.served[sha2[:12]] >= 2
    new_pods = {name for name, short in traffic.pods_seen.items() if short == sha2[:12]}
    assert len(new_pods) >= 2
    assert all(traffic.misses[name] == 0 for name in traffic.pods_seen), traffic.misses
    for name in new_pods:
        arrival = traffic.warm_on_arrival[name]
        assert (arrival["ready"], arrival["target"], arrival["sha256"]) == (True, 4, sha2), arrival
    assert min(traffic.ready_counts) >= 2  # maxUnavailable 0: the old pods served until new ones were warm
    remaining = {pod["metadata"]["name"] for pod in pool_pods(operator, namespace, POOL)}
    # Only old pods on their way out ever failed to answer.
    assert all(short == sha[:12] and name not in remaining for name, short, _ in traffic.failures), traffic.failures

    status = pool["status"]
    assert (status["module"], status["observedGeneration"], status["readiness"]) == (sha2[:12], 2, "2/2")
    for pod in ready_pods(operator, namespace, POOL):
        ip = pod["status"]["podIP"]
        gone, answer = invoke(ip, sha, "score", [2.0, 0.5])
        assert (gone, answer["error"]["code"]) == (404, "unknown_module")
    runtime_yaml = operator.kubectl_json("get", "configmap", "classify-runtime", f"--namespace={namespace}")
    assert sha2 in runtime_yaml["data"]["runtime.yaml"]
    assert sha not in runtime_yaml["data"]["runtime.yaml"]


def test_a_sha256_that_does_not_match_the_bytes_stalls_the_pool_while_old_pods_serve(
    operator: LocalCluster, namespace: str
) -> None:
    wasm, sha = example_module()
    _, wrong = v2_module(wasm)  # the hash of other bytes than those under classify.wasm
    operator.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}")
    wait_pool_ready(operator, namespace, POOL, replicas=2)
    old = {pod["metadata"]["name"] for pod in ready_pods(operator, namespace, POOL)}

    point_at(operator, namespace, wrong, "classify.wasm")

    def stalled() -> dict[str, Any] | None:
        pool = get_pool(operator, namespace, POOL)
        cond = conditions(pool).get("Stalled") or {}
        ok = (cond.get("status"), cond.get("reason"), cond.get("observedGeneration")) == (
            "True", "ModuleHashMismatch", 2)
        return pool if ok else None

    pool = operator.wait_for("Stalled=True ModuleHashMismatch", stalled, timeout_s=ROLLOUT_PATIENCE_SECONDS)
    found = conditions(pool)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "ModuleHashMismatch")
    assert found["Reconciling"]["status"] == "False"
    message = found["Stalled"]["message"]
    assert "module_hash_mismatch" in message
    assert f"module {wrong[:12]}" in message
    events = operator.kubectl_json("get", "events", f"--namespace={namespace}",
                                   f"--field-selector=involvedObject.name={POOL},reason=ModuleHashMismatch")
    (event, *_) = events["items"]
    assert (event["type"], event["involvedObject"]["kind"]) == ("Warning", "WarmPool")
    assert "module_hash_mismatch" in event["message"]

    # The new pod runs but never turns Ready; the old pods keep serving the old module.
    (new,) = [pod for pod in pool_pods(operator, namespace, POOL) if pod["metadata"]["name"] not in old]
    assert found["Stalled"]["message"].startswith(f"pod {new['metadata']['name']} ")
    _, body = get_text(f"http://{new['status']['podIP']}:{RUNTIME_PORT}/readyz")
    (state,) = json.loads(body)["tuples"]
    assert (state["ready"], state["error"]["code"]) == (False, "module_hash_mismatch")
    serving = ready_pods(operator, namespace, POOL)
    assert {pod["metadata"]["name"] for pod in serving} == old
    for pod in serving:
        assert invoke(pod["status"]["podIP"], sha, "add", [2, 3]) == (200, {"results": [5]})

    point_at(operator, namespace, sha, "classify.wasm")
    recovered = wait_pool_ready(operator, namespace, POOL, generation=3, replicas=2)
    assert conditions(recovered)["Stalled"]["status"] == "False"
    assert recovered["status"]["module"] == sha[:12]
    reasons = {e["reason"] for e in operator.kubectl_json(
        "get", "events", f"--namespace={namespace}", f"--field-selector=involvedObject.name={POOL}")["items"]}
    assert "Recovered" in reasons


def test_a_module_source_that_cannot_be_reached_stalls_the_pool_while_old_pods_serve(
    operator: LocalCluster, namespace: str
) -> None:
    wasm, sha = example_module()
    _, new_sha = v2_module(wasm)
    closed = free_port("127.0.0.1")  # nothing listens there once the probe socket is closed
    url = f"http://reader:pa55w0rd@127.0.0.1:{closed}/classify.wasm?X-Amz-Signature=s3cr3t"
    operator.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}")
    wait_pool_ready(operator, namespace, POOL, replicas=2)
    old = {pod["metadata"]["name"] for pod in ready_pods(operator, namespace, POOL)}

    patch = {"spec": {"module": {"sha256": new_sha, "source": {"url": url, "configMapRef": None}}}}
    operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                     f"--patch={json.dumps(patch)}")

    def stalled() -> dict[str, Any] | None:
        cond = conditions(get_pool(operator, namespace, POOL)).get("Stalled") or {}
        return cond if (cond.get("status"), cond.get("reason")) == ("True", "ModuleUnreachable") else None

    cond = operator.wait_for("Stalled=True ModuleUnreachable", stalled, timeout_s=ROLLOUT_PATIENCE_SECONDS)
    assert f"http://127.0.0.1:{closed}/classify.wasm?<redacted>" in cond["message"]
    assert "s3cr3t" not in cond["message"]
    assert "pa55w0rd" not in cond["message"]

    # The new pod never turns Ready, so the rollout holds: the old pods keep serving the old module.
    serving = ready_pods(operator, namespace, POOL)
    assert {pod["metadata"]["name"] for pod in serving} == old
    for pod in serving:
        assert invoke(pod["status"]["podIP"], sha, "add", [2, 3]) == (200, {"results": [5]})

    back = {"spec": {"module": {"sha256": sha, "source": {
        "url": None, "configMapRef": {"name": "classify-module", "key": "classify.wasm"}}}}}
    operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                     f"--patch={json.dumps(back)}")
    recovered = wait_pool_ready(operator, namespace, POOL, generation=3, replicas=2)
    assert conditions(recovered)["Stalled"]["status"] == "False"

"""A WarmPool moved between hosts on the real control plane (its own Deployment -> fleet A -> fleet B -> its own
Deployment) under a steady call loop: no call fails, and at every moment some host holds its tuple warm; the old
host lets go only after the new one is warm. Runtime pods are real processes on loopback; the module is served
on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import RUNTIME_PORT, example_module
from tests.e2e.test_fleet import call, get, module_url  # noqa: F401  (module_url is a fixture)
from warmpool_operator.health import pod_is_ready
from warmpool_operator.render import selector_string as pool_selector
from warmpool_operator.runtimefleet.render import selector_string as fleet_selector
from warmpool_operator.runtimefleet.tuples import WARM, parse_tuple_states
from warmpool_operator.scaling.exposition import pool_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PATIENCE_S = 240.0
TENANT = "mover"
POOL = "mover"


def fleet(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"replicas": {"min": 1, "max": 1}}}


def ready_ips(local: LocalCluster, namespace: str, selector: str) -> list[str]:
    found = local.kubectl_json("get", "pods", f"--namespace={namespace}", f"--selector={selector}")
    return [p["status"]["podIP"] for p in found["items"]
            if pod_is_ready(p) and p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]


def host(local: LocalCluster, namespace: str) -> str | None:
    """The fleet the pool's status says holds its tuple warm; None: its own Deployment."""
    body = get(local, "warmpool", namespace, POOL) or {}
    value = (body.get("status") or {}).get("fleet")
    return str(value).split("/")[1] if value else None


def tuple_states(ip: str) -> dict[str, str] | None:
    """This pod's tuples, tenant -> state, from its /readyz (503 while a tuple loads, with the same body);
    None when the pod could not be read (unknown, not "not warm")."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{RUNTIME_PORT}/readyz", timeout=5) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"null")
    except (urllib.error.URLError, TimeoutError, ValueError, OSError):
        return None
    return {t.tenant: t.state for t in parse_tuple_states(body)}


def let_go(ip: str) -> bool:
    """The pod was read and no longer holds the tuple."""
    states = tuple_states(ip)
    return states is not None and TENANT not in states


@dataclass
class Watch:
    """Samples of where the tuple is warm, and every call's outcome, until stopped."""

    samples: list[tuple[float, bool, bool, bool]] = field(default_factory=list)
    """(t, own pods Ready, warm on fleet a, warm on fleet b)."""
    calls: list[tuple[str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def watch_hosts(local: LocalCluster, namespace: str, watch: Watch) -> None:
    """One sample reads the hosts one after another, so each move's old host is read before its new one (own
    pods both first and last): a new host found warm after the old one let go was warm when it did."""
    while not watch.stop.is_set():
        started = time.monotonic()
        own = bool(ready_ips(local, namespace, pool_selector(POOL)))
        warm = []
        unread = False
        for name in ("a", "b"):
            ips = ready_ips(local, namespace, fleet_selector(name))
            states = [tuple_states(ip) for ip in ips]
            unread = unread or any(s is None for s in states)
            warm.append(bool(ips) and all(s is not None and s.get(TENANT) == WARM for s in states))
        own = own or bool(ready_ips(local, namespace, pool_selector(POOL)))
        if not unread:  # a pod that did not answer in time tells nothing about where the tuple is warm
            watch.samples.append((started, own, warm[0], warm[1]))


def call_loop(local: LocalCluster, namespace: str, watch: Watch) -> None:
    """Call the tuple by pod IP on whichever host the pool's status names, as a client following it would."""
    while not watch.stop.is_set():
        name = host(local, namespace)
        selector = pool_selector(POOL) if name is None else fleet_selector(name)
        for ip in ready_ips(local, namespace, selector):
            status, _ = call(ip, TENANT)
            watch.calls.append((name or "own", status))


def misses_on(ips: list[str]) -> float:
    total = 0.0
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:{RUNTIME_PORT}/metrics", timeout=5) as response:
            metrics = pool_metrics(response.read().decode(), tenant=TENANT)
        total += 0.0 if metrics is None else metrics.misses
    return total


def test_a_pool_moves_from_its_deployment_to_two_fleets_and_back_without_a_gap(
    operator: LocalCluster, namespace: str, module_url: str  # noqa: F811
) -> None:
    _, sha = example_module()
    for name in ("a", "b"):
        operator.apply(fleet(name, namespace))
    operator.apply({
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool", "metadata": {"name": POOL, "namespace": namespace},
        "spec": {"tenant": TENANT, "module": {"sha256": sha, "source": {"url": module_url}}, "replicas": 1,
                 "warmInstancesPerTuple": 2, "limits": {"memoryBytes": 16777216, "timeoutMs": 500}},
    })
    operator.wait_for("the pool's own pod Ready", lambda: ready_ips(operator, namespace, pool_selector(POOL)),
                      timeout_s=PATIENCE_S)
    for name in ("a", "b"):
        operator.wait_for(f"fleet {name}'s pod Ready", lambda name=name: ready_ips(
            operator, namespace, fleet_selector(name)), timeout_s=PATIENCE_S)

    watch = Watch()
    threads = [threading.Thread(target=target, args=(operator, namespace, watch), daemon=True)
               for target in (watch_hosts, call_loop)]
    for thread in threads:
        thread.start()
    try:
        operator.wait_for("calls served by the pool's own pod", lambda: len(watch.calls) >= 5, timeout_s=PATIENCE_S)

        moved_to_a = time.monotonic()
        operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                         "--patch", json.dumps({"spec": {"fleetRef": {"name": "a"}}}))
        operator.wait_for("the pool warm on fleet a", lambda: host(operator, namespace) == "a", timeout_s=PATIENCE_S)
        operator.wait_for("its own Deployment scaled to zero", lambda: (get(
            operator, "deployment", namespace, POOL) or {}).get("spec", {}).get("replicas") == 0, timeout_s=PATIENCE_S)
        operator.wait_for("its own pods gone", lambda: not ready_ips(operator, namespace, pool_selector(POOL)),
                          timeout_s=PATIENCE_S)

        moved_to_b = time.monotonic()
        operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                         "--patch", json.dumps({"spec": {"fleetRef": {"name": "b"}}}))
        operator.wait_for("the pool warm on fleet b", lambda: host(operator, namespace) == "b", timeout_s=PATIENCE_S)
        a_ips = ready_ips(operator, namespace, fleet_selector("a"))
        operator.wait_for("fleet a lets the tuple go", lambda: all(
            let_go(ip) for ip in a_ips), timeout_s=PATIENCE_S)
        operator.wait_for("calls served by fleet b", lambda: sum(h == "b" for h, _ in watch.calls) >= 5,
                          timeout_s=PATIENCE_S)
        # The watcher samples every few seconds: wait for one that saw fleet a without the tuple.
        operator.wait_for("a sample after fleet a let go", lambda: any(
            not s[2] for s in watch.samples if s[0] >= moved_to_b), timeout_s=PATIENCE_S)

        moved_back = time.monotonic()
        operator.kubectl("patch", "warmpool", POOL, f"--namespace={namespace}", "--type=merge",
                         "--patch", json.dumps({"spec": {"fleetRef": None}}))
        operator.wait_for("the pool back on its own pod", lambda: host(operator, namespace) is None and ready_ips(
            operator, namespace, pool_selector(POOL)), timeout_s=PATIENCE_S)
        b_ips = ready_ips(operator, namespace, fleet_selector("b"))
        operator.wait_for("fleet b lets the tuple go", lambda: all(
            let_go(ip) for ip in b_ips), timeout_s=PATIENCE_S)
        operator.wait_for("calls served by its own pod again", lambda: sum(
            h == "own" for h, _ in watch.calls[-5:]) == 5, timeout_s=PATIENCE_S)
        operator.wait_for("a sample after fleet b let go", lambda: any(
            not s[3] for s in watch.samples if s[0] >= moved_back), timeout_s=PATIENCE_S)
    finally:
        watch.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    failed = [(h, status) for h, status in watch.calls if status != 200]
    assert failed == []
    assert {h for h, _ in watch.calls} == {"own", "a", "b"}
    # Warm somewhere at every sample from the first move on.
    gaps = [s for s in watch.samples if s[0] >= moved_to_a and not any(s[1:])]
    assert gaps == [], f"moves at {moved_to_a}, {moved_to_b}, {moved_back}"
    # The tuple was warm on b before a dropped it: from the second move on, a sample without it warm on a has it
    # warm on b.
    after = [s for s in watch.samples if moved_to_b <= s[0] < moved_back]
    assert any(not s[2] for s in after)
    assert all(s[3] for s in after if not s[2])
    # And back: b let go only once the pool's own pod was Ready.
    back = [s for s in watch.samples if s[0] >= moved_back]
    assert any(not s[3] for s in back)
    assert all(s[1] for s in back if not s[3])
    # The new hosts were prewarmed: no call found them cold beyond the first on each pod.
    for name in ("a", "b"):
        ips = ready_ips(operator, namespace, fleet_selector(name))
        assert misses_on(ips) <= len(ips)

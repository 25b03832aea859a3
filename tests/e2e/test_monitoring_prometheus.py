"""The chart's alerts and dashboard against a real Prometheus scraping the operator and runtime pods by pod IP."""

# Prometheus is the one `warmpool dev up --prometheus` runs (built from the Go module proxy, no service
# discovery but file/static targets, which the dev target writer keeps current from the pod list). The
# rules are the chart's PrometheusRule rendered by helm with short `for:` and a 1 s evaluation interval.

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import (
    example_documents,
    example_module,
    invoke,
    ready_pods,
    wait_pool_ready,
)
from tests.gobuilds import ensure_helm, ensure_prometheus
from tests.packaging.helm import Helm
from tests.packaging.test_monitoring import dashboard_queries
from tools.prometheus_rules import rules_file
from warmpool.dev import controlplane
from warmpool.dev.prometheus import start_prometheus, stop_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ALERTS = {"WarmPoolMissRatioHigh", "WarmPoolResetFailures", "WarmPoolNotReady", "WarmPoolReconcileErrors",
          "WarmPoolOperatorDown"}
MISS_THRESHOLD = 0.05
DRAWS_FLOOR = 1.0
RULE_VALUES: dict[str, Any] = {
    "prometheusRule": {
        "enabled": True,
        "evaluationInterval": "1s",
        "missRatio": {"threshold": MISS_THRESHOLD, "for": "2s", "minDrawsPerSecond": DRAWS_FLOOR},
        "resetFailures": {"for": "2s"},
        "reconcileErrors": {"for": "2s"},
        "poolNotReady": {"for": "2s"},
        "operatorDown": {"for": "2s"},
    },
}
ALERT_PATIENCE_SECONDS = 240.0
RECORDED = {"warmpool:tensor_wasm_pool_draws:rate5m", "warmpool:tensor_wasm_pool_draws_miss:ratio_rate5m",
            "warmpool:tensor_wasm_pool_warm_instances:sum"}
DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "warmpool-operator" / "dashboards" / "warmpool.json"
EVENT_ONLY = {"tensor_wasm_traps_total"}
"""Series that exist only once what they count happened: the example module never traps."""


def _say(line: str) -> None:
    print(f"[prometheus] {line}", flush=True)


@dataclass(frozen=True)
class Prometheus:
    url: str

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=30) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, name: str, state: str | None = None) -> list[dict[str, str]]:
        """Labels of the active alerts called `name` (in `state`, pending or firing, when given)."""
        return [a["labels"] for a in self.get("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == name and (state is None or a["state"] == state)]

    def wait(self, what: str, check: Any, timeout_s: float = ALERT_PATIENCE_SECONDS) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(1.0)
        raise AssertionError(f"never happened: {what} (last seen: {last!r})")


@pytest.fixture(scope="module")
def prometheus(crds: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    home = tmp_path_factory.mktemp("helm-home")
    rules = home / "rules.yaml"
    rules.write_text(rules_file(Helm(binary=ensure_helm(), home=home).template(RULE_VALUES, name="e2e-rules")))
    url = start_prometheus(
        binary=ensure_prometheus(log=_say), layout=crds.layout, warmpool_command=controlplane.warmpool_command(),
        rules=rules, interval="1s", log=_say,
    )
    try:
        yield Prometheus(url)
    finally:
        stop_prometheus(crds.layout, log=_say)


def pool_documents(name: str, *, replicas: int = 1, warm: int = 4, **runtime: Any) -> str:
    config_map, pool = copy.deepcopy(example_documents())
    pool["metadata"]["name"] = name
    pool["spec"].update({"replicas": replicas, "warmInstancesPerTuple": warm, "maxTotalWarm": max(warm, 1)})
    pool["spec"]["runtime"].update(runtime)
    return "\n---\n".join(json.dumps(doc) for doc in (config_map, pool))


def apply(cluster: LocalCluster, namespace: str, documents: str) -> None:
    cluster.kubectl("apply", f"--namespace={namespace}", "--filename=-", stdin=documents)


def selectors(expr: str) -> list[str]:
    """Each vector selector of a PromQL expression, as a query of its own."""
    found: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(str(node))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def rule_alerts(prom: Prometheus) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for group in prom.get("/api/v1/rules")["groups"] for rule in group["rules"]
            if rule["type"] == "alerting"}


def rule_recordings(prom: Prometheus) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for group in prom.get("/api/v1/rules")["groups"] for rule in group["rules"]
            if rule["type"] == "recording"}


def test_the_charts_rules_load_and_evaluate_without_error(operator: LocalCluster, prometheus: Prometheus) -> None:
    """What promtool checks: Prometheus loaded the rendered rules, and each evaluates cleanly."""
    assert set(rule_alerts(prometheus)) == ALERTS
    assert set(rule_recordings(prometheus)) == RECORDED

    def recorded() -> dict[str, str] | None:
        health = {name: rule["health"] for name, rule in rule_recordings(prometheus).items()}
        return health if set(health.values()) == {"ok"} else None

    prometheus.wait("every recording rule evaluated with health ok", recorded)

    def evaluated() -> dict[str, str] | None:
        health = {name: rule["health"] for name, rule in rule_alerts(prometheus).items()}
        return health if set(health.values()) == {"ok"} else None

    prometheus.wait("every alerting rule evaluated with health ok", evaluated)
    for rule in rule_alerts(prometheus).values():
        assert rule.get("lastError", "") == ""
        assert rule["annotations"]["runbook_url"].startswith("docs/troubleshooting.md#")
    # The operator is scraped, so its absence alert is (or soon becomes) inactive.
    prometheus.wait("the operator target up", lambda: prometheus.query('up{job="warmpool-operator"} == 1'))
    prometheus.wait("WarmPoolOperatorDown inactive", lambda: not prometheus.alerts("WarmPoolOperatorDown"))


def test_every_dashboard_and_alert_query_returns_data_on_a_live_pool(
    operator: LocalCluster, namespace: str, prometheus: Prometheus
) -> None:
    _, sha = example_module()
    documents = [json.loads(d) for d in pool_documents("live").split("\n---\n")]
    documents[1]["spec"].pop("replicas")
    documents[1]["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 1, "maxReplicas": 2, "tickSeconds": 1,
                                          "stableWindowSeconds": 10, "panicWindowSeconds": 3}
    apply(operator, namespace, "\n---\n".join(json.dumps(d) for d in documents))
    # A pool whose module ConfigMap does not exist stalls: its reconcile problems are counted.
    broken = json.loads(pool_documents("broken").split("\n---\n")[1])
    broken["spec"]["module"]["source"]["configMapRef"]["name"] = "no-such-module"
    apply(operator, namespace, json.dumps(broken))
    wait_pool_ready(operator, namespace, "live", replicas=1)
    ip = ready_pods(operator, namespace, "live")[0]["status"]["podIP"]
    with steady_calls(ip, sha):
        check_every_query_returns_data(prometheus, namespace)
    errors = prometheus.wait("WarmPoolReconcileErrors firing for the broken pool, by name",
                             lambda: prometheus.alerts("WarmPoolReconcileErrors", "firing"))
    assert {(a["namespace"], a["warmpool"], a["reason"]) for a in errors} >= {
        (namespace, "broken", "ConfigMapMissing")}
    assert not [a for a in prometheus.alerts("WarmPoolReconcileErrors") if a.get("warmpool") == "live"]


@contextlib.contextmanager
def steady_calls(ip: str, sha: str) -> Iterator[None]:
    """A few calls a second in the background: the autoscaler's observed miss ratio needs arrivals."""
    stop = threading.Event()
    statuses: list[int] = []

    def call() -> None:
        while not stop.wait(0.2):
            statuses.append(invoke(ip, sha, "score", [0.5, 0.5])[0])

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert statuses
    assert set(statuses) == {200}


def check_every_query_returns_data(prometheus: Prometheus, namespace: str) -> None:
    live = f'namespace="{namespace}", warmpool="live"'
    prometheus.wait("the live pool's invocations scraped by pod IP",
                    lambda: prometheus.query(f'tensor_wasm_invocations_total{{{live}, code="ok"}} >= 20'))
    prometheus.wait("the autoscaler's observed miss ratio scraped from the operator",
                    lambda: prometheus.query(f"warmpool_operator_autoscaler_observed_miss_ratio{{{live}}}"))
    prometheus.wait("the broken pool's reconcile problem scraped",
                    lambda: prometheus.query(f'warmpool_operator_reconcile_errors_total{{namespace="{namespace}"}}'))

    board = json.loads(DASHBOARD.read_text())
    checked = 0
    for where, expr in dashboard_queries(board):
        concrete = expr.replace('namespace=~".*"', f'namespace=~"{namespace}"')
        if any(name in concrete for name in EVENT_ONLY):
            prometheus.query(concrete)  # still parsed and run by Prometheus
            continue
        prometheus.wait(f"data for {where}: {concrete}", lambda q=concrete: prometheus.query(q), timeout_s=60)
        checked += 1
    assert checked > 20

    for name, rule in rule_alerts(prometheus).items():
        for selector in selectors(rule["query"]):
            assert prometheus.query(selector), f"{name}: {selector} selects nothing"

    # The recording rules give one series per pool tuple of the live pool.
    for name in sorted(RECORDED):
        series = prometheus.wait(f"{name} recorded for the live pool",
                                 lambda n=name: prometheus.query(f"{n}{{{live}}}"), timeout_s=60)
        assert [s["metric"]["tenant"] for s in series] == ["acme"], (name, series)
        assert {"namespace", "warmpool", "tenant", "module"} <= set(series[0]["metric"]), (name, series)
    draws = f"warmpool:tensor_wasm_pool_draws:rate5m{{{live}}} > 0"
    prometheus.wait("the live pool's recorded draw rate above zero", lambda: prometheus.query(draws), timeout_s=60)
    ratio = prometheus.query(f"warmpool:tensor_wasm_pool_draws_miss:ratio_rate5m{{{live}}}")
    assert 0.0 <= float(ratio[0]["value"][1]) <= 1.0, ratio


def test_not_ready_fires_for_a_pool_whose_pods_stay_pending(
    operator: LocalCluster, namespace: str, prometheus: Prometheus
) -> None:
    """No pod of the pool ever runs, so no runtime series exists: the operator's Ready condition says it."""
    apply(operator, namespace, pool_documents("pending", resources={"requests": {"cpu": "1000", "memory": "128Mi"}}))
    firing = prometheus.wait(
        "WarmPoolNotReady firing for the pending pool",
        lambda: [a for a in prometheus.alerts("WarmPoolNotReady", "firing")
                 if (a["namespace"], a["warmpool"]) == (namespace, "pending")],
    )
    assert firing[0]["severity"] == "critical"
    assert prometheus.query(f'up{{job="warmpool-runtime", namespace="{namespace}"}}') == []
    pods = operator.kubectl_json("get", "pods", f"--namespace={namespace}")["items"]
    assert pods
    assert {pod["status"]["phase"] for pod in pods} == {"Pending"}


def test_miss_ratio_fires_under_overload_and_not_for_an_idle_pool(
    operator: LocalCluster, namespace: str, prometheus: Prometheus
) -> None:
    _, sha = example_module()
    for name in ("busy", "idle"):
        apply(operator, namespace, pool_documents(name, warm=1))
    for name in ("busy", "idle"):
        wait_pool_ready(operator, namespace, name, replicas=1)
    busy_ip = ready_pods(operator, namespace, "busy")[0]["status"]["podIP"]
    idle_ip = ready_pods(operator, namespace, "idle")[0]["status"]["podIP"]

    def hold(ip: str) -> int:
        return invoke(ip, sha, "hold", [200])[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        # The idle pool: one burst of three calls on one warm instance (misses), then nothing.
        assert list(pool.map(hold, [idle_ip] * 3)) == [200, 200, 200]
        # The busy pool: three calls at a time, for as long as the alert takes.
        stop = time.monotonic() + ALERT_PATIENCE_SECONDS
        busy_pool = {"namespace": namespace, "warmpool": "busy"}

        def busy_firing() -> list[dict[str, str]]:
            return [a for a in prometheus.alerts("WarmPoolMissRatioHigh", "firing")
                    if {k: a[k] for k in busy_pool} == busy_pool]

        firing: list[dict[str, str]] = []
        while not firing and time.monotonic() < stop:
            assert list(pool.map(hold, [busy_ip] * 3)) == [200, 200, 200]
            firing = busy_firing()
    assert firing, "WarmPoolMissRatioHigh never fired for the overloaded pool"
    assert firing[0]["tenant"] == "acme"

    idle = f'namespace="{namespace}", warmpool="idle"'
    misses = prometheus.query(f'tensor_wasm_pool_draws_total{{{idle}, result="miss"}}')
    assert misses, "the idle pool's draws were never scraped"
    assert float(misses[0]["value"][1]) > 0, "the idle pool should have missed in its burst"
    assert [a for a in prometheus.alerts("WarmPoolMissRatioHigh") if a.get("warmpool") == "idle"] == []


def test_the_target_writer_follows_pods_by_ip(operator: LocalCluster, namespace: str, prometheus: Prometheus) -> None:
    apply(operator, namespace, pool_documents("followed"))
    wait_pool_ready(operator, namespace, "followed", replicas=1)
    ip = ready_pods(operator, namespace, "followed")[0]["status"]["podIP"]
    up = prometheus.wait(
        "the pool's pod scraped at its pod IP",
        lambda: prometheus.query(f'up{{job="warmpool-runtime", namespace="{namespace}", warmpool="followed"}} == 1'),
    )
    assert re.fullmatch(rf"{re.escape(ip)}:\d+", up[0]["metric"]["instance"])
    ready = f'warmpool_pool_condition{{namespace="{namespace}", warmpool="followed", condition="Ready", status="True"}}'
    prometheus.wait("the pool's Ready condition scraped from the operator", lambda: prometheus.query(f"{ready} == 1"))
    operator.kubectl("delete", "warmpool", "followed", f"--namespace={namespace}")
    prometheus.wait(
        "the deleted pool's target gone",
        lambda: not prometheus.query(f'up{{job="warmpool-runtime", namespace="{namespace}", warmpool="followed"}}'),
    )
    prometheus.wait(
        "the deleted pool's conditions gone from the operator",
        lambda: not prometheus.query(f'warmpool_pool_condition{{namespace="{namespace}", warmpool="followed"}}'),
    )


def test_operator_down_fires_once_the_operator_stops(operator: LocalCluster, prometheus: Prometheus) -> None:
    prometheus.wait("the operator target up", lambda: prometheus.query('up{job="warmpool-operator"} == 1'))
    operator.stop_operator()
    try:
        firing = prometheus.wait("WarmPoolOperatorDown firing",
                                 lambda: prometheus.alerts("WarmPoolOperatorDown", "firing"))
        assert firing[0]["severity"] == "critical"
    finally:
        operator.start_operator()
    prometheus.wait("WarmPoolOperatorDown resolved once the operator is back",
                    lambda: not prometheus.alerts("WarmPoolOperatorDown"))

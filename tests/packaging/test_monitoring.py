"""Dashboard and alerts: valid PromQL over metrics the code really exports, the panels asked for, a PNG preview."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.packaging.helm import CHART, Helm
from tools import dashboard as dashboard_tool
from tools import prometheus_rules
from tools.metrics_catalogue import sample_labels

pytestmark = pytest.mark.unit

DASHBOARD = CHART / "dashboards" / "warmpool.json"
RULE_VALUES = {
    "prometheusRule": {
        "enabled": True,
        "alertLabels": {"team": "platform"},
        "missRatio": {"threshold": 0.02, "for": "7m", "minDrawsPerSecond": 0.5},
        "evaluationInterval": "15s",
        "runbookBaseURL": "https://docs.example.com/warmpool/troubleshooting",
    },
}
TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def substitute(expr: str) -> str:
    """Grafana variables replaced by what they stand for, so the query parses as PromQL."""
    return (expr.replace("$__rate_interval", "5m").replace("$target", "0.01")
            .replace('"$namespace"', '".*"').replace('"$tenant"', '".*"').replace('"$module"', '".*"')
            .replace('"$warmpool"', '".*"'))


def problems_in(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """Selectors of unknown metrics, matchers or groupings on labels those metrics do not carry."""
    out: list[str] = []
    tree = promql_parser.parse(expr)

    def selectors(node: Any) -> list[Any]:
        found: list[Any] = []

        def visit(child: Any) -> bool:
            if isinstance(child, promql_parser.VectorSelector):
                found.append(child)
            return True

        promql_parser.walk(node, visit)
        return found

    def check(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name not in known:
                out.append(f"unknown metric {node.name}")
            else:
                for matcher in node.matchers.matchers:
                    if matcher.name not in known[node.name]:
                        out.append(f"{node.name} has no label {matcher.name}")
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            available: set[str] = set()
            for selector in selectors(node.expr):
                available |= known.get(selector.name or "", frozenset())
            for label in node.modifier.labels:
                if label not in available:
                    out.append(f"grouping by {label}, which no selected metric carries")
        return True

    promql_parser.walk(tree, check)
    return out


def dashboard_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], substitute(target["expr"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["definition"])
            assert inner is not None, variable["definition"]
            yield f"variable {variable['name']}", substitute(inner.group(1))


def test_dashboard_file_is_what_the_generator_writes() -> None:
    assert dashboard_tool.main(["--check"]) == 0, "run python -m tools.dashboard"
    assert json.loads(DASHBOARD.read_text()) == dashboard_tool.build_dashboard()


def test_every_dashboard_query_is_valid_promql_over_exported_metrics() -> None:
    known = sample_labels()
    board = json.loads(DASHBOARD.read_text())
    queries = list(dashboard_queries(board))
    assert len(queries) > 20
    problems = [f"{where}: {problem}" for where, expr in queries for problem in problems_in(expr, known)]
    assert problems == []


def test_query_check_catches_wrong_names_and_labels() -> None:
    known = sample_labels()
    assert problems_in('sum by (module) (rate(tensor_wasm_pool_reset_failed_total{tenant="a"}[5m]))', known) == [
        "grouping by module, which no selected metric carries"
    ]
    assert problems_in("tensor_wasm_pool_draws{result='hit'}", known) == ["unknown metric tensor_wasm_pool_draws"]
    assert problems_in('tensor_wasm_pool_warm_instances{result="hit"}', known) == [
        "tensor_wasm_pool_warm_instances has no label result"
    ]


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_dashboard_shows_what_an_operator_of_warm_pools_needs() -> None:
    board = json.loads(DASHBOARD.read_text())
    by_title = {
        panel["title"]: set().union(*(metric_names(substitute(t["expr"])) for t in panel["targets"]))
        for panel in board["panels"] if panel["type"] != "row"
    }
    wanted = {
        "Draws per second: hits and misses": {"tensor_wasm_pool_draws_total"},
        "Miss ratio against target": {"tensor_wasm_pool_draws_total"},
        "Warm instances, capacity and in-flight": {"tensor_wasm_pool_warm_instances",
                                                   "tensor_wasm_pool_capacity_instances"},
        "Runtime pods: desired and ready": {"warmpool_pool_replicas"},
        "WarmPools not Ready": {"warmpool_pool_condition"},
        "Invocation latency (p50, p95, p99)": {"tensor_wasm_invocation_duration_seconds_bucket"},
        "Reconcile problems by reason": {"warmpool_operator_reconcile_errors_total"},
        "Autoscaler: desired and ready pods": {"warmpool_operator_autoscaler_desired_replicas",
                                               "warmpool_pool_replicas"},
        "Autoscaler: decisions by signal": {"warmpool_operator_autoscaler_decisions_total",
                                            "warmpool_operator_autoscaler_scale_events_total"},
        "Autoscaler: observed miss ratio against target": {"warmpool_operator_autoscaler_observed_miss_ratio"},
    }
    for title, metrics in wanted.items():
        assert metrics <= by_title[title], title
    target = next(p for p in board["panels"] if p["title"] == "Miss ratio against target")
    assert [t["legendFormat"] for t in target["targets"]] == ["{{tenant}}/{{module}}", "target"]
    observed = next(p for p in board["panels"] if p["title"] == "Autoscaler: observed miss ratio against target")
    assert [t["expr"] for t in observed["targets"]][1] == "vector($target)"
    per_tuple = [p for p in board["panels"] if p["type"] == "timeseries" and "tensor_wasm_pool" in json.dumps(p)]
    for panel in per_tuple:
        assert any("tenant" in t["legendFormat"] for t in panel["targets"]), panel["title"]
    variables = [v["name"] for v in board["templating"]["list"]]
    assert variables == ["datasource", "namespace", "warmpool", "tenant", "module", "target"]
    pool_panels = [p for p in board["panels"] if p["type"] != "row" and "job=" in json.dumps(p)]
    for panel in pool_panels:
        for query in panel["targets"]:
            names = metric_names(substitute(query["expr"]))
            if not names or names & {"warmpool_operator_reconcile_duration_seconds_bucket",
                                     "warmpool_operator_reconciles_total"}:
                continue  # a constant, or operator-wide series with no pool to filter by
            assert 'warmpool=~"$warmpool"' in query["expr"], (panel["title"], query["expr"])


def test_dashboard_panels_tile_the_grid_without_overlap() -> None:
    board = json.loads(DASHBOARD.read_text())
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_dashboard_renders_to_a_png(tmp_path: Path) -> None:
    from tools.render_dashboard import ROW_HEIGHT_PX, WIDTH_PX, main

    out = tmp_path / "dashboard.png"
    assert main(["--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    board = json.loads(DASHBOARD.read_text())
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"]) + 2
    assert (width, height) == (WIDTH_PX, rows * ROW_HEIGHT_PX)


@pytest.fixture(scope="module")
def rule(helm: Helm) -> dict[str, Any]:
    docs = helm.template(RULE_VALUES, name="rules")
    (found,) = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    return found


def alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}


def recordings(rule: dict[str, Any]) -> dict[str, str]:
    """Each recording rule's series name and expression, in evaluation order."""
    return {r["record"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"] if "record" in r}


def outer_grouping(expr: str) -> frozenset[str]:
    """The labels of the first aggregation's `by` clause: what a recorded series is labelled with."""
    found: list[frozenset[str]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None and not found:
            found.append(frozenset(node.modifier.labels))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    assert found, expr
    return found[0]


def known_with_recordings(rule: dict[str, Any]) -> dict[str, frozenset[str]]:
    """The exported metrics' labels, and the recorded series' (each recording checked against what precedes it)."""
    known = dict(sample_labels())
    for name, expr in recordings(rule).items():
        assert problems_in(expr, known) == [], name
        known[name] = outer_grouping(expr)
    return known


def test_alerts_cover_misses_resets_reconcile_errors_and_readiness(rule: dict[str, Any]) -> None:
    found = alerts(rule)
    assert set(found) == {"WarmPoolMissRatioHigh", "WarmPoolResetFailures", "WarmPoolNotReady",
                          "WarmPoolReconcileErrors", "WarmPoolOperatorDown"}
    miss = found["WarmPoolMissRatioHigh"]
    assert miss["for"] == "7m"
    ratio, floor = miss["expr"].split("and on (namespace, warmpool, tenant, module)")
    assert ratio.rstrip().endswith("> 0.02")
    assert floor.rstrip().endswith("> 0.5")
    assert "warmpool:tensor_wasm_pool_draws:rate5m" in floor
    assert "warmpool:tensor_wasm_pool_draws_miss:ratio_rate5m" in ratio
    assert [group["interval"] for group in rule["spec"]["groups"]] == ["15s", "15s", "15s"]
    for alert in found.values():
        assert alert["labels"]["team"] == "platform"
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["description"]


def test_every_alert_is_valid_promql_over_exported_metrics(rule: dict[str, Any]) -> None:
    known = known_with_recordings(rule)
    problems = [f"{name}: {p}" for name, alert in alerts(rule).items() for p in problems_in(alert["expr"], known)]
    assert problems == []
    exprs = [alert["expr"] for alert in alerts(rule).values()] + list(recordings(rule).values())
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert {"tensor_wasm_pool_draws_total", "tensor_wasm_pool_reset_failed_total",
            "warmpool_operator_reconcile_errors_total", "warmpool_pool_condition"} <= used


def test_recording_rules_follow_the_naming_convention_per_pool_tuple(rule: dict[str, Any]) -> None:
    """`level:metric:operations`, level `warmpool`: one series per (namespace, warmpool, tenant, module)."""
    recorded = recordings(rule)
    assert set(recorded) == {"warmpool:tensor_wasm_pool_draws:rate5m",
                             "warmpool:tensor_wasm_pool_draws_miss:ratio_rate5m",
                             "warmpool:tensor_wasm_pool_warm_instances:sum"}
    known = known_with_recordings(rule)
    for name, expr in recorded.items():
        level, metric, operations = name.split(":")
        assert level == "warmpool"
        assert any(read.startswith(metric.removesuffix("_miss")) for read in metric_names(expr)), name
        assert operations.endswith("rate5m") == ("rate(" in expr and "[5m]" in expr), name
        assert known[name] == {"namespace", "warmpool", "tenant", "module"}, name
    # Only recorded series are read by later rules: the ratio reads the draw rate recorded before it.
    order = list(recorded)
    assert order.index("warmpool:tensor_wasm_pool_draws:rate5m") < order.index(
        "warmpool:tensor_wasm_pool_draws_miss:ratio_rate5m")
    alert_series = set().union(*(metric_names(alert["expr"]) for alert in alerts(rule).values()))
    assert {"warmpool:tensor_wasm_pool_draws:rate5m",
            "warmpool:tensor_wasm_pool_draws_miss:ratio_rate5m"} <= alert_series


def test_every_pool_alert_names_the_pool(rule: dict[str, Any]) -> None:
    """By the one label scheme: `namespace` and `warmpool`, in the grouping and in the summary."""
    per_tuple = set(recordings(rule))
    for name, alert in alerts(rule).items():
        if name == "WarmPoolOperatorDown":
            continue
        tree = promql_parser.parse(alert["expr"])
        groupings: list[set[str]] = []

        def visit(node: Any, into: list[set[str]] = groupings) -> bool:
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                into.append(set(node.modifier.labels))
            if isinstance(node, promql_parser.VectorSelector) and node.name in per_tuple:
                into.append({"namespace", "warmpool", "tenant", "module"})
            return True

        promql_parser.walk(tree, visit)
        assert groupings, name
        assert all({"namespace", "warmpool"} <= labels for labels in groupings), (name, groupings)
        assert "$labels.warmpool" in alert["annotations"]["summary"], name


def test_pool_not_ready_reads_the_operators_condition_not_the_pods(rule: dict[str, Any]) -> None:
    """A pool whose pods all stay Pending exports no runtime series at all; the operator still sees it."""
    expr = alerts(rule)["WarmPoolNotReady"]["expr"]
    assert metric_names(expr) == {"warmpool_pool_condition"}
    assert 'condition="Ready"' in expr
    assert 'status="False"' in expr


def test_every_alert_links_a_runbook_section_that_exists(rule: dict[str, Any]) -> None:
    anchors = {github_anchor(line.lstrip("#").strip())
               for line in TROUBLESHOOTING.read_text().splitlines() if line.startswith("#")}
    for name, alert in alerts(rule).items():
        url = alert["annotations"]["runbook_url"]
        base, anchor = url.split("#")
        assert base == "https://docs.example.com/warmpool/troubleshooting"
        assert anchor == name.lower()
        assert anchor in anchors, name


def github_anchor(heading: str) -> str:
    """How GitHub (and most Markdown renderers) turn a heading into an anchor."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def test_dev_prometheus_rules_are_the_charts(helm: Helm) -> None:
    """tools/prometheus/rules.yaml (loaded by `warmpool dev up --prometheus`) is the chart's rendering."""
    assert prometheus_rules.OUTPUT.read_text() == prometheus_rules.rules_file(
        helm.template(prometheus_rules.VALUES, name="dev-rules")
    ), "run python -m tools.prometheus_rules"


def test_alert_annotations_are_valid_go_templates_for_prometheus(rule: dict[str, Any]) -> None:
    """Helm must leave Prometheus' own {{ $labels.x }} placeholders in place, balanced."""
    for name, alert in alerts(rule).items():
        for text in alert["annotations"].values():
            assert text.count("{{") == text.count("}}"), name
            for placeholder in re.findall(r"\{\{(.*?)\}\}", text):
                assert placeholder.strip().startswith(("$labels.", "$value")), (name, placeholder)

"""Generates the Grafana dashboard the chart ships (charts/warmpool-operator/dashboards/warmpool.json)."""

# Run `python -m tools.dashboard` after changing a panel; `--check` exits 1 when the file is stale.
# Scrape jobs: `warmpool-runtime` (the chart's PodMonitor) and `warmpool-operator` (its ServiceMonitor).
# Both name a pool by `namespace` and `warmpool`; pod counts and conditions come from the operator.

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.generated import generator_main

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "charts" / "warmpool-operator" / "dashboards" / "warmpool.json"

RUNTIME_JOB = "warmpool-runtime"
OPERATOR_JOB = "warmpool-operator"
UID = "warmpool-overview"

SEL = f'job="{RUNTIME_JOB}", namespace=~"$namespace", warmpool=~"$warmpool", tenant=~"$tenant", module=~"$module"'
OP_SEL = f'job="{OPERATOR_JOB}"'
POOL_SEL = f'{OP_SEL}, namespace=~"$namespace", warmpool=~"$warmpool"'
BY = "tenant, module"
RATE = "$__rate_interval"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    kind: str  # "timeseries" | "stat" | "row"
    grid: tuple[int, int, int, int]  # x, y, w, h on Grafana's 24-column grid
    queries: tuple[Query, ...] = ()
    unit: str = "short"
    description: str = ""
    thresholds: tuple[tuple[str, float | None], ...] = (("green", None),)
    overrides: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def miss_ratio(by: str) -> str:
    group = f" by ({by})" if by else ""
    return (
        f'sum{group} (rate(tensor_wasm_pool_draws_total{{{SEL}, result="miss"}}[{RATE}]))\n'
        f"/\nsum{group} (rate(tensor_wasm_pool_draws_total{{{SEL}}}[{RATE}]))"
    )


def latency(quantile: str) -> Query:
    expr = (
        f"histogram_quantile({quantile}, sum by ({BY}, le) "
        f"(rate(tensor_wasm_invocation_duration_seconds_bucket{{{SEL}}}[{RATE}])))"
    )
    return Query(expr, f"{{{{tenant}}}}/{{{{module}}}} p{quantile[2:].ljust(2, '0')}")


RATIO_STEPS: tuple[tuple[str, float | None], ...] = (("green", None), ("orange", 0.01), ("red", 0.05))

PANELS: tuple[Panel, ...] = (
    Panel("Overview", "row", (0, 0, 24, 1)),
    Panel(
        "Miss ratio", "stat", (0, 1, 5, 4),
        (Query(miss_ratio(""), "miss ratio"),),
        unit="percentunit", thresholds=RATIO_STEPS,
        description="Share of draws from the warm pool that found no warm instance (instantiated on the request path).",
    ),
    Panel(
        "Invocations per second", "stat", (5, 1, 5, 4),
        (Query(f"sum (rate(tensor_wasm_invocations_total{{{SEL}}}[{RATE}]))", "invocations/s"),),
        unit="reqps", description="Invocations answered by the selected pools, every outcome code.",
    ),
    Panel(
        "Warm instances", "stat", (10, 1, 4, 4),
        (Query(f"sum (tensor_wasm_pool_warm_instances{{{SEL}}})", "warm"),),
        description="Idle, fully instantiated instances ready to serve now.",
    ),
    Panel(
        "Runtime pods ready / desired", "stat", (14, 1, 5, 4),
        (
            Query(f'sum (warmpool_pool_replicas{{{POOL_SEL}, state="ready"}})', "ready"),
            Query(f'sum (warmpool_pool_replicas{{{POOL_SEL}, state="desired"}})', "desired"),
        ),
        description="Pods of the selected pools' Deployments, as the operator reports them; Ready means warm.",
    ),
    Panel(
        "WarmPools not Ready", "stat", (19, 1, 5, 4),
        (Query(f'sum (warmpool_pool_condition{{{POOL_SEL}, condition="Ready", status="False"}})', "not Ready"),),
        thresholds=(("green", None), ("red", 1.0)),
        description="Pools whose Ready condition is False (alert WarmPoolNotReady once it lasts).",
    ),
    Panel("Warm pool, per tenant and module", "row", (0, 5, 24, 1)),
    Panel(
        "Draws per second: hits and misses", "timeseries", (0, 6, 12, 8),
        (Query(
            f"sum by ({BY}, result) (rate(tensor_wasm_pool_draws_total{{{SEL}}}[{RATE}]))",
            "{{tenant}}/{{module}} {{result}}",
        ),),
        unit="reqps", description="A hit is served by a warm instance; a miss instantiates on the request path.",
    ),
    Panel(
        "Miss ratio against target", "timeseries", (12, 6, 12, 8),
        (
            Query(miss_ratio(BY), "{{tenant}}/{{module}}"),
            Query("vector($target)", "target"),
        ),
        unit="percentunit",
        description="The autoscaler sizes each pool to keep this at its spec.autoscaling.targetMissRatio "
        "(the dashboard's `target` variable draws it).",
        overrides=({
            "matcher": {"id": "byName", "options": "target"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
            ],
        },),
    ),
    Panel(
        "Warm instances, capacity and in-flight", "timeseries", (0, 14, 12, 8),
        (
            Query(f"sum by ({BY}) (tensor_wasm_pool_warm_instances{{{SEL}}})", "{{tenant}}/{{module}} warm"),
            Query(f"sum by ({BY}) (tensor_wasm_pool_capacity_instances{{{SEL}}})", "{{tenant}}/{{module}} capacity"),
            Query(f"sum by ({BY}) (tensor_wasm_pool_in_flight{{{SEL}}})", "{{tenant}}/{{module}} in flight"),
        ),
        description="Warm: idle instances now. Capacity: the configured warm floor, summed over pods. "
        "In flight: invocations running now.",
    ),
    Panel(
        "Runtime pods: desired and ready", "timeseries", (12, 14, 12, 8),
        (
            Query(f"sum by (namespace, warmpool, state) (warmpool_pool_replicas{{{POOL_SEL}}})",
                  "{{warmpool}} {{state}}"),
        ),
        description="Desired is what the Deployment asks for (the autoscaler or spec.replicas); ready pods are warm.",
    ),
    Panel("Invocations", "row", (0, 22, 24, 1)),
    Panel(
        "Invocation latency (p50, p95, p99)", "timeseries", (0, 23, 12, 8),
        (latency("0.5"), latency("0.95"), latency("0.99")),
        unit="s", description="Time inside the runtime, from request to response.",
    ),
    Panel(
        "Invocations by outcome code", "timeseries", (12, 23, 12, 8),
        (Query(f"sum by (code) (rate(tensor_wasm_invocations_total{{{SEL}}}[{RATE}]))", "{{code}}"),),
        unit="reqps", description="ok, or the error code of docs/troubleshooting.md.",
    ),
    Panel(
        "Guest traps by trap code", "timeseries", (0, 31, 12, 7),
        (Query(f"sum by ({BY}, trap) (rate(tensor_wasm_traps_total{{{SEL}}}[{RATE}]))",
               "{{tenant}}/{{module}} {{trap}}"),),
        unit="reqps",
    ),
    Panel(
        "Instance reset failures", "timeseries", (12, 31, 12, 7),
        (Query(
            f'sum by (tenant) (increase(tensor_wasm_pool_reset_failed_total{{job="{RUNTIME_JOB}", '
            f'namespace=~"$namespace", warmpool=~"$warmpool", tenant=~"$tenant"}}[{RATE}]))',
            "{{tenant}}",
        ),),
        description="Used instances that could not be replaced by a fresh warm one "
        "(retried; the pod is not Ready meanwhile).",
    ),
    Panel("Autoscaler", "row", (0, 38, 24, 1)),
    Panel(
        "Autoscaler: desired and ready pods", "timeseries", (0, 39, 8, 8),
        (
            Query(f"sum by (namespace, warmpool) (warmpool_operator_autoscaler_desired_replicas{{{POOL_SEL}}})",
                  "{{warmpool}} desired"),
            Query(f'sum by (namespace, warmpool) (warmpool_pool_replicas{{{POOL_SEL}, state="ready"}})',
                  "{{warmpool}} ready"),
        ),
        description="What the autoscaler's last decision asked for against the pods Ready now "
        "(pools with spec.autoscaling.enabled).",
    ),
    Panel(
        "Autoscaler: decisions by signal", "timeseries", (8, 39, 8, 8),
        (
            Query(f"sum by (warmpool, signal) "
                  f"(rate(warmpool_operator_autoscaler_decisions_total{{{POOL_SEL}}}[{RATE}]))",
                  "{{warmpool}} {{signal}}"),
            Query(f"sum by (warmpool, direction) "
                  f"(increase(warmpool_operator_autoscaler_scale_events_total{{{POOL_SEL}}}[{RATE}]))",
                  "{{warmpool}} scaled {{direction}}"),
        ),
        unit="short",
        description="The signal that sized each decision (stable, panic, burst, prewarm, ...; hold without data), "
        "and the scale events it made.",
    ),
    Panel(
        "Autoscaler: observed miss ratio against target", "timeseries", (16, 39, 8, 8),
        (
            Query(f"max by (namespace, warmpool) (warmpool_operator_autoscaler_observed_miss_ratio{{{POOL_SEL}}})",
                  "{{warmpool}}"),
            Query("vector($target)", "target"),
        ),
        unit="percentunit",
        description="Misses / invocations over the stable window, as the autoscaler measured it from the pods.",
        overrides=({
            "matcher": {"id": "byName", "options": "target"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
            ],
        },),
    ),
    Panel("Operator", "row", (0, 47, 24, 1)),
    Panel(
        "Reconciliations by result", "timeseries", (0, 48, 8, 7),
        (Query(f"sum by (result) (rate(warmpool_operator_reconciles_total{{{OP_SEL}}}[{RATE}]))", "{{result}}"),),
        unit="ops",
    ),
    Panel(
        "Reconcile problems by reason", "timeseries", (8, 48, 8, 7),
        (Query(f"sum by (namespace, warmpool, reason) "
               f"(rate(warmpool_operator_reconcile_errors_total{{{POOL_SEL}}}[{RATE}]))",
               "{{namespace}}/{{warmpool}} {{reason}}"),),
        unit="ops", description="Reasons are the WarmPool condition reasons of docs/troubleshooting.md.",
    ),
    Panel(
        "Reconcile duration p95", "timeseries", (16, 48, 8, 7),
        (Query(
            f"histogram_quantile(0.95, sum by (trigger, le) "
            f"(rate(warmpool_operator_reconcile_duration_seconds_bucket{{{OP_SEL}}}[{RATE}])))",
            "{{trigger}}",
        ),),
        unit="s",
    ),
)


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def templating() -> list[dict[str, Any]]:
    base = f'tensor_wasm_pool_capacity_instances{{job="{RUNTIME_JOB}"'
    return [
        {
            "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {"selected": False, "text": "default", "value": "default"},
        },
        variable("namespace", "Namespace", f"label_values({base}}}, namespace)"),
        variable("warmpool", "WarmPool", f'label_values({base}, namespace=~"$namespace"}}, warmpool)'),
        variable("tenant", "Tenant", f'label_values({base}, namespace=~"$namespace", warmpool=~"$warmpool"}}, tenant)'),
        variable("module", "Module",
                 f'label_values({base}, namespace=~"$namespace", warmpool=~"$warmpool", tenant=~"$tenant"}}, module)'),
        {
            "name": "target", "label": "Target miss ratio", "type": "textbox", "query": "0.01",
            "current": {"selected": False, "text": "0.01", "value": "0.01"},
        },
    ]


def panel_json(panel: Panel, panel_id: int) -> dict[str, Any]:
    x, y, w, h = panel.grid
    out: dict[str, Any] = {"id": panel_id, "title": panel.title, "type": panel.kind,
                           "gridPos": {"x": x, "y": y, "w": w, "h": h}}
    if panel.kind == "row":
        out.update({"collapsed": False, "panels": []})
        return out
    out["datasource"] = {"type": "prometheus", "uid": "${datasource}"}
    if panel.description:
        out["description"] = panel.description
    out["targets"] = [
        {"refId": chr(ord("A") + i), "expr": q.expr, "legendFormat": q.legend,
         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        for i, q in enumerate(panel.queries)
    ]
    steps = [{"color": color, "value": value} for color, value in panel.thresholds]
    out["fieldConfig"] = {
        "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
        "overrides": list(panel.overrides),
    }
    if panel.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "area", "textMode": "value_and_name"}
    else:
        out["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                    "showPoints": "never"}
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    return out


def build_dashboard() -> dict[str, Any]:
    """The whole dashboard document, deterministic (stable ids, no timestamps)."""
    return {
        "uid": UID,
        "title": "warmpool",
        "description": "Warm pools of WebAssembly instances: per tenant and module, and the operator.",
        "tags": ["warmpool", "webassembly"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": templating()},
        "annotations": {"list": []},
        "links": [],
        "panels": [panel_json(panel, i + 1) for i, panel in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return generator_main(argv, doc=__doc__, output=OUTPUT, render=render, tool="dashboard")


if __name__ == "__main__":
    sys.exit(main())

"""Operator metrics in a registry passed in, and the HTTP endpoint that exposes them."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest


@dataclass(frozen=True, slots=True)
class OperatorMetrics:
    reconciles: Counter
    """warmpool_operator_reconciles_total{trigger, result}: result is ok, stalled or error."""
    errors: Counter
    """warmpool_operator_reconcile_errors_total{reason}: problems and failures by reason."""
    duration: Histogram
    """warmpool_operator_reconcile_duration_seconds{trigger}."""
    child_writes: Counter
    """warmpool_operator_child_writes_total{kind, verb}: creates and patches of children."""
    desired_replicas: Gauge
    """warmpool_operator_autoscaler_desired_replicas{warmpool_namespace, warmpool}: the last decision."""
    observed_miss_ratio: Gauge
    """warmpool_operator_autoscaler_observed_miss_ratio{warmpool_namespace, warmpool}: absent without data."""
    scale_events: Counter
    """warmpool_operator_autoscaler_scale_events_total{warmpool_namespace, warmpool, direction}."""
    scrape_failures: Counter
    """warmpool_operator_autoscaler_scrape_failures_total{warmpool_namespace, warmpool}."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> OperatorMetrics:
        return cls(
            reconciles=Counter(
                "warmpool_operator_reconciles_total",
                "Reconciliations of WarmPools, by what triggered them and how they ended.",
                ["trigger", "result"],
                registry=registry,
            ),
            errors=Counter(
                "warmpool_operator_reconcile_errors_total",
                "Reconciliations that found a blocking problem or failed, by reason.",
                ["reason"],
                registry=registry,
            ),
            duration=Histogram(
                "warmpool_operator_reconcile_duration_seconds",
                "Duration of one reconciliation.",
                ["trigger"],
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
                registry=registry,
            ),
            child_writes=Counter(
                "warmpool_operator_child_writes_total",
                "Writes to child objects (a no-op reconciliation makes none).",
                ["kind", "verb"],
                registry=registry,
            ),
            # The pool is named by warmpool_namespace/warmpool: `namespace` is the label Prometheus
            # gives the operator pod's own namespace.
            desired_replicas=Gauge(
                "warmpool_operator_autoscaler_desired_replicas",
                "Runtime pods the autoscaler's last decision asked for, per autoscaled WarmPool.",
                ["warmpool_namespace", "warmpool"],
                registry=registry,
            ),
            observed_miss_ratio=Gauge(
                "warmpool_operator_autoscaler_observed_miss_ratio",
                "Misses / invocations over the stable window, as the autoscaler measured it.",
                ["warmpool_namespace", "warmpool"],
                registry=registry,
            ),
            scale_events=Counter(
                "warmpool_operator_autoscaler_scale_events",
                "Changes of a Deployment's replicas made by the autoscaler, by direction (up, down).",
                ["warmpool_namespace", "warmpool", "direction"],
                registry=registry,
            ),
            scrape_failures=Counter(
                "warmpool_operator_autoscaler_scrape_failures",
                "Scrapes of a Ready runtime pod's /metrics that gave no usable pool metrics.",
                ["warmpool_namespace", "warmpool"],
                registry=registry,
            ),
        )


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> web.AppRunner:
    """Start `GET /metrics` on host:port; the caller cleans the runner up."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

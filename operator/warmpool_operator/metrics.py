"""Operator metrics in a registry passed in, and the HTTP endpoint that exposes them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0,
                     30.0)
"""Upper bounds of the reconciliation histogram (seconds): a reconciliation waiting on a busy API server or
CPU takes 1 to 10 s, where a quantile needs steps finer than 2.5, 5, 10 to mean something."""

@dataclass(frozen=True, slots=True)
class OperatorMetrics:
    reconciles: Counter
    """warmpool_operator_reconciles_total{trigger, result}: result is ok, stalled or error."""
    errors: Counter
    """warmpool_operator_reconcile_errors_total{namespace, warmpool, reason}: problems and failures by reason."""
    duration: Histogram
    """warmpool_operator_reconcile_duration_seconds{trigger}."""
    child_writes: Counter
    """warmpool_operator_child_writes_total{kind, verb}: creates and patches of children."""
    desired_replicas: Gauge
    """warmpool_operator_autoscaler_desired_replicas{namespace, warmpool}: the last decision."""
    observed_miss_ratio: Gauge
    """warmpool_operator_autoscaler_observed_miss_ratio{namespace, warmpool}: absent without data."""
    scale_events: Counter
    """warmpool_operator_autoscaler_scale_events_total{namespace, warmpool, direction}."""
    scrape_failures: Counter
    """warmpool_operator_autoscaler_scrape_failures_total{namespace, warmpool}."""
    decisions: Counter
    """warmpool_operator_autoscaler_decisions_total{namespace, warmpool, signal}: what sized each decision."""
    conditions: Gauge
    """warmpool_pool_condition{namespace, warmpool, condition, status}: 1 for the status a condition has."""
    replicas: Gauge
    """warmpool_pool_replicas{namespace, warmpool, state}: runtime pods `desired` and `ready`, from the status."""
    api_requests: Counter
    """warmpool_operator_api_requests_total{verb, resource, code}: the operator's own Kubernetes API requests."""

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
                "Reconciliations that found a blocking problem or failed, by WarmPool and reason.",
                ["namespace", "warmpool", "reason"],
                registry=registry,
            ),
            duration=Histogram(
                "warmpool_operator_reconcile_duration_seconds",
                "Duration of one reconciliation.",
                ["trigger"],
                buckets=RECONCILE_BUCKETS,
                registry=registry,
            ),
            child_writes=Counter(
                "warmpool_operator_child_writes_total",
                "Writes to child objects (a no-op reconciliation makes none).",
                ["kind", "verb"],
                registry=registry,
            ),
            # Pools are named by namespace/warmpool, the labels the runtime pods' series get from
            # scrape relabelling; the operator's scrape keeps them (honor_labels).
            desired_replicas=Gauge(
                "warmpool_operator_autoscaler_desired_replicas",
                "Runtime pods the autoscaler's last decision asked for, per autoscaled WarmPool.",
                ["namespace", "warmpool"],
                registry=registry,
            ),
            observed_miss_ratio=Gauge(
                "warmpool_operator_autoscaler_observed_miss_ratio",
                "Misses / invocations over the stable window, as the autoscaler measured it.",
                ["namespace", "warmpool"],
                registry=registry,
            ),
            scale_events=Counter(
                "warmpool_operator_autoscaler_scale_events",
                "Changes of a Deployment's replicas made by the autoscaler, by direction (up, down).",
                ["namespace", "warmpool", "direction"],
                registry=registry,
            ),
            scrape_failures=Counter(
                "warmpool_operator_autoscaler_scrape_failures",
                "Scrapes of a Ready runtime pod's /metrics that gave no usable pool metrics.",
                ["namespace", "warmpool"],
                registry=registry,
            ),
            decisions=Counter(
                "warmpool_operator_autoscaler_decisions",
                "Autoscaler decisions by the signal that sized them (stable, baseline, stable_after_drop, "
                "stable_rising, panic, burst, climb, prewarm; hold when nothing was measured).",
                ["namespace", "warmpool", "signal"],
                registry=registry,
            ),
            conditions=Gauge(
                "warmpool_pool_condition",
                "The WarmPool's status conditions (Ready, Reconciling, Stalled): 1 for the status each has now, "
                "0 for the others.",
                ["namespace", "warmpool", "condition", "status"],
                registry=registry,
            ),
            api_requests=Counter(
                "warmpool_operator_api_requests",
                "Kubernetes API requests of the operator's reconciliation, autoscaler and leader election (kopf's "
                "own watches and patches not included), by verb, resource and HTTP status code (<error>: no answer).",
                ["verb", "resource", "code"],
                registry=registry,
            ),
            replicas=Gauge(
                "warmpool_pool_replicas",
                "Runtime pods of the WarmPool's Deployment: state=desired (its spec) and state=ready (warm), "
                "as status.readiness says.",
                ["namespace", "warmpool", "state"],
                registry=registry,
            ),
        )

    def record_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Publish the conditions and pod counts of a WarmPool's status as a reconciliation wrote it."""
        readiness = READINESS.fullmatch(str(status.get("readiness", "")))
        if readiness is not None:
            self.replicas.labels(namespace, name, "ready").set(int(readiness["ready"]))
            self.replicas.labels(namespace, name, "desired").set(int(readiness["desired"]))
        raw = status.get("conditions")
        for condition in raw if isinstance(raw, Sequence) else ():
            if not isinstance(condition, Mapping) or not isinstance(condition.get("type"), str):
                continue
            for value in CONDITION_STATUSES:
                self.conditions.labels(namespace, name, condition["type"], value).set(
                    1 if condition.get("status") == value else 0
                )

    def forget_pool(self, namespace: str, name: str) -> None:
        """Drop a deleted WarmPool's status, error and decision series."""
        for metric in (self.conditions, self.replicas, self.errors, self.decisions):
            for labels in _series_of(metric, namespace, name):
                metric.remove(*labels)


CONDITION_STATUSES = ("True", "False", "Unknown")
READINESS = re.compile(r"(?P<ready>\d+)/(?P<desired>\d+)")
"""status.readiness: Ready pods / pods the Deployment asks for."""


def _series_of(metric: Gauge | Counter, namespace: str, name: str) -> list[tuple[str, ...]]:
    # prometheus_client keeps a metric's children by label values; the pool's come first.
    return [tuple(labels) for labels in list(metric._metrics) if tuple(labels[:2]) == (namespace, name)]


def register_process_collectors(registry: CollectorRegistry) -> None:
    """The standard process_*, python_gc_* and python_info series, as the default registry has them."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


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

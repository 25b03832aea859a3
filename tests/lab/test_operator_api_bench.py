"""The pure parts of `warmpool bench operator-api`: histogram quantiles and which API requests count."""

from __future__ import annotations

import pytest

from warmpool.cli import main
from warmpool_lab.fleet_cluster_bench import api_requests
from warmpool_lab.operator_api_bench import (
    Reading,
    histogram,
    phase_figures,
    pool_manifest,
    quantile,
    reconcile_requests,
)

pytestmark = pytest.mark.unit

EXPOSITION = """\
# TYPE warmpool_operator_reconcile_duration_seconds histogram
warmpool_operator_reconcile_duration_seconds_bucket{trigger="create",le="0.1"} 2.0
warmpool_operator_reconcile_duration_seconds_bucket{trigger="create",le="1.0"} 8.0
warmpool_operator_reconcile_duration_seconds_bucket{trigger="create",le="+Inf"} 10.0
warmpool_operator_reconcile_duration_seconds_count{trigger="create"} 10.0
warmpool_operator_reconcile_duration_seconds_sum{trigger="create"} 6.0
warmpool_operator_reconcile_duration_seconds_bucket{trigger="resync",le="0.1"} 10.0
warmpool_operator_reconcile_duration_seconds_bucket{trigger="resync",le="1.0"} 10.0
warmpool_operator_reconcile_duration_seconds_bucket{trigger="resync",le="+Inf"} 10.0
warmpool_operator_reconcile_duration_seconds_count{trigger="resync"} 10.0
warmpool_operator_reconcile_duration_seconds_sum{trigger="resync"} 0.5
"""

APISERVER = """\
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",resource="services",subresource="",verb="GET"} 7
apiserver_request_total{code="404",resource="services",subresource="",verb="GET"} 1
apiserver_request_total{code="200",resource="warmpools",subresource="status",verb="PATCH"} 3
apiserver_request_total{code="200",resource="warmpools",subresource="",verb="APPLY"} 20
apiserver_request_total{code="200",resource="deployments",subresource="",verb="UPDATE"} 5
apiserver_request_total{code="200",resource="replicasets",subresource="",verb="POST"} 5
apiserver_request_total{code="0",resource="pods",subresource="",verb="WATCH"} 2
"""


def test_quantiles_interpolate_within_the_bucket_like_histogram_quantile() -> None:
    buckets = histogram(EXPOSITION, "warmpool_operator_reconcile_duration_seconds")
    assert buckets == {0.1: 12.0, 1.0: 18.0, float("inf"): 20.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1 * 10 / 12)
    assert quantile(0.75, buckets) == pytest.approx(0.1 + 0.9 * (15 - 12) / 6)
    assert quantile(0.95, buckets) == 1.0  # in +Inf: the highest finite bound, as Prometheus answers
    assert quantile(0.5, {}) is None


def test_only_requests_reconciliation_makes_count() -> None:
    after = api_requests(APISERVER)
    assert reconcile_requests({}, after) == {"GET services": 8, "PATCH warmpools/status": 3}
    assert reconcile_requests(after, after) == {}


def test_a_phase_gives_requests_per_reconcile() -> None:
    empty = Reading({}, 0.0, 0.0, 0.0, {})
    after = Reading(histogram(EXPOSITION, "warmpool_operator_reconcile_duration_seconds"), 20.0, 6.5, 0.0,
                    api_requests(APISERVER))
    figures = phase_figures(empty, after)
    assert figures["reconciles"] == 20
    assert figures["api_requests"] == 11
    assert figures["api_requests_per_reconcile"] == 0.55
    assert figures["duration_mean_s"] == 0.325
    assert figures["operator_counted_requests"] is None


def test_pools_have_no_pods_and_distinct_modules() -> None:
    first, second = pool_manifest(0, 2), pool_manifest(1, 2)
    assert first["spec"]["replicas"] == 0
    assert first["spec"]["module"]["sha256"] != second["spec"]["module"]["sha256"]
    assert all(c in "0123456789abcdef" for c in first["spec"]["module"]["sha256"])


def test_the_command_refuses_an_empty_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "operator-api", "--pools", "0"]) == 2
    assert "--pools must be >= 1" in capsys.readouterr().err

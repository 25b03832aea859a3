"""Reading a runtime pod's /metrics exposition."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from warmpool_lab.pod_exposition import render_pool_metrics
from warmpool_operator.scaling.collector import scrape_from_text
from warmpool_operator.scaling.exposition import (
    ExpositionError,
    PodMetrics,
    parse_samples,
    pool_metrics,
)

pytestmark = pytest.mark.unit


def exposition_from_prometheus_client() -> str:
    """What a runtime built on prometheus_client serves for two tuples."""
    registry = CollectorRegistry()
    draws = Counter("tensor_wasm_pool_draws", "draws", ["tenant", "module", "result"], registry=registry)
    warm = Gauge("tensor_wasm_pool_warm_instances", "idle", ["tenant", "module"], registry=registry)
    capacity = Gauge("tensor_wasm_pool_capacity_instances", "floor", ["tenant", "module"], registry=registry)
    in_flight = Gauge("tensor_wasm_pool_in_flight", "running", ["tenant", "module"], registry=registry)
    for tenant, module, hits, misses, idle, running in (
        ("acme", "3f5c00000000", 120, 3, 10, 6),
        ("acme", "99aa00000000", 7, 1, 4, 0),
        ("zeta", "3f5c00000000", 50, 0, 2, 2),
    ):
        draws.labels(tenant, module, "hit").inc(hits)
        draws.labels(tenant, module, "miss").inc(misses)
        warm.labels(tenant, module).set(idle)
        capacity.labels(tenant, module).set(16)
        in_flight.labels(tenant, module).set(running)
    return generate_latest(registry).decode()


def test_reads_what_prometheus_client_renders_for_one_tuple() -> None:
    metrics = pool_metrics(exposition_from_prometheus_client(), tenant="acme", module="3f5c00000000")
    assert metrics == PodMetrics(hits=120.0, misses=3.0, warm=10.0, capacity=16.0, in_flight=6.0)


def test_sums_the_tuples_a_selection_matches() -> None:
    metrics = pool_metrics(exposition_from_prometheus_client(), tenant="acme")
    assert metrics == PodMetrics(hits=127.0, misses=4.0, warm=14.0, capacity=32.0, in_flight=6.0)


def test_no_pool_metric_for_the_selection_is_no_data() -> None:
    assert pool_metrics(exposition_from_prometheus_client(), tenant="nobody") is None
    assert pool_metrics("# only a comment\nprocess_cpu_seconds_total 3.5\n") is None


def test_labels_with_escapes_and_timestamps() -> None:
    text = (
        'tensor_wasm_pool_in_flight{tenant="a\\"b",module="x\\\\y"} 3 1700000000000\n'
        'tensor_wasm_pool_in_flight{tenant="other",module="m"} 5\n'
    )
    samples = list(parse_samples(text))
    assert samples[0].label("tenant") == 'a"b'
    assert samples[0].label("module") == "x\\y"
    assert samples[0].value == 3.0
    assert pool_metrics(text, tenant='a"b') == PodMetrics(0.0, 0.0, 0.0, 0.0, 3.0)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
def test_non_finite_values_make_the_scrape_unusable(value: str) -> None:
    text = f'tensor_wasm_pool_in_flight{{tenant="t",module="m"}} {value}\n'
    with pytest.raises(ExpositionError, match="tensor_wasm_pool_in_flight"):
        pool_metrics(text)
    scrape = scrape_from_text("pod-a", text)
    assert scrape.metrics is None
    assert scrape.error is not None


def test_malformed_lines_name_the_line() -> None:
    with pytest.raises(ExpositionError, match="line 2"):
        list(parse_samples("ok_metric 1\nbroken{tenant=unquoted} 1\n"))
    assert scrape_from_text("pod-a", "tensor_wasm_pool_in_flight{\n").metrics is None


def test_render_and_parse_round_trip() -> None:
    metrics = PodMetrics(hits=12.0, misses=2.0, warm=5.0, capacity=16.0, in_flight=13.0)
    text = render_pool_metrics(metrics, tenant="acme", module="3f5c00000000")
    assert pool_metrics(text, tenant="acme", module="3f5c00000000") == metrics
    assert scrape_from_text("pod-a", text, tenant="acme").metrics == metrics

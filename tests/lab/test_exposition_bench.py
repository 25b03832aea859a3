"""The parser benchmark compares like with like: both parsers read the same numbers."""

from __future__ import annotations

import pytest

from warmpool_lab.exposition_bench import bench_parse, pool_metrics_prometheus_client, runtime_exposition
from warmpool_operator.scaling.exposition import pool_metrics

pytestmark = pytest.mark.unit


def test_both_parsers_read_every_tuple_alike() -> None:
    text = runtime_exposition(12)
    for i in range(12):
        tenant, module = f"tenant-{i % 50}", f"{i:012x}"
        ours = pool_metrics(text, tenant=tenant, module=module)
        assert ours is not None
        assert ours == pool_metrics_prometheus_client(text, tenant, module)
        assert (ours.hits, ours.misses, ours.capacity) == (1000 + i, i % 7, 16)


def test_bench_reports_both_timings() -> None:
    timing = bench_parse(tuples=5, repeat=1)
    assert timing.tuples == 5
    assert timing.lines > 5 * 10
    assert timing.ours_seconds > 0
    assert timing.prometheus_client_seconds > 0

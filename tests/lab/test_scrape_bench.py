"""`warmpool bench exposition`: a real runtime's /metrics and /stats, read alike by the operator, measured."""

from __future__ import annotations

import pytest

from warmpool.cli import main
from warmpool_lab.scrape_bench import ScrapeCost, measure, table

pytestmark = pytest.mark.component


def test_a_small_runtime_is_measured_in_both_forms() -> None:
    cost = measure(tuples=4, repeat=1)
    assert cost.tuples == 4
    assert 0 < cost.stats_bytes < cost.metrics_bytes
    assert cost.metrics_ingest_ms > 0
    assert cost.stats_ingest_ms > 0
    assert cost.metrics_runtime_ms >= 0
    assert cost.as_json()["bytes_ratio"] == round(cost.metrics_bytes / cost.stats_bytes, 1)


def test_the_table_has_a_row_per_size() -> None:
    costs = [ScrapeCost(100, 466_335, 9_001, 63.0, 2.3, 104.0, 1.4),
             ScrapeCost(1000, 4_638_653, 88_205, 597.0, 13.5, 1153.0, 7.6)]
    rows = table(costs).splitlines()
    assert rows[1] == ("| 1,000 | 4,530 KiB | 86.1 KiB | 53x | 597.0 ms | 13.50 ms | 44x | 1,153.0 ms | 7.60 ms "
                       "| 152x |")
    assert len(rows) == 2


@pytest.mark.parametrize("argv", [["--tuples", "0"], ["--tuples", "a,b"], ["--repeat", "0"]])
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "exposition", *argv]) == 2
    assert "--tuples must be positive integers" in capsys.readouterr().err

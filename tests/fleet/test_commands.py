"""`simulate_fleet_main` and `bench_fleet_main` on small generated traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from warmpool_lab.fleet.commands import BenchRow, format_markdown, simulate_fleet_main
from warmpool_lab.fleet.generate import SHAPES, Family, generate
from warmpool_lab.fleet.trace import load_tenant_trace

pytestmark = pytest.mark.unit

SMALL = Family("small", tenants=12, total_rate=15.0, seconds=700.0, timer_periods=(60.0, 120.0))


def test_generated_traces_are_deterministic_and_shaped() -> None:
    first, again = generate(SMALL, 3), generate(SMALL, 3)
    assert np.array_equal(first.arrivals, again.arrivals)
    assert np.array_equal(first.tenant, again.tenant)
    assert not np.array_equal(first.arrivals[:50], generate(SMALL, 4).arrivals[:50])
    assert len(first.tenants) == 12
    assert all(name.rsplit("-", 1)[0] in SHAPES for name in first.tenants)
    assert first.arrivals[-1] < first.end == 700.0


def test_trace_round_trip(tmp_path: Path) -> None:
    trace = generate(SMALL, 1)
    path = tmp_path / "small.csv.gz"
    trace.save(path)
    loaded = load_tenant_trace(path)
    assert len(loaded) == len(trace)
    assert sorted(loaded.tenants) == sorted(trace.tenants)
    assert np.allclose(loaded.arrivals, trace.arrivals, atol=1e-4)


def test_simulate_json_and_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "small.csv.gz"
    generate(SMALL, 1).save(path)
    timeline = tmp_path / "out.csv"
    argv = [
        "--fleet", "--trace", str(path), "--startup", "5", "--resize", "1", "--cap", "1024", "--min-pods", "2",
        "--target-miss", "0.01", "--timeline", str(timeline), "--json",
    ]
    assert simulate_fleet_main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("miss_ratio", "tenant_p95_miss_ratio", "memory_mb_seconds"):
        assert isinstance(out[key], float)
    assert 0.0 <= out["miss_ratio"] <= 1.0
    assert out["max_warm_per_pod"] <= 1024
    lines = timeline.read_text().splitlines()
    assert lines[0] == "t,what,value"
    assert lines[1] == "0,pods,2"
    assert all(len(line.split(",")) == 3 for line in lines)


def test_simulate_rejects_a_single_tenant_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("t,duration\n0.1,0.2\n")
    assert simulate_fleet_main(["--trace", str(path)]) == 2
    assert "t,duration,tenant" in capsys.readouterr().err


def test_markdown_table_and_goals() -> None:
    rows = [
        BenchRow("x", "fleet", 0.004, 0.02, 1000.0, 1.1, 0.02, 900, 1024),
        BenchRow("x", "static", 0.009, 0.0, 5000.0, 5.5, 0.1, 3, 1024),
    ]
    text = format_markdown(rows)
    assert "| x | fleet | 0.40% | 2.00% | 1,000 | 1.100 | 0.0200 | 900 (1024) |" in text
    assert "NOT MET" not in text
    failing = format_markdown([BenchRow("x", "fleet", 0.02, 0.02, 1000.0, 1.4, 0.02, 1024, 1024)])
    assert failing.count("NOT MET") == 2


def test_warmpool_cli_dispatches_simulate_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from warmpool.cli import main

    path = tmp_path / "small.csv"
    generate(SMALL, 2).save(path)
    assert main(["simulate", "--fleet", "--trace", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"miss_ratio", "tenant_p95_miss_ratio", "memory_mb_seconds"} <= set(out)

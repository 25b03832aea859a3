"""`warmpool simulate` and `warmpool bench scaling` on small traces written for the test."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from warmpool.cli import main
from warmpool_lab.commands import default_traces_dir

pytestmark = pytest.mark.unit


def write_trace(path: Path, rows: list[tuple[float, float]]) -> Path:
    text = "t,duration\n" + "".join(f"{t:.4f},{d:.4f}\n" for t, d in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def burst_rows() -> list[tuple[float, float]]:
    """1/s for two minutes with 40/s for 5 s at 60 s: 270 invocations of 0.5 s."""
    rows = [(k + 0.5, 0.5) for k in range(120)]
    rows += [(60.0 + k * 0.025, 0.5) for k in range(200)]
    return sorted(rows)


def test_simulate_prints_json_and_writes_the_timeline_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "burst.csv.gz", burst_rows())
    timeline, plot = tmp_path / "timeline.csv", tmp_path / "run.png"
    code = main([
        "simulate", "--trace", str(trace), "--policy", "warmpool", "--json",
        "--timeline", str(timeline), "--plot", str(plot),
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["invocations"] == 320
    assert 0 <= result["misses"] <= result["invocations"]
    assert result["miss_ratio"] == pytest.approx(result["misses"] / 320)
    assert result["warm_instance_seconds"] >= 16 * 120  # at least one pod all along
    assert 0 < result["idle_instance_seconds"] < result["warm_instance_seconds"]
    assert result["scale_events"] >= 1  # the burst is met
    rows = list(csv.reader(timeline.open()))
    assert rows[0] == ["t", "replicas"]
    assert rows[1] == ["0", "1"]
    assert len(rows) == result["scale_events"] + 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_static_finds_a_fleet_and_reports_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "steady.csv", [(k * 0.1, 0.5) for k in range(600)])
    assert main(["simulate", "--trace", str(trace), "--policy", "static", "--warm-per-pod", "8"]) == 0
    out = capsys.readouterr().out
    assert "miss_ratio" in out
    assert "scale_events" in out


def test_simulate_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("when,how_long\n1,2\n")
    assert main(["simulate", "--trace", str(bad), "--policy", "kpa"]) == 2
    assert "header" in capsys.readouterr().err
    good = write_trace(tmp_path / "good.csv", [(0.5, 0.5)])
    assert main(["simulate", "--trace", str(good), "--policy", "kpa", "--target-miss", "1.5"]) == 2
    assert "--target-miss" in capsys.readouterr().err


def test_bench_runs_every_policy_on_every_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_trace(tmp_path / "burst.csv.gz", burst_rows())
    write_trace(tmp_path / "steady.csv.gz", [(k * 0.1, 0.5) for k in range(1200)])
    assert main(["bench", "scaling", "--traces", str(tmp_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = payload["rows"]
    assert {(r["trace"], r["policy"]) for r in rows} == {
        (trace, policy)
        for trace in ("burst", "steady")
        for policy in ("warmpool", "kpa", "hpa", "kpa-tuned", "hpa-tuned", "static", "clairvoyant")
    }
    for row in rows:
        if row["policy"] == "clairvoyant":
            assert row["cost_vs_clairvoyant"] == pytest.approx(1.0)
        if row["policy"] == "static":
            assert row["cost_vs_static"] == pytest.approx(1.0)
            assert row["miss_ratio"] <= 0.01
            assert row["fixed_replicas"] >= 1
    goals = {(g["trace"], g["goal"]) for g in payload["goals"]}
    assert ("burst", "dominates kpa") in goals


def test_bench_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_trace(tmp_path / "steady.csv", [(k * 0.1, 0.5) for k in range(600)])
    assert main(["bench", "scaling", "--traces", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for policy in ("warmpool", "kpa", "hpa", "static(", "clairvoyant"):
        assert policy in out
    assert "goals:" in out


def test_bench_without_traces_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "scaling", "--traces", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_default_traces_sit_beside_the_repository() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert default_traces_dir() == repo.parent / "shared" / "traces"

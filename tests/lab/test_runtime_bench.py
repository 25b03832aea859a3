"""`warmpool bench runtime` runs end to end and reports every figure it promises (no speed is asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytestmark = pytest.mark.component

FIGURES = {
    "acquire_release_us", "cold_over_warm", "floor_p50_us", "floor_p99_us", "floor_per_s",
}


def test_the_runtime_bench_reports_every_measurement() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "warmpool.cli", "bench", "runtime", "--repeats", "1", "--http-seconds", "0.2",
         "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    lines = report["lines"]
    figures = {key: value for line in lines for key, value in line["figures"].items()}
    assert figures.keys() >= FIGURES, sorted(figures)
    assert all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in figures.values()), figures
    assert {line["verdict"] for line in lines} <= {"PASS", "SHORT", "INFO"}
    names = " | ".join(line["name"] for line in lines)
    for topic in ("reset", "Func.__call__", "HTTP"):
        assert topic in names, names
    assert report["environment"]["repeats"] == 1

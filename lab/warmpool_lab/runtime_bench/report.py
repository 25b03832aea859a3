"""Report rows, their verdicts and the medians and percentiles they are made of; the printed table."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from dataclasses import dataclass, field
from typing import Any

from warmpool_lab.runtime_bench.support import cores


# Results ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Line:
    """One row of the report: what was measured, the goal, the figure and the verdict."""

    name: str
    goal: str
    measured: str
    verdict: str
    figures: dict[str, float] = field(default_factory=dict)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "INFO"
    return "PASS" if ok else "SHORT"


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]



# Report ----------------------------------------------------------------------------------------
def environment(repeats: int, seconds: float) -> dict[str, Any]:
    server_core, client_core = cores()
    return {
        "python": platform.python_version(),
        "wasmtime": importlib.metadata.version("wasmtime"),
        "cpus": len(os.sched_getaffinity(0)),
        "server_core": server_core,
        "client_core": client_core,
        "loadavg_at_start": os.getloadavg()[0],
        "repeats": repeats,
        "http_seconds_per_run": seconds,
    }


def table(lines: list[Line], env: dict[str, Any]) -> str:
    widths = [max(len(getattr(line, col)) for line in lines) for col in ("name", "goal", "measured")]
    header = ("measurement", "goal", "measured")
    rows = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  verdict"]
    for line in lines:
        rows.append(f"{line.name:<{widths[0]}}  {line.goal:<{widths[1]}}  {line.measured:<{widths[2]}}  "
                    f"{line.verdict}")
    rows.append(f"(medians over {env['repeats']} repeats, HTTP runs of {env['http_seconds_per_run']:g} s; "
                f"{env['cpus']} CPUs, server core {env['server_core']}, "
                f"client core {env['client_core']}; load average {env['loadavg_at_start']:.1f} at start, "
                f"{env['loadavg_at_end']:.1f} at end; {env['elapsed_s']:.0f} s)")
    return "\n".join(rows)


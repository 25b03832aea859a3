"""`warmpool simulate` and `warmpool bench scaling`."""

from __future__ import annotations

from typing import Any


def add_simulate_command(top: Any) -> None:
    """Register `warmpool simulate` (filled in by the autoscaler work)."""
    _ = top


def add_bench_commands(bench_sub: Any) -> None:
    """Register `warmpool bench scaling` (filled in by the autoscaler work)."""
    _ = bench_sub

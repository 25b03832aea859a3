"""`warmpool runtime ...` and `warmpool bench runtime`."""

from __future__ import annotations

from typing import Any


def add_runtime_commands(sub: Any) -> None:
    """Register `warmpool runtime serve`."""
    _ = sub


def add_bench_commands(bench_sub: Any) -> None:
    """Register `warmpool bench runtime`."""
    _ = bench_sub

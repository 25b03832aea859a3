"""`warmpool bench runtime`: its command-line arguments."""

from __future__ import annotations

import argparse
from typing import Any


def add_bench_commands(bench_sub: Any) -> None:
    """Register `warmpool bench runtime`."""
    bench = bench_sub.add_parser("runtime", help="runtime micro- and HTTP benchmarks, as ratios to baselines")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median reported)")
    bench.add_argument("--http-seconds", type=float, default=3.0, help="duration of each HTTP load run")
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from warmpool_lab.runtime_bench.bench import run_bench

    return run_bench(repeats=args.repeats, http_seconds=args.http_seconds, as_json=args.json)

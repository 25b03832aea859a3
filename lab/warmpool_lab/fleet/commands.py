"""`warmpool simulate --fleet` and `warmpool bench fleet`, as plain functions of their arguments."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from warmpool_lab.fleet.generate import FAMILIES, generate
from warmpool_lab.fleet.model import FleetModel, FleetResult, write_timeline
from warmpool_lab.fleet.runs import POLICIES, RANDOM_POLICIES, Settings, run
from warmpool_lab.fleet.trace import TenantTrace, TenantTraceError, load_tenant_trace

GOAL_MISS = 0.01
GOAL_TENANT_P95 = 0.03
GOAL_VS_SHARED = 1.3
GOAL_VS_DEDICATED = 0.05


def default_trace() -> Path:
    """`shared/traces/tenants.csv.gz` beside the repository checkout this package runs from."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "traces" / "tenants.csv.gz"


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--startup", type=float, default=5.0, help="seconds from asking for a pod to Ready (5)")
    parser.add_argument("--resize", type=float, default=1.0, help="seconds for a raised warm count to apply (1)")
    parser.add_argument("--cap", type=int, default=1024, help="warm instances per pod at most, maxTotalWarm (1024)")
    parser.add_argument("--min-pods", type=int, default=2, help="pods the fleet keeps at least (2)")
    parser.add_argument("--tick", type=float, default=2.0, help="scrape and decision period in seconds (2)")
    parser.add_argument("--target-miss", type=float, default=0.01, help="target miss ratio (0.01)")


def _settings(args: argparse.Namespace, seed: int) -> Settings:
    model = FleetModel(
        startup_seconds=args.startup, resize_seconds=args.resize, cap=args.cap, min_pods=args.min_pods,
        tick_seconds=args.tick, seed=seed,
    )
    return Settings(model=model, target=args.target_miss)


def simulate_fleet_main(argv: Sequence[str]) -> int:
    """`warmpool simulate --fleet --trace F ...`: replay a multi-tenant trace under the shared-fleet model."""
    parser = argparse.ArgumentParser(
        prog="warmpool simulate --fleet",
        description="Replay a `t,duration,tenant` trace against a shared fleet of runtime pods.",
    )
    parser.add_argument("--fleet", action="store_true", help="the shared-fleet model (always on here)")
    parser.add_argument("--trace", type=Path, required=True, help="trace file (t,duration,tenant CSV, .gz allowed)")
    parser.add_argument("--policy", choices=POLICIES, default="fleet", help="policy to replay (fleet)")
    _model_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random routing (0)")
    parser.add_argument("--timeline", type=Path, help="write the fleet timeline as CSV t,what,value")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(list(argv))
    try:
        trace = load_tenant_trace(args.trace)
    except TenantTraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run(trace, args.policy, _settings(args, args.seed))
    if args.timeline is not None:
        write_timeline(result.timeline, args.timeline)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:28s} {value:.6g}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One policy on one trace (medians over seeds for the policies routing makes random)."""

    trace: str
    policy: str
    miss_ratio: float
    tenant_p95: float
    memory: float
    vs_shared: float
    vs_dedicated: float
    max_warm: int
    cap: int


def _median_result(results: list[FleetResult]) -> tuple[float, float, float, int]:
    return (
        statistics.median(r.miss_ratio for r in results),
        statistics.median(r.tenant_p95_miss_ratio for r in results),
        statistics.median(r.memory_mb_seconds for r in results),
        max(r.max_warm_per_pod for r in results),
    )


def bench_trace(trace: TenantTrace, settings: Settings, seeds: int) -> list[BenchRow]:
    """Every policy on one trace, with ratios to the two clairvoyant references."""
    medians: dict[str, tuple[float, float, float, int]] = {}
    for policy in POLICIES:
        runs = seeds if policy in RANDOM_POLICIES else 1
        results = []
        for seed in range(runs):
            seeded = Settings(replace(settings.model, seed=seed), settings.target)
            results.append(run(trace, policy, seeded))
        medians[policy] = _median_result(results)
    shared = medians["shared-clairvoyant"][2]
    dedicated = medians["dedicated-clairvoyant"][2]
    return [
        BenchRow(trace.name, policy, miss, p95, memory, memory / shared, memory / dedicated, warm, settings.model.cap)
        for policy, (miss, p95, memory, warm) in medians.items()
    ]


def format_markdown(rows: Sequence[BenchRow]) -> str:
    """The bench table, then the goals of the fleet rows."""
    lines = [
        "| trace | policy | miss % | p95 tenant miss % | memory MB-s | × shared clairvoyant "
        "| × dedicated clairvoyant | max warm/pod (cap) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.trace} | {r.policy} | {r.miss_ratio:.2%} | {r.tenant_p95:.2%} | {r.memory:,.0f} | "
            f"{r.vs_shared:.3f} | {r.vs_dedicated:.4f} | {r.max_warm} ({r.cap}) |"
        )
    lines += ["", "| trace | goal | fleet | |", "| --- | --- | --- | --- |"]
    for r in rows:
        if r.policy != "fleet":
            continue
        checks = (
            (f"misses ≤ {GOAL_MISS:.0%}", f"{r.miss_ratio:.2%}", r.miss_ratio <= GOAL_MISS),
            (f"p95 tenant ≤ {GOAL_TENANT_P95:.0%}", f"{r.tenant_p95:.2%}", r.tenant_p95 <= GOAL_TENANT_P95),
            (f"memory ≤ {GOAL_VS_SHARED}× shared clairvoyant", f"{r.vs_shared:.3f}×", r.vs_shared <= GOAL_VS_SHARED),
            (
                f"memory ≤ {GOAL_VS_DEDICATED}× dedicated clairvoyant", f"{r.vs_dedicated:.4f}×",
                r.vs_dedicated <= GOAL_VS_DEDICATED,
            ),
            ("never over the per-pod cap", f"{r.max_warm} / {r.cap}", r.max_warm <= r.cap),
        )
        for goal, value, met in checks:
            lines.append(f"| {r.trace} | {goal} | {value} | {'met' if met else '**NOT MET**'} |")
    return "\n".join(lines)


def bench_fleet_main(argv: Sequence[str]) -> int:
    """`warmpool bench fleet`: every fleet policy on tenants.csv.gz and generated traces, as Markdown."""
    parser = argparse.ArgumentParser(
        prog="warmpool bench fleet",
        description="Compare the fleet policy, a shared static fleet, dedicated pools and the clairvoyant references.",
    )
    parser.add_argument("--trace", type=Path, action="append", help="multi-tenant trace (repeatable; default "
                        "shared/traces/tenants.csv.gz beside the repository)")
    parser.add_argument("--families", default="mixed,timers,flashy",
                        help=f"generated families, comma-separated, from {', '.join(FAMILIES)} ('' for none)")
    parser.add_argument("--trace-seed", type=int, default=1, help="seed of the generated traces (1)")
    parser.add_argument("--seeds", type=int, default=3, help="routing seeds to take medians over (3)")
    _model_options(parser)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of Markdown")
    args = parser.parse_args(list(argv))
    traces: list[TenantTrace] = []
    try:
        traces += [load_tenant_trace(path) for path in args.trace or [default_trace()]]
    except TenantTraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in filter(None, (n.strip() for n in args.families.split(","))):
        if name not in FAMILIES:
            print(f"error: unknown family {name!r}; expected one of {', '.join(FAMILIES)}", file=sys.stderr)
            return 2
        traces.append(generate(FAMILIES[name], args.trace_seed))
    settings = _settings(args, 0)
    rows = [row for trace in traces for row in bench_trace(trace, settings, max(1, args.seeds))]
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        print(format_markdown(rows))
    return 0

"""Handlers of `warmpool simulate` and `warmpool bench scaling`: parse arguments, run, print."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from warmpool_lab.bench import BenchRow, compare_tuned, evaluate_goals, format_table, run_bench
from warmpool_lab.clairvoyant import clairvoyant_cost, clairvoyant_timeline
from warmpool_lab.dedicated_bench import SeedRow, format_report, plan, run_dedicated, run_public, summarise
from warmpool_lab.runs import TUNED_BASELINES, RunSettings, run_policy, run_tuned
from warmpool_lab.shapes import FAMILIES
from warmpool_lab.simulator import FleetConfig
from warmpool_lab.trace import TraceError, load_trace, trace_files


class UsageError(ValueError):
    """A command-line value that cannot work."""


def _settings(args: argparse.Namespace, initial_replicas: int = 1) -> RunSettings:
    if args.warm_per_pod < 1:
        raise UsageError("--warm-per-pod must be >= 1")
    if args.startup < 0:
        raise UsageError("--startup must be >= 0")
    if args.tick <= 0:
        raise UsageError("--tick must be > 0")
    if not 0.0 < args.target_miss < 1.0:
        raise UsageError("--target-miss must be > 0 and < 1")
    if initial_replicas < 0:
        raise UsageError("--initial-replicas must be >= 0")
    fleet = FleetConfig(
        warm_per_pod=args.warm_per_pod,
        startup_seconds=args.startup,
        tick_seconds=args.tick,
        initial_replicas=initial_replicas,
        seed=args.seed,
    )
    return RunSettings(fleet=fleet, target_miss_ratio=args.target_miss)


def simulate_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args, args.initial_replicas)
        trace = load_trace(args.trace)
    except (UsageError, TraceError) as exc:
        print(f"warmpool simulate: {exc}", file=sys.stderr)
        return 2
    record = args.plot is not None
    tuned = run_tuned(trace, args.policy, settings, record=record) if args.policy in TUNED_BASELINES else None
    result = tuned.result if tuned is not None else run_policy(trace, args.policy, settings, record=record)
    reference = clairvoyant_cost(
        trace,
        clairvoyant_timeline(trace, warm_per_pod=settings.fleet.warm_per_pod, target=settings.target_miss_ratio),
        warm_per_pod=settings.fleet.warm_per_pod,
    )
    summary = result.summary()
    if args.policy == "static":
        summary["replicas"] = result.timeline[0][1]
    if tuned is not None:
        summary["target_utilisation"] = tuned.target_utilisation
        summary["tuned_meets_target"] = tuned.meets_target
        summary["replays"] = tuned.replays
    summary["clairvoyant_warm_instance_seconds"] = reference
    summary["cost_vs_clairvoyant"] = result.warm_instance_seconds / reference if reference else None
    if args.timeline is not None:
        rows = "".join(f"{t:g},{replicas}\n" for t, replicas in result.timeline)
        args.timeline.write_text("t,replicas\n" + rows)
    if args.plot is not None:
        from warmpool_lab.plot import plot_run

        plot_run(trace, result, warm_per_pod=settings.fleet.warm_per_pod, path=args.plot)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            shown = f"{value:.4g}" if isinstance(value, float) else value
            print(f"{key:34s} {shown}")
    return 0


def default_traces_dir() -> Path:
    """`shared/traces` beside the repository checkout this package runs from."""
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "traces"


def bench_command(args: argparse.Namespace) -> int:
    directory = args.traces or default_traces_dir()
    try:
        settings = _settings(args)
        files = trace_files(directory)
    except (UsageError, TraceError) as exc:
        print(f"warmpool bench scaling: {exc}", file=sys.stderr)
        return 2

    def progress(row: BenchRow) -> None:
        print(f"  {row.trace:10s} {row.policy:14s} done", file=sys.stderr, flush=True)

    rows = run_bench(files, settings, progress=progress)
    goals = evaluate_goals(rows, settings.target_miss_ratio)
    comparisons = compare_tuned(rows, settings.target_miss_ratio)
    if args.json:
        payload = {
            "rows": [row.as_dict() for row in rows],
            "goals": [goal.as_dict() for goal in goals],
            "tuned_comparisons": [comparison.as_dict() for comparison in comparisons],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(rows, goals, settings, comparisons))
    return 0


def _names(raw: str | None, what: str) -> list[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--{what} needs at least one value")
    return names


def dedicated_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        families = _names(args.families, "families") or list(FAMILIES)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise UsageError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                             f"expected some of {', '.join(FAMILIES)}")
        seeds = _names(args.seeds, "seeds")
        try:
            chosen = [int(s) for s in seeds] if seeds is not None else None
        except ValueError:
            raise UsageError(f"--seeds must be integers, got {args.seeds!r}") from None
        public = [] if args.no_public else [load_trace(p) for p in trace_files(args.traces or default_traces_dir())]
    except (UsageError, TraceError) as exc:
        print(f"warmpool bench dedicated: {exc}", file=sys.stderr)
        return 2
    runs = plan(families) if chosen is None else [(f, s) for f in families for s in chosen]

    def progress(row: SeedRow) -> None:
        print(f"  {row.family:18s} {row.seed:4d} {row.split:8s} miss {row.miss_ratio:6.2%} "
              f"x static {row.cost_vs_static_goal:.2f}", file=sys.stderr, flush=True)

    rows = run_dedicated(runs, settings, progress=progress)
    families_summary = summarise(rows)
    public_rows = run_public(public, settings)
    if args.json:
        payload = {
            "families": [f.as_dict() for f in families_summary],
            "seeds": [r.as_dict() for r in rows],
            "public": [p.as_dict() for p in public_rows],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_report(rows, families_summary, public_rows, settings))
    return 0

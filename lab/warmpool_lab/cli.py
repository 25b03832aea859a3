"""`warmpool simulate` and `warmpool bench scaling|fleet`: argparse only, the lab's heavy imports wait for a run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LAB_EXTRA = "pip install 'warmpool[lab]'"


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warm-per-pod", type=int, default=16, help="warm instances per Ready pod (default 16)")
    parser.add_argument("--startup", type=float, default=5.0, help="seconds from asking for a pod to Ready (default 5)")
    parser.add_argument("--tick", type=float, default=2.0, help="scrape and decision period in seconds (default 2)")
    parser.add_argument("--target-miss", type=float, default=0.01, help="target miss ratio (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random routing (default 0)")


def add_simulate_command(top: Any) -> None:
    """Register `warmpool simulate`."""
    parser = top.add_parser(
        "simulate",
        help="replay an invocation trace against a simulated fleet driven by a scaling policy",
        description="Replay a `t,duration` trace (CSV, optionally gzip) against runtime pods scaled by a policy.",
    )
    parser.add_argument("--trace", type=Path, required=True, help="trace file (t,duration CSV, .gz allowed)")
    parser.add_argument(
        "--policy",
        required=True,
        choices=("warmpool", "kpa", "hpa", "kpa-tuned", "hpa-tuned", "static", "clairvoyant"),
        help="warmpool (ours), kpa, hpa (70%% target utilisation), kpa-tuned, hpa-tuned (the highest target "
        "utilisation meeting --target-miss on this trace, searched in hindsight), static (cheapest fixed "
        "fleet, searched), clairvoyant (reference)",
    )
    _fleet_options(parser)
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="the shared-fleet model for a multi-tenant trace (t,duration,tenant) instead: its own options, "
        "see `warmpool simulate --fleet --help`",
    )
    parser.add_argument("--initial-replicas", type=int, default=1, help="pods Ready at t=0 (default 1)")
    parser.add_argument("--timeline", type=Path, help="write the replicas asked for over time as CSV t,replicas")
    parser.add_argument("--plot", type=Path, help="write a PNG of load, replicas and misses over time")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=_simulate)


def add_bench_commands(bench_sub: Any) -> None:
    """Register `warmpool bench scaling`, `dedicated`, `fleet`, `fleet-cluster`, `exposition`, `operator-api`,
    `fleet-reconcile`."""
    parser = bench_sub.add_parser(
        "scaling",
        help="every scaling policy on every trace, against the clairvoyant and static fleets",
        description="Replay each policy on each trace in a directory and print one table.",
    )
    parser.add_argument(
        "--traces", type=Path, help="directory of *.csv.gz traces (default: shared/traces beside the repo)"
    )
    _fleet_options(parser)
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.set_defaults(func=_bench)

    dedicated = bench_sub.add_parser(
        "dedicated",
        help="ours on generated flash-crowd and timer families (tuning and held-out seeds) against static fleets",
        description="Replay the warmpool policy on seeded flash-crowd and timer-burst trace families; per family "
        "and split (tuning / held-out): misses (mean, worst seed) and cost against the cheapest static fleets; "
        "then ours on the public traces.",
    )
    _fleet_options(dedicated)
    dedicated.add_argument(
        "--families", help="comma-separated family names (default: all; see warmpool_lab.shapes.FAMILIES)"
    )
    dedicated.add_argument("--seeds", help="comma-separated seeds instead of the tuning and held-out seeds")
    dedicated.add_argument(
        "--traces", type=Path, help="directory of public *.csv.gz traces (default: shared/traces beside the repo)"
    )
    dedicated.add_argument("--no-public", action="store_true", help="skip the public traces")
    dedicated.add_argument("--json", action="store_true", help="print per-seed rows and the summary as JSON")
    dedicated.set_defaults(func=_dedicated)

    fleet = bench_sub.add_parser(
        "fleet",
        add_help=False,
        help="shared fleets on multi-tenant traces: the fleet policy against static, dedicated and clairvoyant "
        "fleets (options: `warmpool bench fleet --help`)",
    )
    fleet.set_defaults(func=lambda args: run_fleet_command(["bench", "fleet"]))

    cluster = bench_sub.add_parser(
        "fleet-cluster",
        help="one RuntimeFleet of N WarmPools on the local control plane: time to Ready, pods, runtime RSS, "
        "the operator's CPU, memory and API calls at steady state, apply-to-first-warm-hit, churn",
        description="Start the local control plane and operator, apply a RuntimeFleet and N member WarmPools "
        "(distinct modules served on loopback), and measure.",
    )
    cluster.add_argument("--pools", type=int, default=100, help="member WarmPools (default 100)")
    cluster.add_argument("--pods", type=int, default=2, help="fleet runtime pods (default 2)")
    cluster.add_argument("--steady-seconds", type=float, default=120.0, help="steady window (default 120)")
    cluster.add_argument("--new-pools", type=int, default=20,
                         help="members applied one at a time into the running fleet, timed (default 20)")
    cluster.add_argument("--churn", type=int, default=100, help="members removed and as many added (default 100)")
    cluster.add_argument("--ready-timeout", type=float, default=1800.0, help="seconds to wait for Ready (default 1800)")
    cluster.add_argument("--state-dir", type=Path, default=Path(".state") / "fleet-cluster",
                         help="where the control plane keeps its state (default .state/fleet-cluster)")
    cluster.add_argument("--keep", action="store_true", help="leave the control plane running")
    cluster.add_argument("--json", action="store_true", help="print the figures as JSON")
    cluster.set_defaults(func=_fleet_cluster)

    exposition = bench_sub.add_parser(
        "exposition",
        help="one autoscaler scrape of a runtime pod of N tuples: bytes and CPU of /metrics against /stats",
        description="Start a runtime holding N tuples and measure, for /metrics and /stats alike, the body's size, "
        "the runtime's CPU to answer it and the operator's CPU to read it (medians over repeats).",
    )
    exposition.add_argument("--tuples", default="100,1000", help="comma-separated sizes (default 100,1000)")
    exposition.add_argument("--repeat", type=int, default=15, help="scrapes and parses per form (default 15)")
    exposition.add_argument("--json", action="store_true", help="print the figures as JSON")
    exposition.set_defaults(func=_exposition)

    api = bench_sub.add_parser(
        "operator-api",
        help="the operator's reconcile latency and API requests per reconcile on the local control plane",
        description="Start the local control plane and operator, apply N WarmPools (no pods), change their spec "
        "once, and report reconcile durations and the API server's count of requests per reconciliation.",
    )
    api.add_argument("--pools", type=int, default=20, help="WarmPools (default 20)")
    api.add_argument("--operator-path", type=Path,
                     help="a checkout whose operator/warmpool_operator the operator process runs instead")
    api.add_argument("--quiet-seconds", type=float, default=8.0,
                     help="seconds without a reconciliation that end a phase (default 8)")
    api.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take (default 600)")
    api.add_argument("--state-dir", type=Path, default=Path(".state") / "operator-api",
                     help="where the control plane keeps its state (default .state/operator-api)")
    api.add_argument("--keep", action="store_true", help="leave the control plane running")
    api.add_argument("--json", action="store_true", help="print the figures as JSON")
    api.set_defaults(func=_operator_api)

    reconcile = bench_sub.add_parser(
        "fleet-reconcile",
        help="one RuntimeFleet reconciliation in-process at N members: wall time, CPU, peak traced memory",
        description="Reconcile a fleet of N members against an in-memory store and loopback /readyz servers, "
        "and report the first reconciliation's wall time and a steady-state one's wall time, CPU and "
        "tracemalloc peak.",
    )
    reconcile.add_argument("--members", default="100,1000", help="comma-separated sizes (default 100,1000)")
    reconcile.add_argument("--pods", type=int, default=2, help="Ready fleet pods serving /readyz (default 2)")
    reconcile.set_defaults(func=_fleet_reconcile)


def run_fleet_command(argv: Sequence[str]) -> int | None:
    """`simulate --fleet` and `bench fleet` parse their own options (the shared-fleet model's); None for others."""
    if argv[:1] == ["simulate"] and "--fleet" in argv:
        try:
            from warmpool_lab.fleet.commands import simulate_fleet_main
        except ModuleNotFoundError as exc:
            return _missing_extra("simulate --fleet", exc)
        return simulate_fleet_main(argv[1:])
    if argv[:2] == ["bench", "fleet"]:
        try:
            from warmpool_lab.fleet.commands import bench_fleet_main
        except ModuleNotFoundError as exc:
            return _missing_extra("bench fleet", exc)
        return bench_fleet_main(argv[2:])
    return None


def _simulate(args: argparse.Namespace) -> int:
    try:
        from warmpool_lab.commands import simulate_command
    except ModuleNotFoundError as exc:
        return _missing_extra("simulate", exc)
    return simulate_command(args)


def _bench(args: argparse.Namespace) -> int:
    try:
        from warmpool_lab.commands import bench_command
    except ModuleNotFoundError as exc:
        return _missing_extra("bench scaling", exc)
    return bench_command(args)


def _dedicated(args: argparse.Namespace) -> int:
    try:
        from warmpool_lab.commands import dedicated_command
    except ModuleNotFoundError as exc:
        return _missing_extra("bench dedicated", exc)
    return dedicated_command(args)


def _fleet_cluster(args: argparse.Namespace) -> int:
    if min(args.pools, args.pods) < 1 or min(args.new_pools, args.churn) < 0 or args.churn > args.pools:
        print("warmpool bench fleet-cluster: --pools and --pods must be >= 1, --new-pools and --churn >= 0, "
              "--churn <= --pools", file=sys.stderr)
        return 2
    if args.steady_seconds <= 0 or args.ready_timeout <= 0:
        print("warmpool bench fleet-cluster: --steady-seconds and --ready-timeout must be > 0", file=sys.stderr)
        return 2
    try:
        from warmpool_lab.fleet_cluster_run import Options, run
    except ModuleNotFoundError as exc:
        return _missing_extra("bench fleet-cluster", exc)
    options = Options(pools=args.pools, pods=args.pods, steady_seconds=args.steady_seconds,
                      new_pools=args.new_pools, churn=args.churn, ready_timeout_s=args.ready_timeout,
                      state_dir=args.state_dir.absolute(), keep=args.keep)
    return run(options, args.json)


def _exposition(args: argparse.Namespace) -> int:
    try:
        sizes = [int(n) for n in args.tuples.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        print("warmpool bench exposition: --tuples must be positive integers, --repeat >= 1", file=sys.stderr)
        return 2
    try:
        from warmpool_lab.scrape_bench import run
    except ModuleNotFoundError as exc:
        return _missing_extra("bench exposition", exc)
    return run(sizes, args.repeat, args.json)


def _operator_api(args: argparse.Namespace) -> int:
    if args.pools < 1 or args.quiet_seconds <= 0 or args.timeout <= 0:
        print("warmpool bench operator-api: --pools must be >= 1, --quiet-seconds and --timeout > 0", file=sys.stderr)
        return 2
    from warmpool_lab.operator_api_bench import Options, run

    options = Options(pools=args.pools, state_dir=args.state_dir.absolute(), operator_path=args.operator_path,
                      quiet_seconds=args.quiet_seconds, timeout_s=args.timeout, keep=args.keep)
    return run(options, args.json)


def _fleet_reconcile(args: argparse.Namespace) -> int:
    try:
        sizes = [int(n) for n in args.members.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or args.pods < 1:
        print("warmpool bench fleet-reconcile: --members must be positive integers, --pods >= 1", file=sys.stderr)
        return 2
    from warmpool_lab.fleet_reconcile_bench import run

    return run(sizes, args.pods)


def _missing_extra(command: str, exc: ModuleNotFoundError) -> int:
    """The product installs without the lab's dependencies (numpy, matplotlib); say how to add them."""
    if exc.name is None or exc.name.startswith(("warmpool", "prometheus_client")):
        raise exc
    print(f"warmpool {command}: needs {exc.name}, a dependency of the lab: {LAB_EXTRA}", file=sys.stderr)
    return 2

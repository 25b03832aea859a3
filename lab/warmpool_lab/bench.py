"""`warmpool bench scaling`: every policy on every trace, with costs relative to the references."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from warmpool_lab.runs import TUNED_BASELINES, RunSettings, TunedRun, run_policy, run_tuned
from warmpool_lab.simulator import SimResult
from warmpool_lab.trace import load_trace

BENCH_POLICIES = ("warmpool", "kpa", "hpa", "kpa-tuned", "hpa-tuned", "static", "clairvoyant")
TUNED_POLICIES = tuple(TUNED_BASELINES)
"""`kpa` and `hpa` at the target utilisation tuned for each trace in hindsight (clairvoyant tuning)."""
TRACKING_TRACES = ("steady", "diurnal", "ramp")
"""Traces on which ours must meet the target at <= 1.25x the clairvoyant's warm capacity."""
BURSTY_TRACES = ("flash", "periodic")
"""Traces on which ours must cost <= 0.6x static with <= 3 % misses."""


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One policy on one trace."""

    trace: str
    policy: str
    invocations: int
    misses: int
    miss_ratio: float
    warm_instance_seconds: float
    idle_instance_seconds: float
    scale_events: int
    cost_vs_clairvoyant: float
    cost_vs_static: float
    fixed_replicas: int | None
    """The fleet size the static search found (static rows only)."""
    target_utilisation: float | None = None
    """The target utilisation the tuning search found (tuned rows only)."""

    @property
    def label(self) -> str:
        """The policy as the table shows it, with what its search found."""
        if self.fixed_replicas is not None:
            return f"{self.policy}({self.fixed_replicas})"
        if self.target_utilisation is not None:
            return f"{self.policy}({self.target_utilisation:.0%})"
        return self.policy

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Goal:
    """One goal of the benchmark on one trace, and whether the measurement meets it."""

    trace: str
    goal: str
    met: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Ours against a tuned baseline on one trace: which is cheaper, and whether both meet the target."""

    trace: str
    other: str
    cost_ratio: float
    """Our warm instance-seconds over theirs."""
    ours_meets_target: bool
    theirs_meets_target: bool
    cheaper: str
    """"warmpool", the other policy's name, or "neither" (equal cost)."""
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(trace: str, results: dict[str, SimResult], tuned: dict[str, TunedRun]) -> list[BenchRow]:
    reference = results["clairvoyant"].warm_instance_seconds
    static = results["static"].warm_instance_seconds
    rows = []
    for policy in BENCH_POLICIES:
        result = results[policy]
        cost = result.warm_instance_seconds
        rows.append(
            BenchRow(
                trace=trace,
                policy=policy,
                invocations=result.invocations,
                misses=result.misses,
                miss_ratio=result.miss_ratio,
                warm_instance_seconds=cost,
                idle_instance_seconds=result.idle_instance_seconds,
                scale_events=result.scale_events,
                cost_vs_clairvoyant=cost / reference if reference else float("inf"),
                cost_vs_static=cost / static if static else float("inf"),
                fixed_replicas=result.timeline[0][1] if policy == "static" else None,
                target_utilisation=tuned[policy].target_utilisation if policy in tuned else None,
            )
        )
    return rows


def run_bench(
    files: Sequence[Path], settings: RunSettings, *, progress: Callable[[BenchRow], None] | None = None
) -> list[BenchRow]:
    """Replay every policy on every trace file."""
    rows: list[BenchRow] = []
    for path in files:
        trace = load_trace(path)
        tuned = {policy: run_tuned(trace, policy, settings) for policy in TUNED_POLICIES}
        results = {
            policy: tuned[policy].result if policy in tuned else run_policy(trace, policy, settings)
            for policy in BENCH_POLICIES
        }
        for row in _rows(trace.name, results, tuned):
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def _dominates(ours: BenchRow, other: BenchRow) -> bool:
    no_worse = ours.miss_ratio <= other.miss_ratio and ours.warm_instance_seconds <= other.warm_instance_seconds
    better = ours.miss_ratio < other.miss_ratio or ours.warm_instance_seconds < other.warm_instance_seconds
    return no_worse and better


def evaluate_goals(rows: Sequence[BenchRow], target: float) -> list[Goal]:
    """The issue's goals per trace; traces with other names get the dominance goals only."""
    by_trace: dict[str, dict[str, BenchRow]] = {}
    for row in rows:
        by_trace.setdefault(row.trace, {})[row.policy] = row
    goals = []
    for trace, policies in by_trace.items():
        ours = policies["warmpool"]
        for other in ("kpa", "hpa"):
            theirs = policies[other]
            goals.append(
                Goal(
                    trace,
                    f"dominates {other}",
                    _dominates(ours, theirs),
                    f"miss {ours.miss_ratio:.2%} vs {theirs.miss_ratio:.2%}, "
                    f"cost {ours.warm_instance_seconds:,.0f} vs {theirs.warm_instance_seconds:,.0f}",
                )
            )
        if trace in TRACKING_TRACES:
            met = ours.miss_ratio <= target and ours.cost_vs_clairvoyant <= 1.25
            goals.append(
                Goal(
                    trace,
                    f"miss <= {target:.0%} at <= 1.25x clairvoyant",
                    met,
                    f"miss {ours.miss_ratio:.2%}, {ours.cost_vs_clairvoyant:.2f}x clairvoyant",
                )
            )
        if trace in BURSTY_TRACES:
            met = ours.miss_ratio <= 0.03 and ours.cost_vs_static <= 0.6
            goals.append(
                Goal(
                    trace,
                    "<= 0.6x static cost with <= 3% misses",
                    met,
                    f"miss {ours.miss_ratio:.2%}, {ours.cost_vs_static:.2f}x static",
                )
            )
    return goals


def compare_tuned(rows: Sequence[BenchRow], target: float) -> list[Comparison]:
    """Ours against each tuned baseline per trace: the cost ratio, and who meets the target."""
    by_trace: dict[str, dict[str, BenchRow]] = {}
    for row in rows:
        by_trace.setdefault(row.trace, {})[row.policy] = row
    comparisons = []
    for trace, policies in by_trace.items():
        ours = policies["warmpool"]
        for other in TUNED_POLICIES:
            if other not in policies:
                continue
            theirs = policies[other]
            ratio = (
                ours.warm_instance_seconds / theirs.warm_instance_seconds
                if theirs.warm_instance_seconds
                else float("inf")
            )
            if ours.warm_instance_seconds < theirs.warm_instance_seconds:
                cheaper = "warmpool"
            elif ours.warm_instance_seconds > theirs.warm_instance_seconds:
                cheaper = other
            else:
                cheaper = "neither"
            ours_meets, theirs_meets = ours.miss_ratio <= target, theirs.miss_ratio <= target
            if ours_meets and theirs_meets:
                verdict = {"warmpool": "ours cheaper", "neither": "same cost"}.get(cheaper, f"{other} cheaper")
            else:
                missing = [] if ours_meets else [f"ours misses {ours.miss_ratio:.2%}"]
                if not theirs_meets:
                    missing.append(
                        f"{other} misses {theirs.miss_ratio:.2%} even at {theirs.target_utilisation or 0:.0%}"
                    )
                verdict = f"not comparable at {target:.0%}: {', '.join(missing)}"
            comparisons.append(
                Comparison(
                    trace,
                    other,
                    ratio,
                    ours_meets,
                    theirs_meets,
                    cheaper,
                    f"{verdict}; cost {ours.warm_instance_seconds:,.0f} vs {theirs.label} "
                    f"{theirs.warm_instance_seconds:,.0f}, miss {ours.miss_ratio:.2%} vs {theirs.miss_ratio:.2%}",
                )
            )
    return comparisons


def format_table(
    rows: Sequence[BenchRow],
    goals: Sequence[Goal],
    settings: RunSettings,
    comparisons: Sequence[Comparison] = (),
) -> str:
    """The benchmark as a plain-text table followed by the goals (and ours against the tuned baselines)."""
    fleet = settings.fleet
    lines = [
        f"fleet: {fleet.warm_per_pod} warm/pod, start-up {fleet.startup_seconds:g} s, tick {fleet.tick_seconds:g} s, "
        f"target miss {settings.target_miss_ratio:g}; cost = warm instance-seconds",
        f"{'trace':10s} {'policy':14s} {'miss':>7s} {'cost':>10s} {'x clairv':>8s} {'x static':>8s} "
        f"{'idle':>10s} {'events':>6s}",
    ]
    previous = None
    for row in rows:
        if previous is not None and row.trace != previous:
            lines.append("")
        previous = row.trace
        lines.append(
            f"{row.trace:10s} {row.label:14s} {row.miss_ratio:7.2%} {row.warm_instance_seconds:10,.0f} "
            f"{row.cost_vs_clairvoyant:8.2f} {row.cost_vs_static:8.2f} {row.idle_instance_seconds:10,.0f} "
            f"{row.scale_events:6d}"
        )
    lines += ["", "goals:"]
    traces = list(dict.fromkeys([goal.trace for goal in goals] + [c.trace for c in comparisons]))
    for trace in traces:
        for goal in goals:
            if goal.trace == trace:
                lines.append(
                    f"  {goal.trace:10s} {goal.goal:40s} {'met' if goal.met else 'NOT MET':7s} {goal.detail}"
                )
        for comparison in comparisons:
            if comparison.trace == trace:
                lines.append(
                    f"  {comparison.trace:10s} ours vs {comparison.other} (both meeting the target): "
                    f"cost ratio {comparison.cost_ratio:.2f}, {comparison.detail}"
                )
    return "\n".join(lines)

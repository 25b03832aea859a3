"""`warmpool bench operator-api`: the operator's reconcile latency and API calls per reconcile, on a real cluster.

Starts the local control plane and `warmpool operator run -A`, applies N WarmPools (replicas 0, so no
runtime pod starts and the 2-core machine only runs the control plane and the operator), waits until
every pool is reconciled and the operator is quiet, then changes every pool's spec once and waits again.
Per phase it reports the reconciliations (`warmpool_operator_reconcile_duration_seconds` on the operator's
/metrics: count, mean, and median/p90 interpolated within the histogram's buckets) and the API requests
per reconciliation, counted by the API server (`apiserver_request_total` deltas) on the resources the
operator's reconciliation reads and writes: WarmPools (status included), their children, Secrets and Pods.
Verbs only other clients use there are left out: UPDATE (the Deployment controller), WATCH, and APPLY
of WarmPools (this bench's own `kubectl apply`). `--operator-path` runs the operator package of another
checkout, to compare two clients on the same workload.

Figures of the operator's three API clients (hand-written aiohttp, the official `kubernetes` client in a
thread pool, and its asyncio half `kubernetes.aio`) are in lab/warmpool_lab/operator_api_bench.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from warmpool.dev import commands, controlplane, procs
from warmpool.dev.build import ensure_kcluster
from warmpool_lab.fleet_cluster_bench import api_requests

NAMESPACE = "api-bench"
DURATION = "warmpool_operator_reconcile_duration_seconds"
OPERATOR_REQUESTS = "warmpool_operator_api_requests_total"
# What the operator's reconciliation of a WarmPool reads and writes (apiserver_request_total's `resource`
# and `subresource` labels joined by a slash).
RECONCILED_RESOURCES = frozenset({
    "warmpools", "warmpools/status", "deployments", "services", "configmaps", "secrets", "pods",
    "poddisruptionbudgets", "runtimefleets",
})
OTHER_CLIENTS_VERBS = frozenset({"UPDATE", "WATCH", "WATCHLIST", "CONNECT"})


def say(line: str) -> None:
    print(f"[operator-api] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    pools: int
    state_dir: Path
    operator_path: Path | None
    quiet_seconds: float
    timeout_s: float
    keep: bool


def pool_manifest(index: int, warm: int) -> dict[str, Any]:
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1",
        "kind": "WarmPool",
        "metadata": {"name": f"bench-{index:03d}", "namespace": NAMESPACE},
        "spec": {
            "tenant": f"t{index:03d}",
            "module": {"sha256": hashlib.sha256(f"m{index}".encode()).hexdigest(),
                       "source": {"path": f"/modules/m{index}.wasm"}},
            "warmInstancesPerTuple": warm,
            "maxTotalWarm": 64,
            "replicas": 0,
        },
    }


def histogram(exposition: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram `name` summed over its labels: upper bound -> count."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                out[bound] = out.get(bound, 0.0) + sample.value
    return out


def sums(exposition: str, name: str) -> tuple[float, float]:
    """(count, sum) of histogram `name` over its labels."""
    count = total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == f"{name}_count":
                count += sample.value
            elif sample.name == f"{name}_sum":
                total += sample.value
    return count, total


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """`histogram_quantile`'s linear interpolation within the bucket holding the q-th observation."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


def operator_requests(exposition: str) -> float:
    """The operator's own count of its API requests (absent from clients that do not count)."""
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               for sample in family.samples if sample.name == OPERATOR_REQUESTS)


Counts = Mapping[tuple[str, str], float]


def reconcile_requests(before: Counts, after: Counts) -> dict[str, int]:
    """Requests between two readings on what reconciliation touches, by `VERB resource`, other clients' verbs out."""
    out: dict[str, int] = {}
    for (verb, resource), value in after.items():
        delta = round(value - before.get((verb, resource), 0.0))
        if delta <= 0 or resource not in RECONCILED_RESOURCES or verb in OTHER_CLIENTS_VERBS:
            continue
        if verb == "APPLY" and resource == "warmpools":
            continue
        out[f"{verb} {resource}"] = delta
    return dict(sorted(out.items()))


def phase_figures(before: Reading, after: Reading) -> dict[str, Any]:
    """What one phase cost: reconciliations, their durations and the API requests per reconciliation."""
    buckets = {b: after.buckets.get(b, 0.0) - before.buckets.get(b, 0.0) for b in after.buckets}
    count = after.count - before.count
    requests = reconcile_requests(before.api, after.api)
    total = sum(requests.values())
    own = after.own_requests - before.own_requests
    return {
        "reconciles": round(count),
        "duration_median_s": _rounded(quantile(0.5, buckets)),
        "duration_p90_s": _rounded(quantile(0.9, buckets)),
        "duration_mean_s": _rounded((after.total - before.total) / count if count else None),
        "api_requests": total,
        "api_requests_per_reconcile": round(total / count, 2) if count else None,
        "operator_counted_requests": round(own) if own else None,
        "api_requests_by_verb_resource": requests,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Reading:
    buckets: dict[float, float]
    count: float
    total: float
    own_requests: float
    api: dict[tuple[str, str], float]


class Bench:
    """kubectl of the local control plane and the operator's /metrics."""

    def __init__(self, binary: Path, kubeconfig: Path, metrics_url: str) -> None:
        self.binary, self.kubeconfig, self.metrics_url = binary, kubeconfig, metrics_url

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(self.binary), "kubectl", f"--kubeconfig={self.kubeconfig}", *args],
                                input=stdin, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[:500]}")
        return result.stdout

    def apply(self, documents: Iterable[Mapping[str, Any]]) -> None:
        self.kubectl("apply", "--server-side", "--field-manager=api-bench", "-f", "-",
                     stdin=yaml.safe_dump_all(list(documents)))

    def operator_exposition(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def read(self) -> Reading:
        text = self.operator_exposition()
        count, total = sums(text, DURATION)
        api = api_requests(self.kubectl("get", "--raw", "/metrics"))
        return Reading(histogram(text, DURATION), count, total, operator_requests(text), api)

    def settled(self, pools: int) -> bool:
        """Every pool reconciled at its current generation."""
        items = json.loads(self.kubectl("get", "warmpools", "-n", NAMESPACE, "-o", "json"))["items"]
        done = [p for p in items
                if (p.get("status") or {}).get("observedGeneration") == p["metadata"].get("generation")]
        return len(done) == pools

    def wait_quiet(self, pools: int, quiet_s: float, timeout_s: float) -> None:
        """Until every pool is reconciled and no reconciliation ran for `quiet_s` seconds."""
        deadline = time.monotonic() + timeout_s
        last, since = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            count = sums(self.operator_exposition(), DURATION)[0]
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_s and self.settled(pools):
                return
            time.sleep(1.0)
        raise RuntimeError(f"the operator did not settle within {timeout_s:g} s")


def measure(options: Options, bench: Bench) -> dict[str, Any]:
    bench.kubectl("create", "namespace", NAMESPACE)
    bench.wait_quiet(0, options.quiet_seconds, options.timeout_s)
    result: dict[str, Any] = {"pools": options.pools}
    for phase, warm in (("create", 2), ("spec_change", 3)):
        before = bench.read()
        bench.apply(pool_manifest(i, warm) for i in range(options.pools))
        bench.wait_quiet(options.pools, options.quiet_seconds, options.timeout_s)
        result[phase] = phase_figures(before, bench.read())
        say(f"{phase}: {json.dumps(result[phase])}")
    return result


def run(options: Options, as_json: bool) -> int:
    kubeconfig = options.state_dir / "kubeconfig"
    cluster_state = options.state_dir / "cluster"
    if commands.up(kubeconfig=kubeconfig, state_dir=cluster_state, operator=False, crds=None) != 0:
        return 1
    try:
        layout = commands.resolve_layout(kubeconfig, cluster_state)
        record = controlplane.start_operator(layout=layout, log=say, extra_env=operator_env(options.operator_path))
        bench = Bench(ensure_kcluster(log=say), kubeconfig, metrics_url(record))
        result = measure(options, bench)
    except (RuntimeError, ValueError, OSError, controlplane.ClusterError) as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        if options.keep:
            say(f"left running; stop with: warmpool dev down --kubeconfig {kubeconfig} --state-dir {cluster_state}")
        else:
            commands.down(kubeconfig=kubeconfig, state_dir=cluster_state, keep_state=False)
    result["operator_source"] = str(options.operator_path or "this installation")
    print(json.dumps(result, indent=2) if as_json else yaml.safe_dump(result, sort_keys=False))
    return 0


def operator_env(operator_path: Path | None) -> dict[str, str]:
    """PYTHONPATH that makes the operator process import another checkout's `warmpool_operator`."""
    if operator_path is None:
        return {}
    package_root = operator_path.absolute() / "operator"
    if not (package_root / "warmpool_operator" / "__init__.py").is_file():
        raise ValueError(f"--operator-path {operator_path}: no operator/warmpool_operator package there")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))}


def metrics_url(record: procs.Recorded) -> str:
    """The operator's /metrics, from the port on its command line."""
    argv = Path(f"/proc/{record.pid}/cmdline").read_text().split("\0")
    port = next((a.split("=", 1)[1] for a in argv if a.startswith("--metrics-port=")), None)
    if port is None:
        raise RuntimeError("the operator runs without --metrics-port")
    return f"http://127.0.0.1:{port}/metrics"

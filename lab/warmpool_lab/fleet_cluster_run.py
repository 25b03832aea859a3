"""`warmpool bench fleet-cluster`: one RuntimeFleet of N WarmPools on the local control plane, measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from warmpool.demo.loopback import module_server
from warmpool.dev import commands, procs
from warmpool.dev.build import ensure_kcluster
from warmpool_contract import STATS_PATH
from warmpool_lab.fleet_cluster_bench import (
    EXPORT,
    FLEET,
    BenchModule,
    api_requests,
    distribution,
    fleet_manifest,
    generate_modules,
    module_path,
    operator_share,
    per_minute,
    pool_manifest,
    pool_name,
    proc_rss_bytes,
    proc_ticks,
    split_reads_writes,
    tenant_of,
)
from warmpool_operator.readyz import parse_readyz
from warmpool_operator.runtimefleet.render import selector_string
from warmpool_operator.scaling.exposition import pool_metrics
from warmpool_operator.scaling.tuple_stats import parse_stats, pool_metrics_from_stats

NAMESPACE = "fleet-bench"
RUNTIME_PORT = 8080
APPLY_BATCH = 200
CALL_TIMEOUT_S = 2.0
HIT_PATIENCE_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    print(f"[fleet-cluster] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    """What one run measures."""

    pools: int
    pods: int
    steady_seconds: float
    new_pools: int
    churn: int
    ready_timeout_s: float
    state_dir: Path
    keep: bool


class Kube:
    """kubectl of the local control plane."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def run(self, *args: str, stdin: str | None = None, timeout_s: float = 300) -> str:
        result = subprocess.run([str(self.binary), "kubectl", f"--kubeconfig={self.kubeconfig}", *args],
                                input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[:500]}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, documents: Sequence[Mapping[str, Any]]) -> None:
        self.run("apply", "--server-side", "--field-manager=fleet-bench", "-f", "-",
                 stdin=yaml.safe_dump_all(list(documents)))


def ready_of(pool: Mapping[str, Any]) -> bool:
    conditions = (pool.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pools_ready(kube: Kube) -> tuple[int, int]:
    items = kube.json("get", "warmpools", f"--namespace={NAMESPACE}")["items"]
    return sum(ready_of(p) for p in items), len(items)


def fleet_pods(kube: Kube) -> list[dict[str, Any]]:
    items = kube.json("get", "pods", f"--namespace={NAMESPACE}", f"--selector={selector_string(FLEET)}")
    return [p for p in items["items"] if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def container_pid(pod: Mapping[str, Any]) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        _, _, pid = str(status.get("containerID") or "").partition("://")
        if pid.isdigit():
            return int(pid)
    return None


def restarts(pods: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {p["metadata"]["uid"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or [])
            for p in pods}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def process_tree(root: int) -> list[int]:
    """`root` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                parent = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(parent, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_rss(root: int) -> int:
    return sum(proc_rss_bytes(_read(f"/proc/{pid}/status")) for pid in process_tree(root))


def tree_ticks(root: int) -> int:
    return sum(proc_ticks(stat) for pid in process_tree(root) if (stat := _read(f"/proc/{pid}/stat")))


def http_get(url: str, timeout_s: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


def call(ip: str, index: int, sha: str) -> int:
    """Status of one call of module `index`'s `ident` on a pod (200 only when it answered its own index)."""
    request = urllib.request.Request(f"http://{ip}:{RUNTIME_PORT}/v1/{tenant_of(index)}/{sha}/{EXPORT}",
                                     data=b'{"args": []}', method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as response:
            body = json.loads(response.read())
            return 200 if body.get("results") == [index] else 299
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, TimeoutError, OSError):
        return 0


def operator_pid(layout_state: Path, kubeconfig: Path) -> int:
    layout = commands.resolve_layout(kubeconfig, layout_state)
    record = procs.read_pid_file(layout.pid("operator"))
    if record is None:
        raise RuntimeError("the operator's pid file is missing")
    return record.pid


def operator_counters(pid: int) -> dict[str, float]:
    """The operator's own counters (…_total samples of its /metrics), summed by name."""
    argv = _read(f"/proc/{pid}/cmdline").split("\0")
    port = next((a.split("=", 1)[1] for a in argv if a.startswith("--metrics-port=")), None)
    if port is None:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_total", "_count", "_sum")) and sample.name.startswith("warmpool_operator"):
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items())
                                            if k in ("trigger", "result", "kind", "reason"))
                out[key] = out.get(key, 0.0) + sample.value
    return out


def deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def creation_work(counters: Mapping[str, float]) -> float:
    """Reconciliations of WarmPools by their create handler (retried while the tuple warms)."""
    return sum(v for k, v in counters.items()
               if k.startswith("warmpool_operator_reconcile_duration_seconds_count") and k.endswith("trigger=create"))


def wait_quiet(pid: int, timeout_s: float, quiet_s: float = 15.0) -> float:
    """Seconds until no creation work for `quiet_s` seconds (the quiet span not counted)."""
    start = time.monotonic()
    last, since = creation_work(operator_counters(pid)), time.monotonic()
    while time.monotonic() - start < timeout_s:
        time.sleep(2.5)
        now = creation_work(operator_counters(pid))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return since - start
    raise RuntimeError("the operator never went quiet")


def body_costs(ip: str) -> dict[str, float]:
    """Size and parse time of a pod's /readyz and /metrics as the operator parses them."""
    out: dict[str, float] = {}
    readyz = http_get(f"http://{ip}:{RUNTIME_PORT}/readyz")
    start = time.perf_counter()
    report = parse_readyz(json.loads(readyz))
    out["readyz_bytes"], out["readyz_parse_ms"] = len(readyz), round(1000 * (time.perf_counter() - start), 2)
    out["readyz_tuples"] = len(getattr(report, "tuples", ()) or ())
    metrics = http_get(f"http://{ip}:{RUNTIME_PORT}/metrics")
    start = time.perf_counter()
    pool_metrics(metrics.decode())
    out["metrics_bytes"], out["metrics_parse_ms"] = len(metrics), round(1000 * (time.perf_counter() - start), 2)
    return out


def wait(what: str, probe: Callable[[], Any], timeout_s: float, interval_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise RuntimeError(f"timed out waiting for {what}")


def first_warm_hit(kube: Kube, module: BenchModule, url: str, ips: Sequence[str]) -> float:
    """Seconds from applying a new member to its first call served by a warm instance on some pod."""
    start = time.monotonic()
    kube.apply([pool_manifest(NAMESPACE, module, url)])
    while time.monotonic() - start < HIT_PATIENCE_S:
        for ip in ips:
            if call(ip, module.index, module.sha256) != 200:
                continue
            # `/stats`, not `/metrics`: at 1,000 tuples the text costs seconds to render and parse,
            # which would be counted in the time measured here.
            metrics = pool_metrics_from_stats(parse_stats(http_get(f"http://{ip}:{RUNTIME_PORT}{STATS_PATH}")),
                                              tenant=tenant_of(module.index))
            if metrics is not None and metrics.hits >= 1:
                return time.monotonic() - start
        time.sleep(0.1)
    raise RuntimeError(f"{pool_name(module.index)} served no warm hit in {HIT_PATIENCE_S:.0f} s")


def misses_of(ips: Sequence[str], tenants: set[str]) -> float:
    total = 0.0
    for ip in ips:
        for row in parse_stats(http_get(f"http://{ip}:{RUNTIME_PORT}{STATS_PATH}")).tuples:
            if row.tenant in tenants:
                total += row.misses
    return total


def churn(kube: Kube, gone: Sequence[BenchModule], added: Sequence[BenchModule], kept: Sequence[BenchModule], *,
          url: str, ips: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Delete `gone`, add `added`, while calling `kept` on every pod one call at a time; misses on `kept`."""
    tenants = {tenant_of(m.index) for m in kept}
    before = misses_of(ips, tenants)
    stop = threading.Event()
    statuses: dict[int, int] = {}

    def caller() -> None:
        while kept and not stop.is_set():
            for module in kept:
                for ip in ips:
                    code = call(ip, module.index, module.sha256)
                    statuses[code] = statuses.get(code, 0) + 1
                if stop.is_set():
                    return

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    start = time.monotonic()
    kube.run("delete", "warmpools", f"--namespace={NAMESPACE}", "--wait=false",
             *(pool_name(m.index) for m in gone))
    for offset in range(0, len(added), APPLY_BATCH):
        kube.apply([pool_manifest(NAMESPACE, m, url) for m in added[offset:offset + APPLY_BATCH]])
    wanted = {pool_name(m.index) for m in added}
    removed = {pool_name(m.index) for m in gone}

    def settled() -> bool:
        items = kube.json("get", "warmpools", f"--namespace={NAMESPACE}")["items"]
        names = {p["metadata"]["name"]: p for p in items}
        return not (removed & names.keys()) and all(n in names and ready_of(names[n]) for n in wanted)

    wait("the churned members settled", settled, timeout_s)
    elapsed = time.monotonic() - start
    time.sleep(5.0)
    stop.set()
    thread.join()
    after = misses_of(ips, tenants)
    return {"tuples_removed": len(gone), "tuples_added": len(added), "seconds_to_settle": round(elapsed, 1),
            "kept_tuples_called": len(kept), "calls_by_status": {str(k): v for k, v in sorted(statuses.items())},
            "misses_on_kept_tuples": after - before}


def measure(options: Options, kube: Kube, url: str, modules: Sequence[BenchModule], kubeconfig: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"pools": options.pools, "pods_asked": options.pods}
    members = list(modules[: options.pools])
    fresh = list(modules[options.pools: options.pools + options.new_pools])
    incoming = list(modules[options.pools + options.new_pools:])
    kube.run("create", "namespace", NAMESPACE)
    operator = operator_pid(options.state_dir / "cluster", kubeconfig)
    ramp_counters, ramp_ticks = operator_counters(operator), tree_ticks(operator)
    start = time.monotonic()
    kube.apply([fleet_manifest(NAMESPACE, pods=options.pods, tuples=options.pools + options.new_pools + options.churn)])
    for offset in range(0, len(members), APPLY_BATCH):
        kube.apply([pool_manifest(NAMESPACE, m, url) for m in members[offset:offset + APPLY_BATCH]])
    result["apply_seconds"] = round(time.monotonic() - start, 1)
    last = [-1]

    def all_ready() -> bool:
        ready, total = pools_ready(kube)
        if ready != last[0]:
            say(f"  {ready}/{total} Ready at {time.monotonic() - start:.0f} s")
            last[0] = ready
        return ready == options.pools

    wait("every WarmPool Ready", all_ready, options.ready_timeout_s, interval_s=5.0)
    result["seconds_to_all_ready"] = round(time.monotonic() - start, 1)
    result["ramp_operator_cpu_seconds"] = round((tree_ticks(operator) - ramp_ticks) / CLK_TCK, 1)
    result["ramp_operator_counter_deltas"] = deltas(ramp_counters, operator_counters(operator))
    pods = [p for p in fleet_pods(kube) if pod_ready(p)]
    ips = [p["status"]["podIP"] for p in pods]
    pids = [pid for p in pods if (pid := container_pid(p)) is not None]
    result["runtime_pods"] = len(pods)
    result["runtime_rss_mib"] = round(sum(tree_rss(pid) for pid in pids) / 2**20, 1)
    result["per_pod_bodies"] = body_costs(ips[0]) if ips else {}
    identities = restarts(pods)
    say(f"all {options.pools} Ready in {result['seconds_to_all_ready']} s on {len(pods)} pods, "
        f"runtime RSS {result['runtime_rss_mib']} MiB; steady window of {options.steady_seconds:.0f} s")

    # Steady means the operator has finished its creation handlers too, not only that members are Ready.
    result["seconds_from_ready_to_operator_quiet"] = round(wait_quiet(operator, options.ready_timeout_s), 1)
    say(f"operator quiet {result['seconds_from_ready_to_operator_quiet']} s after all Ready")
    api_before, counters_before = api_requests(kube.run("get", "--raw", "/metrics")), operator_counters(operator)
    ticks_before, window_start = tree_ticks(operator), time.monotonic()
    rss_samples = []
    while time.monotonic() - window_start < options.steady_seconds:
        rss_samples.append(tree_rss(operator))
        time.sleep(5.0)
    seconds = time.monotonic() - window_start
    ticks_after = tree_ticks(operator)
    api_after, counters_after = api_requests(kube.run("get", "--raw", "/metrics")), operator_counters(operator)
    rates = per_minute(api_before, api_after, seconds)
    reads, writes = split_reads_writes(rates)
    own_reads, own_writes = operator_share(rates)
    result["steady"] = {
        "seconds": round(seconds, 1),
        "operator_cpu_cores": round((ticks_after - ticks_before) / CLK_TCK / seconds, 3),
        "operator_rss_mib_max": round(max(rss_samples) / 2**20, 1),
        "apiserver_reads_per_minute_all_clients": reads,
        "apiserver_writes_per_minute_all_clients": writes,
        "operator_reads_per_minute": own_reads,
        "operator_writes_per_minute": own_writes,
        "apiserver_requests_per_minute_by_verb_resource": rates,
        "operator_counter_deltas": deltas(counters_before, counters_after),
    }
    say(f"steady: operator {result['steady']['operator_cpu_cores']} cores, "
        f"{result['steady']['operator_rss_mib_max']} MiB; API reads/min {reads}, writes/min {writes} "
        f"(the operator's: {own_reads} reads/min, {own_writes} writes/min)")

    say(f"so far: {json.dumps(result)}")
    hits = []
    for module in fresh:
        hits.append(first_warm_hit(kube, module, url, ips))
        say(f"  {pool_name(module.index)}: first warm hit {hits[-1]:.2f} s after apply")
    result["apply_to_first_warm_hit_s"] = {**distribution(hits), "all": [round(h, 2) for h in hits]}
    say(f"so far: {json.dumps(result)}")
    if incoming:
        gone = members[: len(incoming)]
        kept = (members[len(incoming):] + fresh)[:50]
        result["churn"] = churn(kube, gone, incoming, kept, url=url, ips=ips, timeout_s=options.ready_timeout_s)
        say(f"churn: {result['churn']}")
    after = [p for p in fleet_pods(kube) if p["metadata"]["uid"] in identities]
    result["pods_restarted_or_replaced"] = sum(1 for uid, n in identities.items()
                                               if restarts(after).get(uid) != n)
    return result


def run(options: Options, as_json: bool) -> int:
    kubeconfig = options.state_dir / "kubeconfig"
    modules = generate_modules(options.pools + options.new_pools + options.churn)
    say(f"{len(modules)} modules generated ({len(modules[0].wasm)} bytes each)")
    with module_server({module_path(m.index).lstrip('/'): m.wasm for m in modules}) as base:
        if commands.up(kubeconfig=kubeconfig, state_dir=options.state_dir / "cluster", operator=True,
                       crds=None) != 0:
            return 1
        os.nice(10)  # the cluster runs at normal priority; this process and its kubectl runs are the load
        try:
            kube = Kube(ensure_kcluster(log=say), kubeconfig)
            result = measure(options, kube, base, modules, kubeconfig)
        except (RuntimeError, ValueError, OSError) as exc:
            say(f"failed: {exc}")
            return 1
        finally:
            if options.keep:
                say(f"left running; stop with: warmpool dev down --kubeconfig {kubeconfig} "
                    f"--state-dir {options.state_dir / 'cluster'}")
            else:
                commands.down(kubeconfig=kubeconfig, state_dir=options.state_dir / "cluster", keep_state=False)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(yaml.safe_dump(result, sort_keys=False))
    return 0


"""`warmpool bench exposition`: what one autoscaler scrape of a fleet pod costs, `/metrics` against `/stats`.

A real `warmpool runtime serve` process holds N tuples (distinct generated modules, one warm instance
each, one call each so every counter has a value). Per size, `repeat` times each: the body's bytes, the
runtime process's CPU to answer it (mean, from /proc), and the operator's CPU to turn it
into the fleet decision's input (`pod_scrape` of the text, `parse_stats` + `pod_scrape_from_stats` of the
document, every tuple wanted; thread CPU time, median). Both forms are measured in the same run on
the same runtime; the ratios compare them. The runtime's CPU is the mean over at least 2 s of requests
back to back.

Measured here (`warmpool bench exposition`, 15 repeats; a shared 2-core machine at a load average of 18-20):

Bytes per scrape, then CPU per scrape: the operator's (parse + ingest) and the runtime's (render + send).

| tuples | bytes /metrics | /stats | ratio | operator /metrics | /stats | ratio | runtime /metrics | /stats | ratio |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| 100 | 455 KiB | 8.8 KiB | 52x | 60.8 ms | 0.88 ms | 69x | 92.0 ms | 1.29 ms | 71x |
| 1,000 | 4,530 KiB | 86.1 KiB | 53x | 602.9 ms | 13.87 ms | 43x | 1,156.7 ms | 7.83 ms | 148x |

At 1,000 tuples a fleet pod's `/metrics` took the runtime about a second of CPU (on its serving
thread) and the operator 0.6 s per tick; `/stats` takes each a hundredth of that.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from warmpool_contract import METRICS_PATH, READYZ_PATH, STATS_PATH
from warmpool_lab.fleet_cluster_bench import EXPORT, BenchModule, generate_modules, proc_ticks, tenant_of
from warmpool_operator.fleet.observations import PodScrape, TupleKey
from warmpool_operator.runtimefleet.scaling import pod_scrape, pod_scrape_from_stats
from warmpool_operator.scaling.tuple_stats import parse_stats

CLK_TCK = os.sysconf("SC_CLK_TCK")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Loopback only: never through a proxy the environment names."""
READY_TIMEOUT_S = 600.0
MIN_RUNTIME_WALL_S = 2.0


@dataclass(frozen=True, slots=True)
class ScrapeCost:
    """One size's figures: bytes, operator CPU per scrape (median ms) and runtime CPU per scrape (mean ms)."""

    tuples: int
    metrics_bytes: int
    stats_bytes: int
    metrics_ingest_ms: float
    stats_ingest_ms: float
    metrics_runtime_ms: float
    stats_runtime_ms: float

    @property
    def bytes_ratio(self) -> float:
        return self.metrics_bytes / self.stats_bytes

    @property
    def ingest_ratio(self) -> float:
        return self.metrics_ingest_ms / self.stats_ingest_ms

    @property
    def runtime_ratio(self) -> float:
        return self.metrics_runtime_ms / self.stats_runtime_ms if self.stats_runtime_ms else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_ratio": round(self.bytes_ratio, 1), "ingest_ratio": round(self.ingest_ratio, 1),
                "runtime_ratio": round(self.runtime_ratio, 1)}


def ingest_text(body: bytes, wanted: frozenset[TupleKey]) -> PodScrape:
    """What the fleet autoscaler does with a `/metrics` body."""
    return pod_scrape("pod", body.decode("utf-8", "replace"), wanted)


def ingest_stats(body: bytes, wanted: frozenset[TupleKey]) -> PodScrape:
    """What the fleet autoscaler does with a `/stats` body."""
    return pod_scrape_from_stats("pod", parse_stats(body), wanted)


def median_cpu_ms(work: Callable[[], object], repeat: int) -> float:
    """Median thread CPU time of `work`, in ms."""
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        work()
        times.append(time.thread_time() - start)
    return 1000 * statistics.median(times)


def _get(url: str) -> bytes:
    with _OPENER.open(url, timeout=60) as resp:
        body: bytes = resp.read()
        return body


def _runtime_cpu_ms(pid: int, url: str, repeat: int) -> tuple[bytes, float]:
    """The last body, and the runtime process's mean CPU per answer over at least `repeat` requests and
    `MIN_RUNTIME_WALL_S` (its CPU is read in clock ticks: enough requests make them a fine measure)."""
    stat = Path(f"/proc/{pid}/stat")
    before = proc_ticks(stat.read_text())
    start, requests, body = time.monotonic(), 0, b""
    while requests < repeat or time.monotonic() - start < MIN_RUNTIME_WALL_S:
        body = _get(url)
        requests += 1
    spent = proc_ticks(stat.read_text()) - before
    return body, 1000 * spent / CLK_TCK / requests


def _config(directory: Path, modules: Sequence[BenchModule]) -> Path:
    tuples = []
    for module in modules:
        path = directory / f"{module.sha256}.wasm"
        path.write_bytes(module.wasm)
        tuples.append({"tenant": tenant_of(module.index), "warmInstancesPerTuple": 1,
                       "module": {"sha256": module.sha256, "source": {"path": str(path)}}})
    config = directory / "config.json"
    config.write_text(json.dumps({"maxTotalWarm": len(modules), "tuples": tuples, "settings": {
        "poolSlots": len(modules) + 64, "maxMemoryBytes": 1 << 20, "drainSeconds": 0}}))
    return config


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _runtime(config: Path) -> Iterator[tuple[int, str]]:
    """A runtime serving `config` on loopback until every tuple is warm; yields its pid and base URL."""
    port = _free_port()
    log = (config.parent / "runtime.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config", str(config),
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the runtime exited: {(config.parent / 'runtime.log').read_text()[-2000:]}")
            try:
                with _OPENER.open(base + READYZ_PATH, timeout=10) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the runtime did not warm every tuple in time")
            time.sleep(0.5)
        yield proc.pid, base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _call_each(base: str, modules: Sequence[BenchModule]) -> None:
    for module in modules:
        request = urllib.request.Request(f"{base}/v1/{tenant_of(module.index)}/{module.sha256}/{EXPORT}",
                                         data=b'{"args":[]}', headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=30) as resp:
            resp.read()


def measure(tuples: int, repeat: int, say: Callable[[str], None] = lambda _: None) -> ScrapeCost:
    """One size: start a runtime of `tuples` tuples, scrape both forms `repeat` times, ingest each."""
    modules = generate_modules(tuples)
    wanted = frozenset(TupleKey(tenant_of(m.index), m.sha256) for m in modules)
    with tempfile.TemporaryDirectory(prefix="warmpool-scrape-bench-") as tmp:
        config = _config(Path(tmp), modules)
        say(f"{tuples} tuples: starting a runtime and warming every tuple")
        with _runtime(config) as (pid, base):
            _call_each(base, modules)
            text, metrics_runtime = _runtime_cpu_ms(pid, base + METRICS_PATH, repeat)
            stats, stats_runtime = _runtime_cpu_ms(pid, base + STATS_PATH, repeat)
    if ingest_text(text, wanted) != ingest_stats(stats, wanted):
        raise AssertionError("/metrics and /stats disagree")
    say(f"{tuples} tuples: ingesting each body {repeat} times")
    return ScrapeCost(
        tuples=tuples,
        metrics_bytes=len(text),
        stats_bytes=len(stats),
        metrics_ingest_ms=median_cpu_ms(lambda: ingest_text(text, wanted), repeat),
        stats_ingest_ms=median_cpu_ms(lambda: ingest_stats(stats, wanted), repeat),
        metrics_runtime_ms=metrics_runtime,
        stats_runtime_ms=stats_runtime,
    )


def table(costs: Sequence[ScrapeCost]) -> str:
    """The figures as the markdown rows of the docstring's table."""
    return "\n".join(
        f"| {c.tuples:,} | {c.metrics_bytes / 1024:,.0f} KiB | {c.stats_bytes / 1024:,.1f} KiB | {c.bytes_ratio:.0f}x "
        f"| {c.metrics_ingest_ms:,.1f} ms | {c.stats_ingest_ms:,.2f} ms | {c.ingest_ratio:.0f}x "
        f"| {c.metrics_runtime_ms:,.1f} ms | {c.stats_runtime_ms:,.2f} ms | {c.runtime_ratio:.0f}x |"
        for c in costs
    )


def run(sizes: Sequence[int], repeat: int, as_json: bool) -> int:
    """`warmpool bench exposition`: measure each size, print a table (or JSON)."""
    def say(line: str) -> None:
        print(f"[exposition] {line}", file=sys.stderr, flush=True)

    costs = [measure(n, repeat, say) for n in sizes]
    if as_json:
        print(json.dumps([c.as_json() for c in costs], indent=2))
    else:
        print(table(costs))
    return 0

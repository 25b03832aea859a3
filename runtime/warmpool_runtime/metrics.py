"""Prometheus exposition of the pools' plain counters, read at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from warmpool_contract import (
    CALLS_SHED,
    CONFIG_RELOADS,
    INSTANTIATION_DURATION,
    INVOCATION_DURATION,
    INVOCATIONS,
    POOL_CAPACITY,
    POOL_DRAWS,
    POOL_EVICTIONS,
    POOL_IN_FLIGHT,
    POOL_RESET_FAILED,
    POOL_TERMINATED,
    POOL_WARM,
    SATURATED,
    SHORT_HASH,
    TOKEN_FILES_REFUSED,
    TRAPS,
    TUPLE_READY,
    TUPLES,
    UNAUTHORIZED,
    WORKER_BUSY,
    WORKER_QUEUE_DEPTH,
)
from warmpool_runtime.lanes import WorkerLane
from warmpool_runtime.pool import TuplePool
from warmpool_runtime.reconfig import ReloadStatus
from warmpool_runtime.registry import TupleStatus
from warmpool_runtime.stats import Histogram


class PoolCollector(Collector):
    """Reads every pool's stats, and the worker lane's load, on each scrape; labels are bounded by the
    configured tuples."""

    def __init__(self, pools: Callable[[], Iterable[TuplePool]], workers: WorkerLane | None = None,
                 tuples: TupleSource | None = None) -> None:
        self._pools = pools
        self._workers = workers
        self._tuples = tuples

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        labels = ["tenant", "module"]
        draws = CounterMetricFamily(POOL_DRAWS, "Acquisitions from the warm pool, by result.",
                                    labels=[*labels, "result"])
        warm = GaugeMetricFamily(POOL_WARM, "Idle warm instances ready to serve.",
                                 labels=labels)
        capacity = GaugeMetricFamily(POOL_CAPACITY,
                                     "Configured warm floor (after the maxTotalWarm cap).", labels=labels)
        in_flight = GaugeMetricFamily(POOL_IN_FLIGHT, "Invocations running now.", labels=labels)
        reset_failed = CounterMetricFamily(POOL_RESET_FAILED,
                                           "Used instances that could not be restored to a warm one.",
                                           labels=["tenant"])
        terminated = CounterMetricFamily(POOL_TERMINATED,
                                         "Used instances terminated instead of returned, by reason.",
                                         labels=[*labels, "reason"])
        invocations = CounterMetricFamily(INVOCATIONS, "Invocations by outcome code.",
                                          labels=[*labels, "code"])
        traps = CounterMetricFamily(TRAPS, "Guest traps by trap code.", labels=[*labels, "trap"])
        invoke = HistogramMetricFamily(INVOCATION_DURATION,
                                       "Invocation latency inside the runtime.", labels=labels)
        instantiate = HistogramMetricFamily(INSTANTIATION_DURATION,
                                            "Time to instantiate one instance.", labels=labels)
        evictions = CounterMetricFamily(POOL_EVICTIONS, "Idle instances dropped because maxTotalWarm gave their "
                                        "slots to more recently used tuples.", labels=labels)
        failed_by_tenant: dict[str, int] = {}
        for pool in self._pools():
            tenant, module = pool.template.tenant, pool.template.sha256[:SHORT_HASH]
            s = pool.stats
            draws.add_metric([tenant, module, "hit"], s.hits)
            draws.add_metric([tenant, module, "miss"], s.misses)
            warm.add_metric([tenant, module], pool.warm)
            capacity.add_metric([tenant, module], pool.floor)
            in_flight.add_metric([tenant, module], s.in_flight)
            failed_by_tenant[tenant] = failed_by_tenant.get(tenant, 0) + s.reset_failed
            for reason, n in sorted(s.terminated.items()):
                terminated.add_metric([tenant, module, reason], n)
            for code, n in sorted({"ok": s.ok, **s.invocations}.items()):
                invocations.add_metric([tenant, module, code], n)
            for trap, n in sorted(s.traps.items()):
                traps.add_metric([tenant, module, trap], n)
            _add_histogram(invoke, [tenant, module], s.invoke_seconds)
            _add_histogram(instantiate, [tenant, module], s.instantiate_seconds)
            evictions.add_metric([tenant, module], s.evictions)
        for tenant, n in sorted(failed_by_tenant.items()):
            reset_failed.add_metric([tenant], n)
        yield from (draws, warm, capacity, in_flight, reset_failed, terminated, invocations, traps, invoke,
                    instantiate, evictions)
        yield from self._lane_families()
        yield from _tuple_families(*(self._tuples() if self._tuples is not None else ([], ReloadStatus(), {}, {})))

    def _lane_families(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        shed = CounterMetricFamily(CALLS_SHED, "Calls refused before they ran, by reason (tenant_limit: 429, "
                                   "saturated: 503).", labels=["tenant", "reason"])
        queued = GaugeMetricFamily(WORKER_QUEUE_DEPTH, "Calls queued for a worker thread.", labels=["tenant"])
        busy = GaugeMetricFamily(WORKER_BUSY, "Worker threads running the tenant's calls.", labels=["tenant"])
        saturated = GaugeMetricFamily(SATURATED, "1 while calls wait for a worker past the high-water mark "
                                      "(/readyz answers 503), else 0.")
        if self._workers is not None:
            for load in sorted(self._workers.load(), key=lambda item: item.tenant):
                queued.add_metric([load.tenant], load.queued)
                busy.add_metric([load.tenant], load.running)
                for reason, n in sorted(load.shed.items()):
                    shed.add_metric([load.tenant, reason], n)
            saturated.add_metric([], 1 if self._workers.saturated else 0)
        yield from (shed, queued, busy, saturated)


TupleSource = Callable[[], tuple[list[TupleStatus], ReloadStatus, Mapping[str, int], Mapping[str, int]]]
"""The tuples' states, the config watcher's record, 401s by tenant and refused token files by path, read at
scrape time."""


def _tuple_families(statuses: list[TupleStatus], reloads: ReloadStatus, unauthorized: Mapping[str, int],
                    token_files_refused: Mapping[str, int]) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    ready = GaugeMetricFamily(TUPLE_READY, "1 while the tuple is warm, else 0 (loading or failed).",
                              labels=["tenant", "module"])
    by_state = GaugeMetricFamily(TUPLES, "Tuples configured on this runtime, by state.", labels=["state"])
    counts = dict.fromkeys(("loading", "warm", "failed"), 0)
    for status in statuses:
        ready.add_metric([status.tenant, status.sha256[:SHORT_HASH]], 1 if status.state == "warm" else 0)
        counts[status.state] += 1
    for state, n in counts.items():
        by_state.add_metric([state], n)
    reload_family = CounterMetricFamily(CONFIG_RELOADS, "Changed config files read by the watcher, by result.",
                                        labels=["result"])
    reload_family.add_metric(["applied"], reloads.applied)
    reload_family.add_metric(["refused"], reloads.refused)
    refused = CounterMetricFamily(UNAUTHORIZED, "Calls refused with 401 for a missing or wrong bearer token.",
                                  labels=["tenant"])
    for tenant, n in sorted(unauthorized.items()):
        refused.add_metric([tenant], n)
    token_files = CounterMetricFamily(TOKEN_FILES_REFUSED, "Token digests files refused for their size (or not "
                                      "a regular file); the digests accepted before are kept.", labels=["file"])
    for path, n in sorted(token_files_refused.items()):
        token_files.add_metric([path], n)
    yield from (ready, by_state, reload_family, refused, token_files)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    buckets, _, total = histogram.snapshot()
    family.add_metric(labels, [(_bound(b), float(n)) for b, n in buckets], total)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def build_registry(pools: Callable[[], Iterable[TuplePool]], workers: WorkerLane | None = None,
                   tuples: TupleSource | None = None) -> CollectorRegistry:
    """A registry of the runtime's own metrics (of the worker lane and the tuples' states too, when given)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(pools, workers, tuples))
    return registry

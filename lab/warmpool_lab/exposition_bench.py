"""Parse time of a runtime pod's exposition: the operator's parser against prometheus_client's."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import warmpool_contract as contract
from warmpool_operator.scaling.exposition import ExpositionError, PodMetrics, pool_metrics

Parser = Callable[[str, str, str], PodMetrics | None]


def runtime_exposition(tuples: int) -> str:
    """What a runtime pod serving `tuples` (tenant, module) pairs exposes, every family included."""
    registry = CollectorRegistry()
    pair = ["tenant", "module"]
    draws = Counter(contract.POOL_DRAWS, "draws", [*pair, "result"], registry=registry)
    warm = Gauge(contract.POOL_WARM, "idle", pair, registry=registry)
    capacity = Gauge(contract.POOL_CAPACITY, "floor", pair, registry=registry)
    in_flight = Gauge(contract.POOL_IN_FLIGHT, "running", pair, registry=registry)
    reset_failed = Counter(contract.POOL_RESET_FAILED, "reset failures", pair, registry=registry)
    terminated = Counter(contract.POOL_TERMINATED, "terminated", pair, registry=registry)
    invocations = Counter(contract.INVOCATIONS, "invocations", [*pair, "code"], registry=registry)
    duration = Histogram(contract.INVOCATION_DURATION, "duration", pair, registry=registry)
    instantiation = Histogram(contract.INSTANTIATION_DURATION, "instantiation", pair, registry=registry)
    for i in range(tuples):
        key = (f"tenant-{i % 50}", f"{i:012x}")
        draws.labels(*key, "hit").inc(1000 + i)
        draws.labels(*key, "miss").inc(i % 7)
        warm.labels(*key).set(i % 16)
        capacity.labels(*key).set(16)
        in_flight.labels(*key).set(i % 5)
        reset_failed.labels(*key).inc(0)
        terminated.labels(*key).inc(0)
        invocations.labels(*key, "ok").inc(1000 + i)
        duration.labels(*key).observe(0.002)
        instantiation.labels(*key).observe(0.01)
    return generate_latest(registry).decode()


def pool_metrics_prometheus_client(text: str, tenant: str, module: str) -> PodMetrics | None:
    """`pool_metrics` for one tuple, built on prometheus_client's text parser."""
    sums = {"hit": 0.0, "miss": 0.0, contract.POOL_WARM: 0.0, contract.POOL_CAPACITY: 0.0, contract.POOL_IN_FLIGHT: 0.0}
    seen = False
    draws = f"{contract.POOL_DRAWS}_total"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != draws and sample.name not in sums:
                continue
            if sample.labels.get("tenant") != tenant or sample.labels.get("module") != module:
                continue
            if not math.isfinite(sample.value):
                raise ExpositionError(f"{sample.name} is {sample.value}")
            seen = True
            if sample.name == draws:
                result = sample.labels.get("result")
                if result in ("hit", "miss"):
                    sums[result] += sample.value
            else:
                sums[sample.name] += sample.value
    if not seen:
        return None
    return PodMetrics(
        hits=sums["hit"],
        misses=sums["miss"],
        warm=sums[contract.POOL_WARM],
        capacity=sums[contract.POOL_CAPACITY],
        in_flight=sums[contract.POOL_IN_FLIGHT],
    )


def _ours(text: str, tenant: str, module: str) -> PodMetrics | None:
    return pool_metrics(text, tenant=tenant, module=module)


@dataclass(frozen=True, slots=True)
class ParseTiming:
    """Best-of-`repeat` seconds to read one tuple's pool metrics from the exposition."""

    tuples: int
    lines: int
    ours_seconds: float
    prometheus_client_seconds: float

    @property
    def ratio(self) -> float:
        """prometheus_client's time over ours."""
        return self.prometheus_client_seconds / self.ours_seconds


def bench_parse(tuples: int = 1000, repeat: int = 5) -> ParseTiming:
    """Time both parsers on the same exposition; both must read the same numbers."""
    text = runtime_exposition(tuples)
    tenant, module = "tenant-7", f"{7:012x}"
    if _ours(text, tenant, module) != pool_metrics_prometheus_client(text, tenant, module):
        raise AssertionError("the two parsers disagree")
    return ParseTiming(
        tuples=tuples,
        lines=text.count("\n"),
        ours_seconds=_best(_ours, text, tenant, module, repeat),
        prometheus_client_seconds=_best(pool_metrics_prometheus_client, text, tenant, module, repeat),
    )


def _best(parse: Parser, text: str, tenant: str, module: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        parse(text, tenant, module)
        times.append(time.perf_counter() - start)
    return min(times)

"""A fleet pod's `/stats` (or, from a runtime without it, `/metrics`) read per tuple, for the two-level decision
(pure)."""

from __future__ import annotations

import math
from collections.abc import Collection

from warmpool_contract import POOL_IN_FLIGHT as IN_FLIGHT
from warmpool_contract import POOL_WARM as WARM
from warmpool_contract import SHORT_HASH
from warmpool_operator.fleet.observations import PodScrape, TupleCounters, TupleKey
from warmpool_operator.scaling.exposition import DRAWS, ExpositionError, parse_samples
from warmpool_operator.scaling.tuple_stats import PodStats


def pod_scrape(pod: str, text: str, tuples: Collection[TupleKey]) -> PodScrape:
    """The counters of the wanted `tuples` (keyed by full sha256) in one pod's exposition.

    A tuple the pod does not report yet is left out (no data, not zero load). Raises
    ExpositionError on text that is not exposition or on a non-finite pool metric.
    """
    by_short = {(key.tenant, key.module[:SHORT_HASH]): key for key in tuples}
    sums: dict[TupleKey, list[float]] = {}
    for sample in parse_samples(text):
        if sample.name not in (DRAWS, WARM, IN_FLIGHT):
            continue
        key = by_short.get((sample.label("tenant") or "", sample.label("module") or ""))
        if key is None:
            continue
        if not math.isfinite(sample.value):
            raise ExpositionError(f"{sample.name} is {sample.value}")
        row = sums.setdefault(key, [0.0, 0.0, 0.0, 0.0])  # hits, misses, in flight, warm
        if sample.name == DRAWS:
            result = sample.label("result")
            if result == "hit":
                row[0] += sample.value
            elif result == "miss":
                row[1] += sample.value
        elif sample.name == IN_FLIGHT:
            row[2] += sample.value
        else:
            row[3] += sample.value
    return PodScrape(pod=pod, tuples={
        key: TupleCounters(hits=h, misses=m, in_flight=f, warm=w) for key, (h, m, f, w) in sums.items()
    })


def pod_scrape_from_stats(pod: str, stats: PodStats, tuples: Collection[TupleKey]) -> PodScrape:
    """`pod_scrape` over a checked stats document: the rows of the wanted `tuples`, keyed by full sha256.

    A tuple the pod does not report is left out (no data, not zero load); a row the fleet does not want
    is skipped.
    """
    wanted = tuples if isinstance(tuples, frozenset | set) else frozenset(tuples)
    out: dict[TupleKey, TupleCounters] = {}
    for row in stats.tuples:
        key = TupleKey(row.tenant, row.sha256)
        if key not in wanted:
            continue
        before = out.get(key)
        counters = TupleCounters(hits=row.hits, misses=row.misses, in_flight=row.in_flight, warm=row.warm)
        if before is not None:  # one tuple is one pool on a runtime; sum as /metrics would, should it repeat
            counters = TupleCounters(hits=before.hits + row.hits, misses=before.misses + row.misses,
                                     in_flight=before.in_flight + row.in_flight, warm=before.warm + row.warm)
        out[key] = counters
    return PodScrape(pod=pod, tuples=out)

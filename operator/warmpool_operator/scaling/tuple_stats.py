"""The runtime's compact `GET /stats` document → per-tuple pool counters (pure parsing, no I/O).

Read instead of `/metrics` when the runtime serves it: at 1,000 tuples it is ~0.1 MB against ~4.6 MB of
Prometheus text and is read in 1/40 of the CPU (`warmpool bench exposition`). Every field is checked once
here; a document that breaks any rule is refused whole with an error naming the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple, NoReturn

from warmpool_contract import (
    SHA256_HEX,
    SHORT_HASH,
    STATS_CAPACITY,
    STATS_HITS,
    STATS_IN_FLIGHT,
    STATS_MISSES,
    STATS_SHA256,
    STATS_TENANT,
    STATS_VERSION,
    STATS_WARM,
    TENANT_PATTERN,
)
from warmpool_operator.scaling.exposition import PodMetrics

MAX_STATS_BYTES = 8 << 20
"""~40,000 tuples at their longest; a larger body is not a stats document."""
_NEEDED = (STATS_TENANT, STATS_SHA256, STATS_HITS, STATS_MISSES, STATS_IN_FLIGHT, STATS_WARM, STATS_CAPACITY)
_MAX_FIELDS = 64
_MAX_COUNT = 2**63
"""No counter of a real runtime reaches this; a larger int would not even convert to a float."""


class StatsError(ValueError):
    """A body that is not a usable stats document."""


class TupleStats(NamedTuple):
    """One tuple's row: the counters of `tensor_wasm_pool_*` for that (tenant, module).

    A NamedTuple rather than a frozen dataclass: built in C, a thousand of them per pod per tick cost a
    third of what the dataclass did.
    """

    tenant: str
    sha256: str
    hits: float
    """Warm draws (a counter, reset when the process restarts)."""
    misses: float
    """Cold draws (a counter)."""
    in_flight: float
    warm: float
    """Idle warm instances now."""
    capacity: float
    """The tuple's warm floor."""


@dataclass(frozen=True, slots=True)
class PodStats:
    """One pod's stats document: a row per tuple it holds."""

    tuples: tuple[TupleStats, ...]


def _refuse(where: str, problem: str) -> NoReturn:
    raise StatsError(f"stats {where}: {problem}")


def _no_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity unless told otherwise.
    raise StatsError(f"stats body: {name} is not a number a counter can have")


def _count(value: Any, row: int, name: str) -> float:
    # The common case first and cheap: a non-negative int (a bool is an int too, hence the exact type).
    if type(value) is int and 0 <= value < _MAX_COUNT:
        return float(value)
    where = f"tuples[{row}].{name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        _refuse(where, f"expected a number, got {type(value).__name__}")
    if isinstance(value, int) and value >= _MAX_COUNT:
        _refuse(where, f"not a count below 2**63 ({value.bit_length()} bits)")
    if not math.isfinite(value) or value < 0:
        _refuse(where, f"{value!r} is not a count (finite and >= 0)")
    return float(value)


def parse_stats(body: bytes) -> PodStats:
    """Parse and check a whole document; raises StatsError naming the first field that is wrong."""
    if len(body) > MAX_STATS_BYTES:
        _refuse("body", f"{len(body)} bytes, more than {MAX_STATS_BYTES}")
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except StatsError:
        raise
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of more digits than Python reads
        _refuse("body", f"not JSON ({exc!s:.200})")
    except RecursionError:
        _refuse("body", "nested too deeply")
    if not isinstance(doc, dict):
        _refuse("body", "expected a JSON object")
    if doc.get("version") != STATS_VERSION or isinstance(doc.get("version"), bool):
        _refuse("version", f"expected {STATS_VERSION}, got {doc.get('version')!r:.40}")
    fields = doc.get("fields")
    if not isinstance(fields, list) or len(fields) > _MAX_FIELDS or not all(isinstance(f, str) for f in fields):
        _refuse("fields", f"expected a list of at most {_MAX_FIELDS} column names")
    missing = [name for name in _NEEDED if name not in fields]
    if missing:
        _refuse("fields", f"missing {', '.join(missing)}")
    pick = itemgetter(*(fields.index(name) for name in _NEEDED))
    width = len(fields)
    rows = doc.get("tuples")
    if not isinstance(rows, list):
        _refuse("tuples", "expected a list of rows")
    tenant_ok, sha256_ok = TENANT_PATTERN.match, SHA256_HEX.match
    out = []
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            _refuse(f"tuples[{i}]", f"expected a list of {width} values")
        tenant, sha256, hits, misses, in_flight, warm, capacity = pick(row)
        if type(tenant) is not str or not tenant_ok(tenant):
            _refuse(f"tuples[{i}].{STATS_TENANT}", "not a tenant name")
        if type(sha256) is not str or not sha256_ok(sha256):
            _refuse(f"tuples[{i}].{STATS_SHA256}", "not a lowercase hex sha256")
        out.append(TupleStats(tenant, sha256, _count(hits, i, STATS_HITS), _count(misses, i, STATS_MISSES),
                              _count(in_flight, i, STATS_IN_FLIGHT), _count(warm, i, STATS_WARM),
                              _count(capacity, i, STATS_CAPACITY)))
    return PodStats(tuples=tuple(out))


def pool_metrics_from_stats(stats: PodStats, *, tenant: str | None = None,
                            module: str | None = None) -> PodMetrics | None:
    """`exposition.pool_metrics` over a stats document: the rows matching tenant and module (None matches
    any; `module` is the short hash `/metrics` labels a module with) summed; None when no row matches."""
    rows = [
        t for t in stats.tuples
        if (tenant is None or t.tenant == tenant) and (module is None or t.sha256[:SHORT_HASH] == module)
    ]
    if not rows:
        return None
    return PodMetrics(
        hits=sum(t.hits for t in rows),
        misses=sum(t.misses for t in rows),
        warm=sum(t.warm for t in rows),
        capacity=sum(t.capacity for t in rows),
        in_flight=sum(t.in_flight for t in rows),
    )

"""Reading a runtime pod's compact `/stats` document: every field checked, hostile bodies refused by name."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from warmpool_contract import STATS_FIELDS
from warmpool_operator.fleet.observations import TupleCounters, TupleKey
from warmpool_operator.runtimefleet.scaling import pod_scrape_from_stats
from warmpool_operator.scaling.collector import scrape_from_stats
from warmpool_operator.scaling.exposition import PodMetrics
from warmpool_operator.scaling.tuple_stats import (
    MAX_STATS_BYTES,
    StatsError,
    TupleStats,
    parse_stats,
    pool_metrics_from_stats,
)

pytestmark = pytest.mark.unit

A = "3f5c" + "0" * 60
B = "99aa" + "1" * 60
ROWS: list[list[Any]] = [
    ["acme", A, 120, 3, 6, 10, 16],
    ["acme", B, 7, 1, 0, 4, 16],
    ["zeta", A, 50, 0, 2, 2, 16],
]


def doc(rows: list[list[Any]] | None = None, **over: Any) -> dict[str, Any]:
    return {"version": 1, "fields": list(STATS_FIELDS), "tuples": ROWS if rows is None else rows,
            "totals": {"tuples": 3}, **over}


def body(**over: Any) -> bytes:
    return json.dumps(doc(**over)).encode()


def test_every_row_is_parsed_in_field_order() -> None:
    stats = parse_stats(body())
    assert stats.tuples[0] == TupleStats(tenant="acme", sha256=A, hits=120.0, misses=3.0, in_flight=6.0, warm=10.0,
                                         capacity=16.0)
    assert [(t.tenant, t.sha256) for t in stats.tuples] == [("acme", A), ("acme", B), ("zeta", A)]


def test_columns_are_found_by_name_and_unknown_columns_are_ignored() -> None:
    fields = ["extra", *reversed(STATS_FIELDS)]
    rows = [["x", *reversed(row)] for row in ROWS]
    assert parse_stats(json.dumps(doc(rows, fields=fields)).encode()) == parse_stats(body())


def test_the_dedicated_autoscaler_sums_the_rows_a_selection_matches() -> None:
    stats = parse_stats(body())
    assert pool_metrics_from_stats(stats, tenant="acme", module=A[:12]) == PodMetrics(120, 3, 10, 16, 6)
    assert pool_metrics_from_stats(stats, tenant="acme") == PodMetrics(127, 4, 14, 32, 6)
    assert pool_metrics_from_stats(stats, tenant="nobody") is None
    assert scrape_from_stats("p", stats, tenant="nobody").error == "no pool metrics for the tuple"
    assert scrape_from_stats("p", stats, tenant="zeta").metrics == PodMetrics(50, 0, 2, 16, 2)


def test_a_fleet_reads_only_the_tuples_it_wants_by_full_digest() -> None:
    stats = parse_stats(body())
    wanted = frozenset({TupleKey("acme", A), TupleKey("zeta", A), TupleKey("acme", "f" * 64)})
    scrape = pod_scrape_from_stats("p", stats, wanted)
    assert scrape.tuples == {
        TupleKey("acme", A): TupleCounters(hits=120, misses=3, in_flight=6, warm=10),
        TupleKey("zeta", A): TupleCounters(hits=50, misses=0, in_flight=2, warm=2),
    }


def test_an_empty_runtime_has_no_rows() -> None:
    assert parse_stats(body(rows=[])).tuples == ()


@pytest.mark.parametrize(("raw", "named"), [
    (b"{not json", "stats body: not JSON"),
    (b"\xff\xfe", "stats body: not JSON"),
    (b"[]", "stats body: expected a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "stats body"),
    (json.dumps(doc(version=2)).encode(), "stats version: expected 1, got 2"),
    (json.dumps(doc(version=True)).encode(), "stats version"),
    (json.dumps({"fields": list(STATS_FIELDS), "tuples": []}).encode(), "stats version"),
    (json.dumps(doc(fields="tenant")).encode(), "stats fields"),
    (json.dumps(doc(fields=["x"] * 65)).encode(), "stats fields"),
    (json.dumps(doc(fields=["tenant", "sha256"])).encode(), "stats fields: missing hits, misses, inFlight, warm"),
    (json.dumps(doc(tuples={"a": 1})).encode(), "stats tuples: expected a list"),
    (json.dumps(doc([["acme", A, 1, 2]])).encode(), "stats tuples[0]: expected a list of 7 values"),
    (json.dumps(doc([*ROWS, "row"])).encode(), "stats tuples[3]: expected a list of 7 values"),
    (json.dumps(doc([["Not A Tenant", A, 1, 0, 0, 0, 1]])).encode(), "stats tuples[0].tenant"),
    (json.dumps(doc([["acme", A[:12], 1, 0, 0, 0, 1]])).encode(), "stats tuples[0].sha256"),
    (json.dumps(doc([["acme", A.upper(), 1, 0, 0, 0, 1]])).encode(), "stats tuples[0].sha256"),
    (json.dumps(doc([["acme", A, -1, 0, 0, 0, 1]])).encode(), "stats tuples[0].hits: -1 is not a count"),
    (json.dumps(doc([["acme", A, 1, "2", 0, 0, 1]])).encode(), "stats tuples[0].misses: expected a number, got str"),
    (json.dumps(doc([["acme", A, 1, 0, True, 0, 1]])).encode(), "stats tuples[0].inFlight: expected a number"),
    (json.dumps(doc([["acme", A, 1, 0, 0, None, 1]])).encode(), "stats tuples[0].warm: expected a number"),
    (json.dumps(doc([["acme", A, 1, 0, 0, 0, 1]])).replace("1]]", "1e400]]").encode(),
     "stats tuples[0].capacity: inf is not a count"),
    (json.dumps(doc([["acme", A, 10**400, 0, 0, 0, 1]])).encode(), "stats tuples[0].hits: not a count below 2**63"),
    (json.dumps(doc([["acme", A, 2**63, 0, 0, 0, 1]])).encode(), "stats tuples[0].hits: not a count below 2**63"),
    (json.dumps(doc([["acme", A, 1, 0, 0, 0, 1]])).replace(", 1]]", ", 1" + "0" * 5000 + "]]").encode(),
     "stats body: not JSON"),
    (json.dumps(doc([["acme", A, float("nan"), 0, 0, 0, 1]])).encode(), "stats body: NaN is not a number"),
    (json.dumps(doc([["acme", A, 1, float("-inf"), 0, 0, 1]])).encode(), "stats body: -Infinity is not a number"),
])
def test_a_broken_document_is_refused_naming_the_field(raw: bytes, named: str) -> None:
    with pytest.raises(StatsError, match="^" + re.escape(named)):
        parse_stats(raw)


def test_an_oversize_body_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(StatsError, match=f"stats body: {MAX_STATS_BYTES + 1} bytes, more than {MAX_STATS_BYTES}"):
        parse_stats(b" " * (MAX_STATS_BYTES + 1))

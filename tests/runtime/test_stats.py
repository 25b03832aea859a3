"""`GET /stats` of a real runtime process serving many tuples of C guests: the same pool counters `/metrics`
shows for each tuple, in a body a fraction of its size, read back by the operator's parsers alike."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.live import SETTINGS, Client, serve, until
from tests.runtime.wasm import build_c, tuple_entry
from warmpool_contract import (
    POOL_CAPACITY,
    POOL_DRAWS,
    POOL_IN_FLIGHT,
    POOL_WARM,
    SHORT_HASH,
    STATS_FIELDS,
    STATS_PATH,
    STATS_VERSION,
)
from warmpool_operator.fleet.observations import TupleKey
from warmpool_operator.runtimefleet.scaling import pod_scrape, pod_scrape_from_stats
from warmpool_operator.scaling.exposition import pool_metrics
from warmpool_operator.scaling.tuple_stats import parse_stats, pool_metrics_from_stats

pytestmark = pytest.mark.component

GUEST_C = r"""
#include <time.h>
__attribute__((export_name("ident"))) int ident(void) { return IDENT; }
__attribute__((export_name("nap"))) int nap(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, 0);
  return IDENT;
}
"""
TENANTS = [f"t{i:02d}" for i in range(12)]
MODULES = 3
BYTES_PER_TUPLE = 256
"""The documented bound of a row (a 63-character tenant, a sha256 and five 20-digit counts fit)."""


def rows_by_tuple(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row[0], row[1]): dict(zip(doc["fields"], row, strict=True)) for row in doc["tuples"]}


def exposition_values(text: str) -> dict[tuple[str, str, str], float]:
    """(series, tenant, module label) -> value of the pool families, read with prometheus_client's parser."""
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if family.name == POOL_DRAWS and sample.name == f"{POOL_DRAWS}_total":
                out[(labels["result"], labels["tenant"], labels["module"])] = sample.value
            elif family.name in (POOL_WARM, POOL_CAPACITY, POOL_IN_FLIGHT):
                out[(family.name, labels["tenant"], labels["module"])] = sample.value
    return out


def consistent_reading(client: Client) -> tuple[bytes, str]:
    """A /stats body and a /metrics text taken while no counter moved (the /stats before and after agree)."""
    def read() -> tuple[bytes, str] | None:
        before = client.request("GET", STATS_PATH)[2]
        text = client.request("GET", "/metrics")[2].decode()
        after = client.request("GET", STATS_PATH)[2]
        return (after, text) if before == after else None

    reading: tuple[bytes, str] = until(read, "two /stats in a row around a /metrics agree")
    return reading


def test_stats_show_each_tuples_pool_counters_as_metrics_does(tmp_path: Path) -> None:
    modules = [build_c(tmp_path, GUEST_C.replace("IDENT", str(k + 1)), f"guest{k}") for k in range(MODULES)]
    tuples = [tuple_entry(tenant, path, sha, 1 + (i + k) % 2)
              for i, tenant in enumerate(TENANTS) for k, (path, sha) in enumerate(modules)]
    config = tmp_path / "etc" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"maxTotalWarm": 256, "limits": {"timeoutMs": 10_000}, "tuples": tuples,
                                  "settings": {**SETTINGS, "poolSlots": 128}}))
    with serve(config) as (_, client):
        until(lambda: client.readyz()[0] == 200, "every tuple is warm")
        calls: dict[tuple[str, str], int] = {}
        for i, tenant in enumerate(TENANTS):
            for k, (_, sha) in enumerate(modules):
                calls[(tenant, sha)] = (i + k) % 4
                for _ in range(calls[(tenant, sha)]):
                    assert client.call(tenant, sha, "ident", [])[:3:2] == (200, {"results": [k + 1]})
        napper, nap_sha = TENANTS[0], modules[1][1]
        answered: list[Any] = []
        caller = threading.Thread(target=lambda: answered.append(client.call(napper, nap_sha, "nap", [1500])))
        caller.start()
        try:
            until(lambda: json.loads(client.request("GET", STATS_PATH)[2])["totals"]["inFlight"] == 1,
                  "the nap is in flight")
            body, text = consistent_reading(client)
        finally:
            caller.join(60)
        calls[(napper, nap_sha)] += 1

        doc = json.loads(body)
        assert (doc["version"], tuple(doc["fields"])) == (STATS_VERSION, STATS_FIELDS)
        rows = rows_by_tuple(doc)
        assert set(rows) == set(calls)
        exposed = exposition_values(text)
        for (tenant, sha), row in rows.items():
            label = sha[:SHORT_HASH]
            assert row["hits"] == exposed[("hit", tenant, label)]
            assert row["misses"] == exposed[("miss", tenant, label)]
            assert row["inFlight"] == exposed[(POOL_IN_FLIGHT, tenant, label)]
            assert row["warm"] == exposed[(POOL_WARM, tenant, label)]
            assert row["capacity"] == exposed[(POOL_CAPACITY, tenant, label)]
        # Every call drew once, warm or cold, whether it has returned yet or not.
        assert {key: row["hits"] + row["misses"] for key, row in rows.items()} == calls
        assert sum(row["inFlight"] for row in rows.values()) in (0, 1)
        totals = doc["totals"]
        assert totals["tuples"] == len(tuples)
        for name in ("hits", "misses", "inFlight", "warm", "capacity"):
            assert totals[name] == sum(row[name] for row in rows.values())
        assert totals["saturated"] is False
        assert len(body) <= BYTES_PER_TUPLE * (len(tuples) + 1)
        assert len(body) * 10 < len(text.encode())

        # The operator reads the same numbers through either body.
        stats = parse_stats(body)
        for tenant, sha in rows:
            assert pool_metrics_from_stats(stats, tenant=tenant, module=sha[:SHORT_HASH]) == pool_metrics(
                text, tenant=tenant, module=sha[:SHORT_HASH])
        wanted = frozenset(TupleKey(tenant, sha) for tenant, sha in rows)
        assert pod_scrape_from_stats("p", stats, wanted) == pod_scrape("p", text, wanted)
    assert answered
    assert answered[0][0] == 200


def test_stats_answer_get_only_and_list_no_tuple_before_any_is_configured(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"tuples": [], "settings": SETTINGS}))
    with serve(config) as (_, client):
        status, headers, body = client.request("GET", STATS_PATH + "?ignored=1")
        assert (status, headers["content-type"]) == (200, "application/json")
        doc = json.loads(body)
        assert doc["tuples"] == []
        assert doc["totals"] == {"tuples": 0, "hits": 0, "misses": 0, "inFlight": 0, "warm": 0, "capacity": 0,
                                 "saturated": False}
        assert client.request("POST", STATS_PATH, b"{}")[0] == 405
        assert client.request("GET", STATS_PATH + "/x")[0] == 404

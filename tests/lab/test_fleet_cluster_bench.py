"""The pure parts of `warmpool bench fleet-cluster`: generated modules, manifests, and the figures' arithmetic."""

from __future__ import annotations

import hashlib

import pytest
import wasmtime

from warmpool.cli import main
from warmpool_lab.fleet_cluster_bench import (
    EXPORT,
    FLEET,
    api_requests,
    distribution,
    fleet_manifest,
    generate_modules,
    operator_share,
    per_minute,
    pool_manifest,
    proc_rss_bytes,
    proc_ticks,
    split_reads_writes,
)
from warmpool_operator.runtimefleet.spec import parse_fleet
from warmpool_operator.spec import parse_warmpool

pytestmark = pytest.mark.unit


def test_generated_modules_are_distinct_valid_and_hashed() -> None:
    modules = generate_modules(50, first=7)
    assert [m.index for m in modules] == list(range(7, 57))
    assert len({m.sha256 for m in modules}) == len({m.wasm for m in modules}) == 50
    engine = wasmtime.Engine()
    for module in modules:
        assert module.sha256 == hashlib.sha256(module.wasm).hexdigest()
        store = wasmtime.Store(engine)
        instance = wasmtime.Instance(store, wasmtime.Module(engine, module.wasm), [])
        ident = instance.exports(store)[EXPORT]
        assert isinstance(ident, wasmtime.Func)
        assert ident(store) == module.index


def test_generate_modules_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="count"):
        generate_modules(-1)
    assert generate_modules(0) == []


def test_manifests_are_a_valid_fleet_and_members_with_their_own_url_and_sha() -> None:
    (module,) = generate_modules(1, first=42)
    fleet = fleet_manifest("ns", pods=3, tuples=1500)
    assert fleet["kind"] == "RuntimeFleet"
    assert fleet["spec"]["replicas"] == {"min": 3, "max": 3}
    assert fleet["spec"]["maxTotalWarm"] == 3000
    assert parse_fleet({**fleet, "metadata": {**fleet["metadata"], "uid": "u"}}).spec.min_replicas == 3
    pool = pool_manifest("ns", module, "http://127.0.0.1:9")
    assert pool["metadata"] == {"name": "p00042", "namespace": "ns"}
    spec = pool["spec"]
    assert spec["tenant"] == "t00042"
    assert spec["module"] == {"sha256": module.sha256, "source": {"url": "http://127.0.0.1:9/m/42.wasm"}}
    assert spec["fleetRef"] == {"name": FLEET, "namespace": "ns"}
    assert spec["warmInstancesPerTuple"] == 1
    assert parse_warmpool({**pool, "metadata": {**pool["metadata"], "uid": "u"}}).spec.module.sha256 == module.sha256


def test_api_request_rates_by_verb_and_resource_split_into_reads_and_writes() -> None:
    def exposition(get: float, patch: float) -> str:
        return (
            "# HELP apiserver_request_total Requests.\n# TYPE apiserver_request_total counter\n"
            f'apiserver_request_total{{verb="GET",resource="pods",subresource="",code="200"}} {get}\n'
            f'apiserver_request_total{{verb="GET",resource="pods",subresource="",code="404"}} {get}\n'
            f'apiserver_request_total{{verb="PATCH",resource="warmpools",subresource="status",code="200"}} {patch}\n'
        )

    before, after = api_requests(exposition(10, 5)), api_requests(exposition(40, 5))
    assert before == {("GET", "pods"): 20.0, ("PATCH", "warmpools/status"): 5.0}
    rates = per_minute(before, after, seconds=30.0)
    assert rates == {"GET pods": 120.0}
    assert split_reads_writes({"GET pods": 120.0, "PATCH warmpools/status": 6.0, "WATCH pods": 1.0}) == (121.0, 6.0)
    with pytest.raises(ValueError, match="seconds"):
        per_minute(before, after, seconds=0)


def test_distribution_and_proc_readings() -> None:
    assert distribution([3.0, 1.0, 2.0, 10.0]) == {"count": 4, "min": 1.0, "median": 2.5, "p90": 10.0, "max": 10.0}
    assert distribution([])["median"] is None
    stat = "123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 110 25 0 0"
    assert proc_ticks(stat) == 135
    assert proc_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n") == 2 * 1024 * 1024
    assert proc_rss_bytes("Name:\tx\n") == 0


@pytest.mark.parametrize("argv", [["--pools", "0"], ["--churn", "5", "--pools", "4"], ["--steady-seconds", "0"]])
def test_the_command_refuses_values_that_cannot_work_before_starting_anything(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "fleet-cluster", *argv]) == 2
    assert "warmpool bench fleet-cluster:" in capsys.readouterr().err


def test_the_operators_share_counts_only_the_resources_it_alone_requests() -> None:
    rates = {"GET warmpools": 30.0, "PATCH warmpools/status": 2.0, "APPLY configmaps": 1.0,
             "PUT deployments/status": 9.0, "LIST pods": 50.0, "PUT leases": 40.0, "WATCH secrets": 0.5}
    assert operator_share(rates) == (30.5, 3.0)

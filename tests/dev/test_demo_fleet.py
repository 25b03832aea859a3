"""The demo's fleet scene: distinct module variants per tenant, served on loopback, and the load shapes."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest
import wasmtime

from warmpool.demo.cluster_demo import demo_manifests, module_bytes
from warmpool.demo.fleet_scene import (
    BUSY_SECONDS,
    FLEET,
    SCENE_SECONDS,
    TENANTS,
    fleet_manifests,
    variant,
)
from warmpool.demo.load import rate_at, total_seconds
from warmpool.demo.loopback import module_server

LIMITS = {"memoryBytes": 16777216, "timeoutMs": 2000}


@pytest.mark.unit
def test_each_variant_is_the_same_code_with_another_sha256() -> None:
    wasm, _ = module_bytes(demo_manifests())
    engine = wasmtime.Engine()
    exports = {e.name for e in wasmtime.Module(engine, wasm).exports}
    digests = set()
    for index in range(len(TENANTS)):
        data = variant(wasm, index)
        assert {e.name for e in wasmtime.Module(engine, data).exports} == exports
        digests.add(hashlib.sha256(data).hexdigest())
    assert len(digests) == len(TENANTS)
    assert hashlib.sha256(wasm).hexdigest() not in digests


@pytest.mark.unit
def test_every_member_names_the_fleet_and_pins_its_own_variant() -> None:
    wasm, _ = module_bytes(demo_manifests())
    documents, files, shas = fleet_manifests("http://127.0.0.1:1", wasm, LIMITS)
    fleet, *pools = documents
    assert fleet["kind"] == "RuntimeFleet"
    assert fleet["spec"]["autoscaling"]["enabled"] is True
    assert [p["spec"]["tenant"] for p in pools] == [t.name for t in TENANTS]
    for pool in pools:
        spec = pool["spec"]
        assert spec["fleetRef"] == {"name": FLEET}
        name = spec["module"]["source"]["url"].rsplit("/", 1)[1]
        assert hashlib.sha256(files[name]).hexdigest() == spec["module"]["sha256"] == shas[spec["tenant"]]


@pytest.mark.unit
def test_the_loads_have_different_shapes_over_the_whole_scene() -> None:
    assert {total_seconds(t.phases) for t in TENANTS} == {SCENE_SECONDS}
    shapes = {t.name: [rate_at(t.phases, x + 0.5) for x in range(int(SCENE_SECONDS))] for t in TENANTS}
    assert set(shapes["steady-a"][: int(BUSY_SECONDS)]) == {20}
    assert max(shapes["bursty-a"]) == 40
    assert min(shapes["bursty-a"]) == 1
    # The timer fires every 30 s for 5 s.
    assert sum(r == 50 for r in shapes["timer-a"]) == 20
    assert all(min(rates) >= 1 for rates in shapes.values())
    # A quiet tail for every tenant: the fleet can shed pods before the scene ends.
    assert {max(rates[int(BUSY_SECONDS):]) for rates in shapes.values()} == {1}


@pytest.mark.component
def test_the_variants_are_served_over_loopback() -> None:
    wasm, _ = module_bytes(demo_manifests())
    files: dict[str, bytes] = {}
    with module_server(files) as url:
        documents, variants, _ = fleet_manifests(url, wasm, LIMITS)
        files.update(variants)
        for pool in documents[1:]:
            module = pool["spec"]["module"]
            with urllib.request.urlopen(module["source"]["url"], timeout=10) as response:
                assert hashlib.sha256(response.read()).hexdigest() == module["sha256"]

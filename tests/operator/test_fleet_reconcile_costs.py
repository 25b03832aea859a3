"""What keeps a fleet's reconciliation cheap at many members, checked to change no result: the parsed-spec
cache, the indexed tuple standings, the remembered config text (pure)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from warmpool_operator.defaults import ClusterDefaults
from warmpool_operator.runtimefleet.members import Member
from warmpool_operator.runtimefleet.render import render_config_text, runtime_config
from warmpool_operator.runtimefleet.spec import parse_fleet
from warmpool_operator.runtimefleet.specs import ParsedSpecs, parse_members
from warmpool_operator.runtimefleet.tuples import FAILED, WARM, Reports, Standing, TupleReport

pytestmark = pytest.mark.unit

SHA = "ab" * 32
DEFAULTS = ClusterDefaults()


def pool(name: str, uid: str, generation: int = 1, warm: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool",
        "metadata": {"name": name, "namespace": "pools", "uid": uid, "generation": generation, **extra},
        "spec": {"tenant": name, "module": {"sha256": SHA, "source": {"url": "http://127.0.0.1:9/m.wasm"}},
                 "warmInstancesPerTuple": warm, "fleetRef": {"name": "shared"}},
        "status": {"observedGeneration": generation},
    }


def test_a_spec_is_parsed_again_only_when_its_generation_changes() -> None:
    specs = ParsedSpecs()
    first = specs.parse(pool("a", "u1", 1, warm=2), DEFAULTS)
    # Same uid and generation: the parsed spec is reused, status and metadata are read fresh.
    again = specs.parse({**pool("a", "u1", 1, warm=9), "status": {"observedGeneration": 7}}, DEFAULTS)
    assert again.spec is first.spec
    assert again.spec.warm_instances_per_tuple == 2
    assert again.status["observedGeneration"] == 7
    # A new generation replaces the entry.
    newer = specs.parse(pool("a", "u1", 2, warm=5), DEFAULTS)
    assert newer.spec.warm_instances_per_tuple == 5
    assert newer.meta.generation == 2
    assert len(specs) == 1


def test_the_cache_keeps_only_the_members_read_last() -> None:
    specs = ParsedSpecs()
    parsed = parse_members([pool("a", "u1"), pool("b", "u2"), pool("c", "u3")], DEFAULTS, specs)
    assert [p.meta.name for p in parsed] == ["a", "b", "c"]
    assert len(specs) == 3
    specs.retain(p.meta.uid for p in parse_members([pool("a", "u1"), pool("c", "u3")], DEFAULTS, specs))
    assert len(specs) == 2  # b was deleted: its entry is gone
    # A pool recreated under the same name has another uid: parsed afresh.
    recreated = specs.parse(pool("b", "u9", 1, warm=3), DEFAULTS)
    assert recreated.spec.warm_instances_per_tuple == 3
    assert len(specs) == 3


def test_pools_being_deleted_or_invalid_are_left_out_and_not_cached() -> None:
    specs = ParsedSpecs()
    invalid = pool("bad", "u2")
    invalid["spec"]["warmInstancesPerTuple"] = "many"
    deleting = pool("gone", "u3", deletionTimestamp="2026-01-01T00:00:00Z")
    parsed = parse_members([pool("a", "u1"), invalid, deleting], DEFAULTS, specs)
    assert [p.meta.name for p in parsed] == ["a"]
    assert len(specs) == 1


def report(tenant: str, module: str, state: str = "warm", warm: int = 1, reason: str = "") -> TupleReport:
    return TupleReport(tenant=tenant, module=module, state=state, warm=warm, reason=reason)


def scan(tenant: str, sha256: str, reports: dict[str, tuple[TupleReport, ...]]) -> Standing:
    """The reference: each pod's first listed tuple that is for this member, found by a scan."""
    warm_pods = warm_instances = 0
    failure = None
    for pod, tuples in sorted(reports.items()):
        found = next((t for t in tuples if t.is_for(tenant, sha256)), None)
        if found is None:
            continue
        warm_instances += found.warm
        warm_pods += found.state == WARM
        if found.state == FAILED and failure is None:
            failure = (pod, found.reason)
    return Standing(pods=len(reports), warm_pods=warm_pods, warm_instances=warm_instances, failure=failure)


def test_indexed_standings_match_a_scan_of_every_pod() -> None:
    other = "cd" * 32
    reports = {
        "p2": (report("acme", SHA[:12], "failed", 0, "trap"), report("acme", SHA, "warm", 3)),
        "p1": (report("acme", SHA, "warm", 2), report("beta", other, "loading", 0)),
        "p3": (report("beta", other[:12], "warm", 1), report("acme", SHA[:4], "failed", 0, "short")),
        "p4": (),
    }
    indexed = Reports(reports)
    for tenant, sha in (("acme", SHA), ("beta", other), ("gamma", SHA), ("acme", other)):
        assert indexed.standing(tenant, sha) == scan(tenant, sha, reports)
    acme = indexed.standing("acme", SHA)
    # p2 lists the short prefix first: that entry (failed) is the one read there, as a scan would.
    assert (acme.pods, acme.warm_pods, acme.warm_instances, acme.failure) == (4, 1, 2, ("p2", "trap"))
    beta = indexed.standing("beta", other)
    assert (beta.warm_pods, beta.warm_instances, beta.failure) == (1, 1, None)


def test_the_config_text_is_what_the_pure_python_emitter_writes() -> None:
    fleet = parse_fleet({"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet",
                         "metadata": {"name": "shared", "namespace": "pools", "uid": "f", "generation": 1},
                         "spec": {}})
    bodies = [pool(f"t{i}", f"u{i}", warm=i % 4) for i in range(5)]
    bodies[1]["spec"]["module"]["source"] = {"url": "https://host:8443/a/m.wasm?x=1&y=2:3#z"}
    bodies[2]["spec"]["module"]["source"] = {"oci": {"repository": "127.0.0.1:5000/acme/m", "reference": "v1",
                                                     "insecure": True}}
    bodies[3]["spec"]["limits"] = {"memoryBytes": 1 << 20, "timeoutMs": 250}
    members = [Member(pool=p, token_digests=("0" * 64,) if p.meta.name == "t4" else None)
               for p in parse_members(bodies, DEFAULTS)]
    assert len(members) == 5
    for warm in (None, {("t1", SHA): 7}):
        expected = yaml.safe_dump(runtime_config(fleet, members, warm), sort_keys=True, default_flow_style=False)
        assert render_config_text(fleet, members, warm) == expected
        assert render_config_text(fleet, members, warm) == expected  # remembered: the same text again
    assert render_config_text(fleet, [], None) == yaml.safe_dump(runtime_config(fleet, [], None), sort_keys=True,
                                                                 default_flow_style=False)

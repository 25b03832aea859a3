"""RuntimeFleet's pure core: parsing, namespace policy, admission, rendering, tuple states, member status."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmpool_contract import TOKENS_DIR, WATCH_CONFIG_FLAG
from warmpool_operator.health import Progress
from warmpool_operator.render import RenderOptions
from warmpool_operator.runtimefleet.members import (
    AUTH_SECRET_MISSING,
    NOT_ADMITTED,
    SOURCE_NOT_SHAREABLE,
    TENANT_CONFLICT,
    TOKENS_REQUIRED,
    TUPLE_CONFLICT,
    admit,
)
from warmpool_operator.runtimefleet.policy import describe_selector, namespace_refusal, selector_matches
from warmpool_operator.runtimefleet.reconcile import names_fleet, token_digests
from warmpool_operator.runtimefleet.render import (
    CONFIG_PATH,
    render_children,
    runtime_config,
    token_file,
)
from warmpool_operator.runtimefleet.spec import From, LabelSelector, Requirement, parse_fleet, parse_fleet_spec
from warmpool_operator.runtimefleet.status import member_status, stalled_member_status
from warmpool_operator.runtimefleet.tuples import FAILED, LOADING, WARM, parse_tuple_states, standing
from warmpool_operator.spec import SpecError, WarmPool, parse_warmpool

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHA_A = "a" * 64
SHA_B = "b" * 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPTIONS = RenderOptions(default_image="warmpool:test")


def fleet_body(spec: dict[str, Any] | None = None, *, namespace: str = "shared", name: str = "prod") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": "fleet-uid", "generation": 1},
            "spec": spec or {}}


def pool(name: str, namespace: str, *, tenant: str = "acme", sha: str = SHA_A,
         source: dict[str, Any] | None = None, auth: str | None = None, warm: int = 4) -> WarmPool:
    spec: dict[str, Any] = {
        "tenant": tenant,
        "module": {"sha256": sha, "source": source or {"url": "http://127.0.0.1:9/m.wasm"}},
        "warmInstancesPerTuple": warm,
        "fleetRef": {"name": "prod", "namespace": "shared"},
    }
    if auth is not None:
        spec["auth"] = {"secretRef": {"name": auth}}
    return parse_warmpool({"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"}, "spec": spec})


# Parsing -------------------------------------------------------------------------------------------


def test_an_empty_fleet_spec_gets_the_crd_defaults() -> None:
    spec = parse_fleet_spec({})
    assert (spec.min_replicas, spec.max_replicas, spec.max_total_warm) == (2, 10, 1024)
    assert spec.allowed.source is From.SAME
    assert spec.allowed.selector is None
    assert spec.require_tokens is False
    assert spec.autoscaling.enabled is False
    assert spec.memory_budget_bytes is None


def test_a_full_fleet_spec_is_parsed() -> None:
    spec = parse_fleet_spec({
        "runtime": {"image": "r:1", "podLabels": {"team": "platform"}},
        "maxTotalWarm": 512,
        "memoryBudget": "2Gi",
        "replicas": {"min": 3, "max": 7},
        "autoscaling": {"enabled": True, "targetMissRatio": 0.02, "tickSeconds": 1, "scaleDownDelaySeconds": 30},
        "allowedPools": {"namespaces": {"from": "Selector", "selector": {
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}}},
        "requireTokens": True,
    })
    assert spec.runtime.image == "r:1"
    assert dict(spec.runtime.pod_labels) == {"team": "platform"}
    assert (spec.memory_budget_bytes, spec.min_replicas, spec.max_replicas) == (2 << 30, 3, 7)
    assert spec.allowed.selector == LabelSelector({"team": "a"}, (Requirement("env", "In", ("prod", "stage")),))
    sizing = spec.sizing()
    assert (sizing.min_pods, sizing.max_pods, sizing.target_miss_ratio, sizing.pod_memory_mb) == (3, 7, 0.02, 2048)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": {"min": 5, "max": 2}}, "spec.replicas"),
        ({"replicas": {"max": 0}}, "spec.replicas.max"),
        ({"memoryBudget": "lots"}, "spec.memoryBudget"),
        ({"memoryBudget": "0"}, "spec.memoryBudget"),
        ({"allowedPools": {"namespaces": {"from": "Selector"}}}, "spec.allowedPools.namespaces.selector"),
        ({"allowedPools": {"namespaces": {"from": "All", "selector": {"matchLabels": {"a": "b"}}}}},
         "spec.allowedPools.namespaces.selector"),
        ({"allowedPools": {"namespaces": {"from": "Others"}}}, "spec.allowedPools.namespaces.from"),
        ({"allowedPools": {"namespaces": {"from": "Selector", "selector": {
            "matchExpressions": [{"key": "a", "operator": "In"}]}}}},
         "spec.allowedPools.namespaces.selector.matchExpressions[0].values"),
        ({"autoscaling": {"targetMissRatio": 1.5}}, "spec.autoscaling.targetMissRatio"),
        ({"requireTokens": "yes"}, "spec.requireTokens"),
        ({"runtime": {"podLabels": {"app.kubernetes.io/name": "x"}}}, "spec.runtime.podLabels"),
        ({"surprise": 1}, "spec"),
    ],
)
def test_invalid_fleet_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_fleet_spec(spec)
    assert caught.value.field == field


def test_a_fleet_name_must_leave_room_for_its_children() -> None:
    with pytest.raises(SpecError) as caught:
        parse_fleet(fleet_body(name="f" * 56))
    assert caught.value.field == "metadata.name"


def test_fleet_ref_and_auth_parse_into_the_pool_spec() -> None:
    member = pool("a", "team-a", auth="callers")
    assert member.spec.fleet_ref is not None
    assert member.spec.fleet_ref.resolve("team-a") == ("shared", "prod")
    assert member.spec.auth is not None
    assert member.spec.auth.secret_name == "callers"
    local = parse_warmpool({"metadata": {"name": "a", "namespace": "n", "uid": "u"}, "spec": {
        "tenant": "t", "module": {"sha256": SHA_A, "source": {"path": "/m.wasm"}}, "fleetRef": {"name": "f"}}})
    assert local.spec.fleet_ref is not None
    assert local.spec.fleet_ref.resolve("n") == ("n", "f")
    with pytest.raises(SpecError) as caught:
        parse_warmpool({"metadata": {"name": "a", "namespace": "n", "uid": "u"}, "spec": {
            "tenant": "t", "module": {"sha256": SHA_A, "source": {"path": "/m.wasm"}},
            "fleetRef": {"name": "Bad_Name"}}})
    assert caught.value.field == "spec.fleetRef.name"
    with pytest.raises(SpecError) as caught:
        parse_warmpool({"metadata": {"name": "a", "namespace": "n", "uid": "u"}, "spec": {
            "tenant": "t", "module": {"sha256": SHA_A, "source": {"path": "/m.wasm"}}, "auth": {"secretRef": {}}}})
    assert caught.value.field == "spec.auth.secretRef.name"


# Namespace policy ----------------------------------------------------------------------------------


def test_label_selectors_follow_kubernetes_semantics() -> None:
    selector = LabelSelector({"team": "a"}, (Requirement("env", "NotIn", ("dev",)), Requirement("tier", "Exists")))
    assert selector_matches(selector, {"team": "a", "tier": "1"})
    assert selector_matches(selector, {"team": "a", "tier": "1", "env": "prod"})
    assert not selector_matches(selector, {"team": "a", "tier": "1", "env": "dev"})
    assert not selector_matches(selector, {"team": "b", "tier": "1"})
    assert not selector_matches(selector, {"team": "a"})
    assert not selector_matches(LabelSelector({}, (Requirement("x", "DoesNotExist"),)), {"x": ""})
    assert describe_selector(selector) == "{team: a, env notin (dev), tier exists}"


def test_same_admits_only_the_fleets_namespace() -> None:
    fleet = parse_fleet(fleet_body())
    assert namespace_refusal(fleet, "shared", None) is None
    assert namespace_refusal(fleet, "team-b", {}) == (
        "RuntimeFleet shared/prod admits WarmPools from its own namespace only "
        "(allowedPools.namespaces.from: Same); namespace team-b is another")
    everyone = parse_fleet(fleet_body({"allowedPools": {"namespaces": {"from": "All"}}}))
    assert namespace_refusal(everyone, "team-b", None) is None


def test_selector_refusal_names_the_policy_and_the_namespace() -> None:
    fleet = parse_fleet(fleet_body({"allowedPools": {"namespaces": {"from": "Selector",
                                                                    "selector": {"matchLabels": {"team": "a"}}}}}))
    assert namespace_refusal(fleet, "team-a", {"team": "a"}) is None
    assert namespace_refusal(fleet, "b", {"team": "b"}) == (
        "RuntimeFleet shared/prod admits WarmPools from namespaces matching {team: a}; namespace b does not match")
    assert "could not be read" in str(namespace_refusal(fleet, "gone", None))


# Admission -----------------------------------------------------------------------------------------


def test_admission_refuses_each_member_naming_why() -> None:
    fleet = parse_fleet(fleet_body({"allowedPools": {"namespaces": {"from": "All"}}}))
    candidates = [
        pool("first", "team-a"),
        pool("same-tuple", "team-a"),
        pool("other-ns-tenant", "team-b"),
        pool("from-cm", "team-a", tenant="cm", source={"configMapRef": {"name": "m", "key": "m.wasm"}}),
        pool("no-secret", "team-a", tenant="locked", auth="missing"),
        pool("empty-secret", "team-a", tenant="locked2", auth="empty"),
        pool("second-module", "team-a", sha=SHA_B),
    ]
    admission = admit(fleet, candidates, namespace_labels={},
                      digests={("team-a", "missing"): None, ("team-a", "empty"): ()})
    assert [m.pool.meta.name for m in admission.members] == ["first", "second-module"]
    reasons = {key[1]: problem.reason for key, problem in admission.refused.items()}
    assert reasons == {"same-tuple": TUPLE_CONFLICT, "other-ns-tenant": TENANT_CONFLICT,
                       "from-cm": SOURCE_NOT_SHAREABLE, "no-secret": AUTH_SECRET_MISSING,
                       "empty-secret": AUTH_SECRET_MISSING}
    message = admission.refused[("team-a", "from-cm")].message
    assert "cannot be mounted into pods of another namespace" in message
    assert "url or oci" in message
    assert [p.meta.name for p in admission.refused_pools] == list(reasons)


def test_a_fleet_requiring_tokens_refuses_members_without_auth() -> None:
    fleet = parse_fleet(fleet_body({"requireTokens": True}))
    digest = hashlib.sha256(b"t0ken").hexdigest()
    admission = admit(fleet, [pool("open", "shared"), pool("locked", "shared", tenant="b", auth="s")],
                      namespace_labels={}, digests={("shared", "s"): (digest,)})
    assert [m.pool.meta.name for m in admission.members] == ["locked"]
    assert admission.members[0].token_digests == (digest,)
    problem = admission.refused[("shared", "open")]
    assert problem.reason == TOKENS_REQUIRED
    assert "spec.requireTokens" in problem.message


def test_a_refused_namespace_is_not_admitted() -> None:
    fleet = parse_fleet(fleet_body({"allowedPools": {"namespaces": {
        "from": "Selector", "selector": {"matchLabels": {"team": "a"}}}}}))
    admission = admit(fleet, [pool("a", "ns-a"), pool("b", "ns-b", tenant="beta")],
                      namespace_labels={"ns-a": {"team": "a"}, "ns-b": {}}, digests={})
    assert [m.pool.meta.name for m in admission.members] == ["a"]
    assert admission.refused[("ns-b", "b")].reason == NOT_ADMITTED


# Tokens --------------------------------------------------------------------------------------------


def test_only_digests_of_the_secrets_values_are_kept() -> None:
    secret = {"data": {"one": base64.b64encode(b"alpha\n").decode(), "two": base64.b64encode(b"beta").decode(),
                       "bad": "***", "blank": ""}}
    digests = token_digests(secret)
    assert digests == tuple(sorted(hashlib.sha256(t).hexdigest() for t in (b"alpha", b"beta")))
    assert all(b"alpha" not in d.encode() for d in digests)


# Rendering -----------------------------------------------------------------------------------------


def test_members_change_the_config_and_the_token_secret_never_the_pod_template() -> None:
    fleet = parse_fleet(fleet_body({"memoryBudget": "1Gi"}))
    digest = hashlib.sha256(b"tok").hexdigest()
    one = admit(fleet, [pool("a", "shared")], namespace_labels={}, digests={})
    two = admit(fleet, [pool("a", "shared"), pool("b", "shared", tenant="beta", auth="s")], namespace_labels={},
                digests={("shared", "s"): (digest,)})
    empty = render_children(fleet, (), options=OPTIONS, replicas=2)
    first = render_children(fleet, one.members, options=OPTIONS, replicas=2)
    second = render_children(fleet, two.members, options=OPTIONS, replicas=2)
    assert empty.deployment == first.deployment == second.deployment
    assert empty.service == second.service
    assert first.config_map["data"] != second.config_map["data"]
    assert "data" not in empty.tokens
    assert "data" not in first.tokens
    assert base64.b64decode(second.tokens["data"]["beta"]).decode() == f"{digest}\n"
    assert yaml.safe_load(empty.config_map["data"]["config.yaml"])["tuples"] == []


def test_the_pods_watch_their_config_mounted_as_directories() -> None:
    fleet = parse_fleet(fleet_body({"runtime": {"podLabels": {"team": "platform"}}}))
    deployment = render_children(fleet, (), options=OPTIONS, replicas=3).deployment
    assert deployment["metadata"]["name"] == "prod-runtime"
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["--config", CONFIG_PATH, WATCH_CONFIG_FLAG, "--port", "8080", "--log-format", "json"]
    text = render_children(fleet, (), options=dataclasses.replace(OPTIONS, log_format="text"), replicas=3)
    (text_container,) = text.deployment["spec"]["template"]["spec"]["containers"]
    assert text_container["args"][-2:] == ["--log-format", "text"]
    assert CONFIG_PATH == "/etc/warmpool/config.yaml"
    assert all("subPath" not in mount for mount in container["volumeMounts"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tokens"] == TOKENS_DIR
    assert mounts["config"] == "/etc/warmpool"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "prod-runtime-config"
    assert volumes["tokens"]["secret"]["secretName"] == "prod-tokens"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "platform"
    assert labels["tensorwasm.dev/fleet"] == "prod"
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("RuntimeFleet", "prod", "fleet-uid",
                                                                                 True)
    assert "replicas" not in render_children(fleet, (), options=OPTIONS, replicas=None).deployment["spec"]


def test_the_config_lists_every_members_tuple() -> None:
    fleet = parse_fleet(fleet_body({"maxTotalWarm": 100}))
    admission = admit(fleet, [pool("b", "shared", tenant="beta", auth="s", warm=2), pool("a", "shared", warm=3)],
                      namespace_labels={}, digests={("shared", "s"): ("0" * 64,)})
    config = runtime_config(fleet, admission.members)
    assert config["maxTotalWarm"] == 100
    assert [(t["tenant"], t["warmInstancesPerTuple"]) for t in config["tuples"]] == [("acme", 3), ("beta", 2)]
    acme, beta = config["tuples"]
    assert acme["module"] == {"sha256": SHA_A, "source": {"url": "http://127.0.0.1:9/m.wasm"}}
    assert "tokenDigestsFile" not in acme
    assert beta["tokenDigestsFile"] == token_file("beta") == f"{TOKENS_DIR}/beta"
    assert acme["limits"] == {"memoryBytes": 64 << 20, "timeoutMs": 1000}
    resized = runtime_config(fleet, admission.members, {("acme", SHA_A): 9})
    assert resized["tuples"][0]["warmInstancesPerTuple"] == 9


def test_names_fleet_resolves_the_default_namespace() -> None:
    body = {"metadata": {"namespace": "shared"}, "spec": {"fleetRef": {"name": "prod"}}}
    assert names_fleet(body, "shared", "prod")
    assert not names_fleet(body, "other", "prod")
    assert not names_fleet({"metadata": {"namespace": "shared"}, "spec": {}}, "shared", "prod")


# Tuple states and member status --------------------------------------------------------------------


def test_tuple_states_are_read_in_both_body_shapes() -> None:
    current = {"ready": True, "tuples": [
        {"tenant": "acme", "module": SHA_A[:12], "state": "warm", "warm": 4},
        {"tenant": "beta", "module": SHA_B[:12], "state": "failed", "warm": 0, "reason": "hash mismatch"},
        {"tenant": 5}, "junk"]}
    older = {"ready": False, "tuples": [
        {"tenant": "acme", "sha256": SHA_A, "warm": 1, "target": 4, "ready": False, "error": None},
        {"tenant": "beta", "sha256": SHA_B, "warm": 0, "ready": False, "error": {"code": "x", "message": "gone"}}]}
    states = parse_tuple_states(current)
    assert [(t.tenant, t.state, t.warm, t.reason) for t in states] == [
        ("acme", WARM, 4, ""), ("beta", FAILED, 0, "hash mismatch")]
    assert [(t.state, t.reason) for t in parse_tuple_states(older)] == [(LOADING, ""), (FAILED, "gone")]
    assert states[0].is_for("acme", SHA_A)
    assert not states[0].is_for("acme", SHA_B)
    assert parse_tuple_states("nonsense") == ()


def test_a_member_is_ready_when_warm_on_every_ready_pod() -> None:
    fleet = parse_fleet(fleet_body())
    member = pool("a", "shared")
    progress = Progress(desired=2, replicas=2, updated=2, ready=2, available=2, observed=True)
    warm = parse_tuple_states({"tuples": [{"tenant": "acme", "module": SHA_A[:12], "state": "warm", "warm": 4}]})
    loading = parse_tuple_states({"tuples": [{"tenant": "acme", "module": SHA_A[:12], "state": "loading"}]})

    def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
        return next(c for c in status["conditions"] if c["type"] == kind)

    both = member_status(member, fleet, progress, standing("acme", SHA_A, {"p1": warm, "p2": warm}), NOW)
    assert cond(both, "Ready")["status"] == "True"
    assert both["warmInstances"] == 8
    assert cond(both, "Ready")["message"] == "warm on 2/2 Ready pods of RuntimeFleet shared/prod"
    half = member_status(member, fleet, progress, standing("acme", SHA_A, {"p1": warm, "p2": loading}), NOW)
    assert cond(half, "Ready")["status"] == "False"
    assert cond(half, "Reconciling")["reason"] == "Prewarming"
    failed = parse_tuple_states({"tuples": [{"tenant": "acme", "module": SHA_A[:12], "state": "failed",
                                             "reason": "cannot fetch https://h/m.wasm?sig=s3cret"}]})
    broken = member_status(member, fleet, progress, standing("acme", SHA_A, {"p1": failed}), NOW)
    assert cond(broken, "Stalled")["status"] == "True"
    assert "s3cret" not in cond(broken, "Stalled")["message"]
    none = member_status(member, fleet, progress, standing("acme", SHA_A, {}), NOW)
    assert cond(none, "Reconciling")["reason"] == "WaitingForFleet"


def test_a_member_without_its_fleet_is_stalled_naming_it() -> None:
    from warmpool_operator.runtimefleet.members import fleet_missing

    status = stalled_member_status(pool("a", "team-a"), fleet_missing("shared/prod"), NOW)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "FleetMissing")
    assert stalled["message"] == "RuntimeFleet shared/prod (spec.fleetRef) does not exist"


# The CRD -------------------------------------------------------------------------------------------


def walk(node: dict[str, Any], path: str = "") -> Any:
    yield path or ".", node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def test_the_fleet_crd_is_documented_and_agrees_with_the_parser() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "runtimefleets.tensorwasm.dev.yaml").read_text())
    assert crd["spec"]["names"]["shortNames"] == ["rf"]
    # A `warmpool` category would shadow the WarmPool singular in `kubectl get warmpool NAME`.
    assert "categories" not in crd["spec"]["names"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas.min"
    schema = version["schema"]["openAPIV3Schema"]
    nodes = dict(walk(schema))
    undocumented = [p for p, n in nodes.items() if p not in (".", ".metadata") and not n.get("description")]
    assert undocumented == []
    rules = [r for n in nodes.values() for r in n.get("x-kubernetes-validations") or []]
    assert rules
    assert all(r.get("message") for r in rules)
    spec = schema["properties"]["spec"]["properties"]
    defaults = {name: prop["default"] for name, prop in spec.items() if "default" in prop}
    parsed = parse_fleet_spec(defaults)
    assert parsed == parse_fleet_spec({})
    assert set(spec) == {"runtime", "maxTotalWarm", "memoryBudget", "replicas", "autoscaling", "allowedPools",
                         "requireTokens"}
    pool_crd = yaml.safe_load((ROOT / "crds" / "warmpools.tensorwasm.dev.yaml").read_text())
    pool_runtime = pool_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["runtime"]["properties"]
    assert set(spec["runtime"]["properties"]) == set(pool_runtime)
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:2] == ["Ready", "Reason"]


# Scraping for the two-level decision ----------------------------------------------------------------


def test_a_pods_metrics_are_read_per_wanted_tuple_in_one_pass() -> None:
    from warmpool_contract import POOL_DRAWS, POOL_IN_FLIGHT, POOL_WARM
    from warmpool_operator.fleet.observations import TupleKey
    from warmpool_operator.runtimefleet.scaling import pod_scrape
    from warmpool_operator.scaling.exposition import ExpositionError

    a, b = SHA_A[:12], SHA_B[:12]
    text = "\n".join([
        f"# TYPE {POOL_DRAWS}_total counter",
        f'{POOL_DRAWS}_total{{tenant="acme",module="{a}",result="hit"}} 90',
        f'{POOL_DRAWS}_total{{tenant="acme",module="{a}",result="miss"}} 10',
        f'{POOL_WARM}{{tenant="acme",module="{a}"}} 3',
        f'{POOL_IN_FLIGHT}{{tenant="acme",module="{a}"}} 1',
        f'{POOL_DRAWS}_total{{tenant="other",module="{b}",result="hit"}} 5',
        "",
    ])
    wanted = {TupleKey("acme", SHA_A), TupleKey("beta", SHA_B)}
    scrape = pod_scrape("p1", text, wanted)
    assert scrape.pod == "p1"
    assert set(scrape.tuples) == {TupleKey("acme", SHA_A)}  # beta not reported yet: no data, not zero
    counters = scrape.tuples[TupleKey("acme", SHA_A)]
    assert (counters.hits, counters.misses, counters.warm, counters.in_flight) == (90, 10, 3, 1)
    with pytest.raises(ExpositionError):
        pod_scrape("p1", f'{POOL_WARM}{{tenant="acme",module="{a}"}} NaN\n', wanted)


def test_troubleshooting_quotes_every_message_the_fleet_crd_can_give() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "runtimefleets.tensorwasm.dev.yaml").read_text())
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    messages = [" ".join(str(r["message"]).split()) for _, node in walk(schema)
                for r in node.get("x-kubernetes-validations") or []]
    assert len(messages) >= 6
    assert [m for m in messages if f"`{m}`" not in text] == []


@pytest.mark.parametrize("fleets", [True, False])
def test_fleet_handlers_are_registered_only_when_fleets_may_be_watched(fleets: bool) -> None:
    import kopf
    from prometheus_client import CollectorRegistry

    from tests.operator.harness import TEST_CONFIG
    from warmpool_operator import handlers
    from warmpool_operator.controller import Controller
    from warmpool_operator.kube import KubeApi, Timeouts
    from warmpool_operator.metrics import OperatorMetrics
    from warmpool_operator.probe import HttpProber

    api = KubeApi(kopf.ConnectionInfo(server="http://127.0.0.1:9"), timeouts=Timeouts())  # never called here
    ctl = Controller(config=TEST_CONFIG, api=api, prober=HttpProber(timeout_seconds=1, max_pods=0),
                     metrics=OperatorMetrics.create(CollectorRegistry()), clock=lambda: NOW)
    registry = kopf.OperatorRegistry()

    async def login() -> kopf.ConnectionInfo:
        raise AssertionError("not called")

    handlers.register(registry, ctl, login=login, fleets=fleets)
    # kopf has no public listing of a registry's handlers: its per-kind registries are read directly.
    found = [h for part in (registry._changing, registry._spawning) for h in part.get_all_handlers()]
    watched = {h.selector.any_name for h in found if h.selector is not None}
    assert "warmpools" in watched
    assert ("runtimefleets" in watched) is fleets
    if fleets:
        ids = {str(h.id) for h in found if h.selector is not None and h.selector.any_name == "runtimefleets"}
        assert {"reconcile-fleet", "resync-fleet", "autoscale-fleet", "orphan-members"} <= ids


@pytest.mark.parametrize(("source", "field"), [
    ({"oci": {"repository": "127.0.0.1:5000/acme/m", "pullSecretRef": {"name": "regcred"}}}, "oci.pullSecretRef"),
    ({"url": "https://modules.example/m.wasm", "headersFrom": {"secretRef": {"name": "h"}}}, "headersFrom"),
    ({"url": "https://modules.example/m.wasm", "caBundle": {"configMapRef": {"name": "ca", "key": "ca.pem"}}},
     "caBundle"),
])
def test_a_member_whose_source_names_a_secret_or_configmap_is_refused(source: dict[str, Any], field: str) -> None:
    fleet = parse_fleet(fleet_body({"allowedPools": {"namespaces": {"from": "All"}}}))
    admission = admit(fleet, [pool("private", "team-a", source=source),
                              pool("public", "team-a", tenant="open",
                                   source={"oci": {"repository": "127.0.0.1:5000/acme/m"}})],
                      namespace_labels={}, digests={})
    assert [m.pool.meta.name for m in admission.members] == ["public"]
    problem = admission.refused[("team-a", "private")]
    assert problem.reason == SOURCE_NOT_SHAREABLE
    assert f"spec.module.source.{field}" in problem.message
    assert "dedicated pool" in problem.message


@pytest.mark.parametrize(("spec", "slots"),
                         [({}, 1024 + 64), ({"maxTotalWarm": 100}, 1000), ({"maxTotalWarm": 4000}, 4064)])
def test_fleet_pods_reserve_a_slot_for_every_warm_instance_the_cap_allows(spec: dict[str, Any], slots: int) -> None:
    fleet = parse_fleet(fleet_body(spec))
    config = runtime_config(fleet, [])
    assert config["settings"]["poolSlots"] == slots
    assert config["settings"]["poolSlots"] > config["maxTotalWarm"]

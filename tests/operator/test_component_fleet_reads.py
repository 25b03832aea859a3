"""What a fleet member's resync costs in API calls, counted on the emulated API server (every request it
served, reads and writes, whoever the client: only the operator talks to it inside the counted spans).

A member's resync answers from its fleet's last reconciliation: no read, no write, while the fleet and
the member are unchanged; the fleet's reconciliation writes the member's status when what it observes
changes. A fleet "pod" here is a real HTTP server on a loopback address serving a `/readyz` body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.operator.conftest import EmulatedCluster
from tests.operator.emulator import WRITE_METHODS, ApiServerEmulator
from tests.operator.harness import make_client, operator_running, wait_for, warmpool_manifest, with_config
from tests.operator.runtime_pods import free_port, loopback_address
from tests.operator.test_component_runtimefleet import SHA, condition, member
from warmpool_contract import READYZ_PATH
from warmpool_operator.controller import Controller
from warmpool_operator.kinds import DEPLOYMENTS, PODS, RUNTIMEFLEETS, SECRETS, WARMPOOLS, Kind
from warmpool_operator.metrics import OperatorMetrics
from warmpool_operator.probe import HttpProber
from warmpool_operator.runtimefleet.render import selector_labels
from warmpool_operator.spec import GROUP

pytestmark = pytest.mark.component

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SLOW_RESYNC = with_config(resync_seconds=600.0)
"""No timer fires inside a test: what is counted is the calls made on purpose."""


def api_calls(emulator: ApiServerEmulator) -> tuple[int, int]:
    """(reads, writes) the emulated API server has served so far."""
    reads = writes = 0
    for request in emulator:
        method = str(getattr(request.method, "value", request.method)).upper()
        if method in WRITE_METHODS:
            writes += 1
        else:
            reads += 1
    return reads, writes


def reads_of(emulator: ApiServerEmulator, plural: str, since: int, name: str | None = None) -> int:
    """GETs of `plural` (of the object `name` only, when given) served since request number `since`."""
    requests = list(emulator)[since:]
    return sum(1 for r in requests if r.resource is not None and r.resource.plural == plural
               and str(getattr(r.method, "value", r.method)).upper() == "GET"
               and (name is None or r.url.path.endswith(f"/{plural}/{name}")))


def fleet_body(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "RuntimeFleet", "metadata": {"name": "shared"},
            "spec": spec}


def controller(cluster: EmulatedCluster) -> Controller:
    return Controller(config=SLOW_RESYNC, api=make_client(cluster.connection()),
                      prober=HttpProber(timeout_seconds=1.0, max_pods=0),
                      metrics=OperatorMetrics.create(CollectorRegistry()), clock=lambda: NOW)


@contextlib.asynccontextmanager
async def fleet_pod(cluster: EmulatedCluster, warm: list[tuple[str, str]]) -> AsyncIterator[None]:
    """A Ready pod of the fleet whose /readyz lists the (tenant, sha256) tuples warm."""
    ip = loopback_address()
    port = free_port(ip)

    async def readyz(_: web.Request) -> web.Response:
        tuples = [{"tenant": tenant, "sha256": sha, "state": "warm", "warm": 1} for tenant, sha in warm]
        return web.json_response({"ready": True, "tuples": tuples})

    app = web.Application()
    app.router.add_get(READYZ_PATH, readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, ip, port).start()
    try:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "shared-runtime-0", "labels": selector_labels("shared")},
               "spec": {"containers": [{"name": "runtime", "image": "warmpool:test",
                                        "ports": [{"name": "http", "containerPort": port}]}]}}
        await cluster.api.create(PODS, "pools", pod)
        await cluster.api.patch_status(PODS, "pools", "shared-runtime-0", {
            "phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]})
        yield
    finally:
        await runner.cleanup()


async def test_a_member_resync_with_an_unchanged_fleet_makes_no_api_call(
    cluster: EmulatedCluster, emulator: ApiServerEmulator
) -> None:
    ctl = controller(cluster)
    api = cluster.api
    try:
        await api.create(RUNTIMEFLEETS, "pools", fleet_body())
        await api.create(SECRETS, "pools", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "callers"},
                                            "data": {"ci": base64.b64encode(b"token-one").decode()}})
        await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
        await api.create(WARMPOOLS, "pools", member("b", "pools", "beta", auth={"secretRef": {"name": "callers"}}))
        await api.create(WARMPOOLS, "other", member("c", "other", "gamma"))  # refused: another namespace
        keys = [("pools", "a"), ("pools", "b"), ("other", "c")]
        async with fleet_pod(cluster, [("acme", SHA)]):
            assert await ctl.reconcile_fleet("pools", "shared", trigger="resync") is not None
            seen = {key: await api.get(WARMPOOLS, *key) for key in keys}

            before = api_calls(emulator)
            results = [await ctl.reconcile(*key, trigger="resync", seen=seen[key]) for key in keys]
            assert api_calls(emulator) == before  # no read, no write
            for key, result in zip(keys, results, strict=True):
                assert result is not None
                body = seen[key]
                assert body is not None
                assert result.outcome.status["conditions"] == body["status"]["conditions"], key
                assert result.outcome.writes == ()
                assert result.outcome.notices == ()
            assert condition(seen[("pools", "a")], "Ready")["status"] == "True"
            assert seen[("pools", "a")]["status"]["fleet"] == "pools/shared"
            assert condition(seen[("other", "c")], "Stalled")["reason"] == "NotAdmitted"

            # The member's spec changed (a new generation the fleet has not seen): the resync reads again.
            await api.merge_patch(WARMPOOLS, "pools", "a", {"spec": {"warmInstancesPerTuple": 3}})
            changed = await api.get(WARMPOOLS, "pools", "a")
            assert changed is not None
            before = api_calls(emulator)
            result = await ctl.reconcile("pools", "a", trigger="resync", seen=changed)
            assert result is not None
            assert api_calls(emulator)[0] > before[0]
            assert result.outcome.status["observedGeneration"] == changed["metadata"]["generation"]
    finally:
        await ctl.readyz.close()
        await ctl.api.close()


async def test_the_fleet_writes_its_members_statuses_when_what_it_observes_changes(
    cluster: EmulatedCluster, emulator: ApiServerEmulator
) -> None:
    ctl = controller(cluster)
    api = cluster.api
    try:
        await api.create(RUNTIMEFLEETS, "pools", fleet_body())
        await api.create(WARMPOOLS, "pools", member("a", "pools", "acme"))
        async with fleet_pod(cluster, []):  # a Ready pod that has not warmed the tuple yet
            await ctl.reconcile_fleet("pools", "shared", trigger="resync")
            assert condition(await api.get(WARMPOOLS, "pools", "a"), "Reconciling")["reason"] == "Prewarming"

        # The fleet now requires tokens: its reconciliation (the fleet changed) stalls the member ...
        await api.merge_patch(RUNTIMEFLEETS, "pools", "shared", {"spec": {"requireTokens": True}})
        await ctl.reconcile_fleet("pools", "shared", trigger="update")
        seen = await api.get(WARMPOOLS, "pools", "a")
        assert condition(seen, "Stalled")["reason"] == "TokensRequired"

        # ... and the member's resync answers with that status from memory.
        before = api_calls(emulator)
        result = await ctl.reconcile("pools", "a", trigger="resync", seen=seen)
        assert api_calls(emulator) == before
        assert result is not None
        assert result.outcome.problem is not None
        assert result.outcome.problem.reason == "TokensRequired"

        # The fleet deleted (whether or not its delete handler ran): nothing of it is kept, and the
        # member's next resync reads again and finds it gone.
        await api.delete(RUNTIMEFLEETS, "pools", "shared")
        assert await ctl.reconcile_fleet("pools", "shared", trigger="resync") is None
        assert ("pools", "shared") not in ctl.fleet_results
        result = await ctl.reconcile("pools", "a", trigger="resync", seen=seen)
        assert result is not None
        assert result.outcome.problem is not None
        assert result.outcome.problem.message == "RuntimeFleet pools/shared (spec.fleetRef) does not exist"
    finally:
        await ctl.readyz.close()
        await ctl.api.close()


async def test_a_joining_pools_own_deployment_is_retired_by_the_fleet_and_not_looked_for_again(
    cluster: EmulatedCluster, emulator: ApiServerEmulator
) -> None:
    ctl = controller(cluster)
    api = cluster.api
    try:
        await api.create(WARMPOOLS, "pools", warmpool_manifest("moving", replicas=2))
        await ctl.reconcile("pools", "moving", trigger="create")
        dedicated = await api.get(DEPLOYMENTS, "pools", "moving")
        assert dedicated is not None
        assert dedicated["spec"]["replicas"] == 2

        await api.create(RUNTIMEFLEETS, "pools", fleet_body())
        module = {"sha256": SHA, "source": {"url": "http://127.0.0.1:9/m.wasm", "path": None}}
        await api.merge_patch(WARMPOOLS, "pools", "moving", {"spec": {"module": module,
                                                                       "fleetRef": {"name": "shared"}}})
        async with fleet_pod(cluster, [("acme", SHA)]):
            # The fleet's own resync finds the tuple warm: it records the move and retires the Deployment.
            result = await ctl.reconcile_fleet("pools", "shared", trigger="resync")
            assert result is not None
            assert result.outcome.members[("pools", "moving")].arrived_from == ""
            retired = await api.get(DEPLOYMENTS, "pools", "moving")
            assert retired is not None
            assert retired["spec"]["replicas"] == 0
            seen = await api.get(WARMPOOLS, "pools", "moving")
            assert seen is not None
            assert seen["status"]["fleet"] == "pools/shared"

            # Settled: the next fleet resync moves nothing, and the member's resync reads nothing.
            again = await ctl.reconcile_fleet("pools", "shared", trigger="resync")
            assert again is not None
            assert again.outcome.members[("pools", "moving")].arrived_from is None
            since = len(list(emulator))
            await ctl.reconcile("pools", "moving", trigger="resync", seen=seen)
            assert reads_of(emulator, "deployments", since) == 0
            assert len(list(emulator)) == since
    finally:
        await ctl.readyz.close()
        await ctl.api.close()


def digest_of(tokens: dict[str, Any] | None, tenant: str) -> str:
    assert tokens is not None
    return base64.b64decode(tokens["data"][tenant]).decode()


async def test_watched_token_secrets_are_not_read_again_until_they_change(
    cluster: EmulatedCluster, emulator: ApiServerEmulator
) -> None:
    ctl = controller(cluster)
    ctl.tokens.watching = True  # as the Secret watch's registration sets it
    api = cluster.api
    try:
        await api.create(RUNTIMEFLEETS, "pools", fleet_body())
        await api.create(SECRETS, "pools", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "callers"},
                                            "data": {"ci": base64.b64encode(b"token-one").decode()}})
        await api.create(WARMPOOLS, "pools", member("b", "pools", "beta", auth={"secretRef": {"name": "callers"}}))
        await ctl.reconcile_fleet("pools", "shared", trigger="resync")
        assert ctl.tokens.referenced("pools", "callers")
        assert not ctl.tokens.referenced("pools", "shared-tokens")

        since = len(list(emulator))
        await ctl.reconcile_fleet("pools", "shared", trigger="resync")
        assert reads_of(emulator, "secrets", since, "callers") == 0  # the digests come from the watch's view

        # The watch reports a rotation: the fleet is named for a reconciliation that writes the new digests.
        rotated = (hashlib.sha256(b"token-two").hexdigest(),)
        assert ctl.tokens.observe(("pools", "callers"), rotated) == {("pools", "shared")}
        assert ctl.tokens.observe(("pools", "callers"), rotated) == frozenset()  # no change, nothing to do
        await ctl.reconcile_fleet("pools", "shared", trigger="member")
        assert digest_of(await api.get(SECRETS, "pools", "shared-tokens"), "beta") == rotated[0] + "\n"

        # The member leaves: its Secret is no longer referenced, nothing of it is kept.
        await api.delete(WARMPOOLS, "pools", "b")
        await ctl.reconcile_fleet("pools", "shared", trigger="member")
        assert not ctl.tokens.referenced("pools", "callers")
        assert ctl.tokens.cached(("pools", "callers")) == (False, None)
    finally:
        await ctl.readyz.close()
        await ctl.api.close()


async def test_a_token_rotation_reaches_the_fleet_without_waiting_for_a_resync(cluster: EmulatedCluster) -> None:
    """The real operator (kopf) with resyncs an hour apart: only the Secret watch can carry the rotation."""
    api = cluster.api
    await api.create(SECRETS, "pools", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "callers"},
                                        "data": {"ci": base64.b64encode(b"token-one").decode()}})
    await api.create(RUNTIMEFLEETS, "pools", fleet_body())
    await api.create(WARMPOOLS, "pools", member("b", "pools", "beta", auth={"secretRef": {"name": "callers"}}))
    async with fleet_pod(cluster, [("beta", SHA)]), operator_running(cluster, config=with_config(
            resync_seconds=3600.0)):
        await wait_for(lambda: condition_true(api, "b", "Ready"), what="the member Ready")
        # Their creation handled (kopf's record of it written): no handler of theirs runs again on its own.
        await wait_for(lambda: handled(api, WARMPOOLS, "b"), what="the member's creation handled")
        await wait_for(lambda: handled(api, RUNTIMEFLEETS, "shared"), what="the fleet's creation handled")
        first = hashlib.sha256(b"token-one").hexdigest() + "\n"
        assert digest_of(await api.get(SECRETS, "pools", "shared-tokens"), "beta") == first

        for token in (b"token-two", b"token-three"):  # the second once every earlier event is long handled
            await api.merge_patch(SECRETS, "pools", "callers", {"data": {"ci": base64.b64encode(token).decode()}})
            digest = hashlib.sha256(token).hexdigest() + "\n"

            async def rotated(digest: str = digest) -> bool:
                return digest_of(await api.get(SECRETS, "pools", "shared-tokens"), "beta") == digest

            await wait_for(rotated, what="the new token's digest in the fleet's digest Secret")

        await api.delete(SECRETS, "pools", "callers")

        async def stalled() -> bool:
            return await condition_true(api, "b", "Stalled")

        await wait_for(stalled, what="the member Stalled once its Secret is deleted")
        body = await api.get(WARMPOOLS, "pools", "b")
        assert condition(body, "Stalled")["reason"] == "AuthSecretMissing"


async def handled(api: Any, kind: Kind, name: str) -> bool:
    body = await api.get(kind, "pools", name)
    annotations = ((body or {}).get("metadata") or {}).get("annotations") or {}
    done = {f"{GROUP}/last-handled-configuration", f"{GROUP}/kopf-managed"}
    progress = [k for k in annotations if k.startswith(f"{GROUP}/") and k not in done]
    return f"{GROUP}/last-handled-configuration" in annotations and not progress


async def condition_true(api: Any, name: str, kind: str) -> bool:
    body = await api.get(WARMPOOLS, "pools", name)
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in ((body or {}).get("status") or {}).get("conditions") or [])


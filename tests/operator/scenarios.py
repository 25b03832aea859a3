"""Lifecycle scenarios of a running operator, written against `Cluster` only (any API backend).

Each scenario creates its own WarmPool, starts the operator, drives the cluster through the API
and asserts on what the API then holds: children, status conditions, Events, resourceVersions.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.operator.harness import (
    Cluster,
    children_of,
    condition,
    echo_module,
    events_for,
    get_pool,
    provide_modules,
    resource_versions,
    wait_for,
    warmpool_manifest,
)
from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, SERVICES, WARMPOOLS
from warmpool_operator.render import ANNOTATION_CONFIG_HASH, LABEL_MODULE, LABEL_TENANT


async def pool_with(cluster: Cluster, name: str, kind: str, status: str, **fields: Any) -> dict[str, Any] | None:
    """The WarmPool once condition `kind` has `status` (and the given reason/observedGeneration)."""
    pool = await get_pool(cluster, name)
    cond = condition(pool, kind)
    if cond.get("status") != status:
        return None
    if any(cond.get(key) != value for key, value in fields.items()):
        return None
    return pool


async def all_children(cluster: Cluster, name: str) -> dict[str, dict[str, Any]] | None:
    found = await children_of(cluster, name)
    if not all(found.values()):
        return None
    return {kind: obj for kind, obj in found.items() if obj is not None}


def runtime_config(children: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(children["configmaps"]["data"]["runtime.yaml"])
    return loaded


def template_hash(children: dict[str, dict[str, Any]]) -> str:
    return str(children["deployments"]["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH])


async def scenario_create(cluster: Cluster) -> None:
    """Children appear owned by the pool; Ready=False until the pods are warm, then Ready=True."""
    await provide_modules(cluster)
    created = await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("create", module=echo_module()))
    async with cluster.operator():
        children = await wait_for(lambda: all_children(cluster, "create"), what="children of a new pool")
        for obj in children.values():
            (owner,) = obj["metadata"]["ownerReferences"]
            assert owner["uid"] == created["metadata"]["uid"]
            assert owner["controller"] is True
            assert obj["metadata"]["labels"][LABEL_TENANT] == "acme"
        assert children["deployments"]["spec"]["replicas"] == 2
        assert runtime_config(children)["tuples"][0]["warmInstancesPerTuple"] == 4

        first = await wait_for(lambda: pool_with(cluster, "create", "Ready", "False"), what="Ready=False first")
        assert condition(first, "Ready")["observedGeneration"] == 1
        assert condition(first, "Reconciling")["status"] == "True"
        assert condition(first, "Stalled")["status"] == "False"

        await cluster.roll_out("create", 2)
        ready = await wait_for(lambda: pool_with(cluster, "create", "Ready", "True"), what="Ready=True")
        status = ready["status"]
        assert (status["readyReplicas"], status["warmInstances"], status["readiness"]) == (2, 8, "2/2")
        assert status["selector"] == "app.kubernetes.io/instance=create,app.kubernetes.io/name=warmpool-runtime"
        assert condition(ready, "Reconciling")["status"] == "False"
        await wait_for(lambda: events_for(cluster, "create", "PoolWarm"), what="a PoolWarm Event")


async def scenario_update_module_hash(cluster: Cluster) -> None:
    """A new sha256 rolls the pods: new config, new template hash and module label, generation 2."""
    await provide_modules(cluster)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("rehash", module=echo_module()))
    async with cluster.operator():
        before = await wait_for(lambda: all_children(cluster, "rehash"), what="children")
        await cluster.roll_out("rehash", 2)
        await wait_for(lambda: pool_with(cluster, "rehash", "Ready", "True"), what="Ready before the change")

        v2 = echo_module("echo-v2.wasm")
        patch = {"spec": {"module": v2}}
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "rehash", patch)

        async def rolled() -> dict[str, dict[str, Any]] | None:
            found = await all_children(cluster, "rehash")
            return found if found and template_hash(found) != template_hash(before) else None

        after = await wait_for(rolled, what="a new pod template")
        assert after["deployments"]["spec"]["template"]["metadata"]["labels"][LABEL_MODULE] == v2["sha256"][:12]
        module = runtime_config(after)["tuples"][0]["module"]
        assert module == {"sha256": v2["sha256"], "source": {"path": "/modules/echo-v2.wasm"}}
        rolling = await wait_for(
            lambda: pool_with(cluster, "rehash", "Reconciling", "True", observedGeneration=2), what="rolling out"
        )
        assert condition(rolling, "Ready")["status"] == "False"
        assert rolling["status"]["module"] == v2["sha256"][:12]

        await cluster.roll_out("rehash", 2)
        await wait_for(lambda: pool_with(cluster, "rehash", "Ready", "True", observedGeneration=2), what="Ready")


async def scenario_update_warm_count(cluster: Cluster) -> None:
    """A new warm count reaches the runtime config and rolls the pods; status counts follow."""
    await provide_modules(cluster)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("warmth", module=echo_module()))
    async with cluster.operator():
        before = await wait_for(lambda: all_children(cluster, "warmth"), what="children")
        await cluster.roll_out("warmth", 2)
        await wait_for(lambda: pool_with(cluster, "warmth", "Ready", "True"), what="Ready")

        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "warmth", {"spec": {"warmInstancesPerTuple": 6}})

        async def reconfigured() -> dict[str, dict[str, Any]] | None:
            found = await all_children(cluster, "warmth")
            warm = runtime_config(found)["tuples"][0]["warmInstancesPerTuple"] if found else None
            return found if found and warm == 6 else None

        after = await wait_for(reconfigured, what="warmInstancesPerTuple=6 in the runtime config")
        assert template_hash(after) != template_hash(before)
        await cluster.roll_out("warmth", 2)
        ready = await wait_for(
            lambda: pool_with(cluster, "warmth", "Ready", "True", observedGeneration=2), what="Ready again"
        )
        assert ready["status"]["warmInstances"] == 12


async def scenario_delete(cluster: Cluster) -> None:
    """Deleting a pool is never blocked, and its children go with it (owner references)."""
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("doomed"))
    async with cluster.operator() as running:
        await wait_for(lambda: all_children(cluster, "doomed"), what="children")
        await cluster.api.delete(WARMPOOLS, cluster.namespace, "doomed")

        async def gone() -> bool:
            return await get_pool(cluster, "doomed") is None

        await wait_for(gone, what="the WarmPool deleted without a finalizer holding it")
        handled = await running.sample("warmpool_operator_reconcile_duration_seconds_count", trigger="child")
        await cluster.collect_garbage()

        async def orphans_gone() -> bool:
            return not any((await children_of(cluster, "doomed")).values())

        await wait_for(orphans_gone, what="children collected")

        # The children's deletion events reach the operator, which must not resurrect them.
        async def deletions_seen() -> bool:
            return await running.sample("warmpool_operator_reconcile_duration_seconds_count", trigger="child") > handled

        await wait_for(deletions_seen, what="the children's deletion events handled")
        assert not any((await children_of(cluster, "doomed")).values())


async def scenario_drift_restored(cluster: Cluster) -> None:
    """Hand edits of owned fields are reverted; what others add to labels/annotations survives."""
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("drifty"))
    async with cluster.operator():
        original = await wait_for(lambda: all_children(cluster, "drifty"), what="children")
        ns = cluster.namespace

        await cluster.api.delete(SERVICES, ns, "drifty")
        await wait_for(lambda: cluster.api.get(SERVICES, ns, "drifty"), what="the Service recreated")

        edit = {
            "metadata": {"labels": {"team": "payments"}, "annotations": {"example.com/owner": "alice"}},
            "spec": {
                "replicas": 7,
                "template": {"spec": {"containers": [{"name": "runtime", "image": "evil:latest"}]}},
            },
        }
        await cluster.api.merge_patch(DEPLOYMENTS, ns, "drifty", edit)

        async def restored() -> dict[str, Any] | None:
            found = await cluster.api.get(DEPLOYMENTS, ns, "drifty")
            container = (found or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0]
            ok = found and found["spec"]["replicas"] == 2 and container.get("image") == "warmpool:test"
            return found if ok else None

        fixed = await wait_for(restored, what="the Deployment restored")
        assert fixed["metadata"]["labels"]["team"] == "payments"
        assert fixed["metadata"]["annotations"]["example.com/owner"] == "alice"
        assert fixed["spec"]["template"] == original["deployments"]["spec"]["template"]

        await cluster.api.merge_patch(CONFIGMAPS, ns, "drifty-runtime", {"data": {"runtime.yaml": "tuples: []\n"}})

        async def config_restored() -> bool:
            found = await cluster.api.get(CONFIGMAPS, ns, "drifty-runtime")
            return found is not None and found["data"] == original["configmaps"]["data"]

        await wait_for(config_restored, what="the runtime ConfigMap restored")

        # A key added to the Service's selector would send its traffic nowhere: the selector is
        # owned whole, while a label added to the Service's metadata stays.
        await cluster.api.merge_patch(SERVICES, ns, "drifty", {"metadata": {"labels": {"team": "payments"}},
                                                               "spec": {"selector": {"canary": "true"}}})

        async def selector_restored() -> dict[str, Any] | None:
            found = await cluster.api.get(SERVICES, ns, "drifty")
            return found if found and found["spec"]["selector"] == original["services"]["spec"]["selector"] else None

        service = await wait_for(selector_restored, what="the Service's selector restored")
        assert service["metadata"]["labels"]["team"] == "payments"


async def scenario_noop_without_writes(cluster: Cluster) -> None:
    """An annotation-only change and periodic resyncs of a settled pool write no child at all."""
    await provide_modules(cluster)
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("steady", module=echo_module()))
    async with cluster.operator() as running:
        await wait_for(lambda: all_children(cluster, "steady"), what="children")
        await cluster.roll_out("steady", 2)
        await wait_for(lambda: pool_with(cluster, "steady", "Ready", "True"), what="Ready")
        settled = await get_pool(cluster, "steady")
        versions = await resource_versions(cluster, "steady")
        writes = cluster.operator_child_writes()
        reconciles = await running.reconciles()

        note = {"metadata": {"annotations": {"example.com/note": "just a note"}}}
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "steady", note)

        async def handled() -> bool:
            pool = await get_pool(cluster, "steady")
            last = ((pool or {}).get("metadata", {}).get("annotations") or {}).get(
                "tensorwasm.dev/last-handled-configuration", ""
            )
            # The update handler ran (kopf recorded the annotation) and a resync came after it.
            return "just a note" in last and await running.reconciles() >= reconciles + 3

        await wait_for(handled, what="the annotation change and two resyncs handled")
        assert await resource_versions(cluster, "steady") == versions
        after = await get_pool(cluster, "steady")
        assert after is not None
        assert settled is not None
        assert after["status"] == settled["status"]
        if writes is not None:
            assert cluster.operator_child_writes() == writes



async def scenario_autoscaled_replicas_left_alone(cluster: Cluster) -> None:
    """With autoscaling on, Deployment replicas belong to the autoscaler: never reverted from the spec."""
    autoscaled = warmpool_manifest("elastic", autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 9})
    await cluster.api.create(WARMPOOLS, cluster.namespace, autoscaled)
    async with cluster.operator() as running:
        children = await wait_for(lambda: all_children(cluster, "elastic"), what="children")
        assert children["deployments"]["spec"]["replicas"] == 2  # the initial size: minReplicas
        await cluster.api.scale_deployment(cluster.namespace, "elastic", 5)  # as the autoscaler does
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "elastic", {"spec": {"replicas": 1}})
        resyncs = await running.reconciles(trigger="resync")

        async def resynced() -> bool:
            return await running.reconciles(trigger="resync") >= resyncs + 2

        await wait_for(resynced, what="resyncs after the autoscaler's write")
        deployment = await cluster.api.get(DEPLOYMENTS, cluster.namespace, "elastic")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 5
        pool = await get_pool(cluster, "elastic")
        assert pool is not None
        assert "desiredReplicas" not in pool["status"]
        assert pool["status"]["readiness"] == "0/5"

        off = {"spec": {"autoscaling": {"enabled": False}, "replicas": 3}}
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "elastic", off)

        async def manual() -> bool:
            found = await cluster.api.get(DEPLOYMENTS, cluster.namespace, "elastic")
            return found is not None and found["spec"]["replicas"] == 3

        await wait_for(manual, what="spec.replicas applied once autoscaling is off")


async def scenario_pod_metadata_follows_the_spec(cluster: Cluster) -> None:
    """podLabels/podAnnotations removed from the spec leave the template; others' additions stay."""
    runtime = {"podLabels": {"team": "payments"}, "podAnnotations": {"example.com/scrape": "true"}}
    await cluster.api.create(WARMPOOLS, cluster.namespace, warmpool_manifest("labelled", runtime=runtime))
    async with cluster.operator():
        await wait_for(lambda: all_children(cluster, "labelled"), what="children")
        foreign = {"spec": {"template": {"metadata": {"labels": {"mesh.example.com/injected": "yes"}}}}}
        await cluster.api.merge_patch(DEPLOYMENTS, cluster.namespace, "labelled", foreign)
        await cluster.api.merge_patch(WARMPOOLS, cluster.namespace, "labelled", {"spec": {"runtime": None}})

        async def dropped() -> dict[str, Any] | None:
            found = await cluster.api.get(DEPLOYMENTS, cluster.namespace, "labelled")
            template = (found or {}).get("spec", {}).get("template", {}).get("metadata", {})
            gone = "team" not in template.get("labels", {})
            return template if gone and "example.com/scrape" not in template.get("annotations", {}) else None

        template = await wait_for(dropped, what="the dropped pod label and annotation removed")
        assert template["labels"]["mesh.example.com/injected"] == "yes"
        assert template["labels"]["app.kubernetes.io/instance"] == "labelled"

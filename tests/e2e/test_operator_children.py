"""A pool's children on the real cluster: restored when deleted or edited, and collected with their pool."""

from __future__ import annotations

import functools
import json
import urllib.error
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import (
    EXAMPLE,
    RUNTIME_PORT,
    container_pid,
    example_module,
    get_text,
    invoke,
    pool_pods,
    ready_pods,
    wait_pool_ready,
)
from warmpool.dev import procs
from warmpool_operator.render import ANNOTATION_CONFIG_HASH, selector_string

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "classify"
CHILDREN = (("configmap", "classify-runtime"), ("service", "classify"), ("deployment", "classify"))


def child(cluster: LocalCluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, f"--namespace={namespace}", "--output=json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def owned_by(obj: dict[str, Any], pool: dict[str, Any]) -> bool:
    (owner,) = obj["metadata"]["ownerReferences"]
    return (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "WarmPool", POOL, pool["metadata"]["uid"], True)


def edited_part(obj: dict[str, Any] | None, kind: str) -> Any:
    """The part of a child the tests delete or edit by hand and expect back."""
    assert obj is not None
    return {"deployment": lambda: obj["spec"]["template"], "configmap": lambda: obj["data"],
            "service": lambda: obj["spec"]["selector"]}[kind]()


def test_deleted_children_are_recreated(operator: LocalCluster, namespace: str) -> None:
    operator.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}")
    pool = wait_pool_ready(operator, namespace, POOL, replicas=2)
    first_pods = {pod["metadata"]["name"] for pod in ready_pods(operator, namespace, POOL)}
    for kind, name in CHILDREN:
        before = child(operator, namespace, kind, name)
        assert before is not None
        operator.kubectl("delete", kind, name, f"--namespace={namespace}")

        def recreated(kind: str = kind, name: str = name, uid: str = before["metadata"]["uid"]) -> Any:
            found = child(operator, namespace, kind, name)
            return found if found and found["metadata"]["uid"] != uid else None

        again = operator.wait_for(f"{kind}/{name} recreated", recreated)
        assert owned_by(again, pool)
        assert edited_part(again, kind) == edited_part(before, kind)
        assert again["metadata"]["labels"] == before["metadata"]["labels"]
    # The recreated Deployment's own pods (the garbage collector took the first ones) come up warm.
    def replaced() -> list[dict[str, Any]] | None:
        pods = ready_pods(operator, namespace, POOL)
        names = {pod["metadata"]["name"] for pod in pods}
        return pods if len(pods) == 2 and not names & first_pods else None

    pods = operator.wait_for("two Ready pods of the recreated Deployment", replaced)
    wait_pool_ready(operator, namespace, POOL, replicas=2)
    _, sha = example_module()
    for pod in pods:
        assert invoke(pod["status"]["podIP"], sha, "add", [1, 2]) == (200, {"results": [3]})


def test_edited_children_are_restored_and_foreign_metadata_survives(operator: LocalCluster, namespace: str) -> None:
    operator.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}")
    wait_pool_ready(operator, namespace, POOL, replicas=2)
    original = {kind: child(operator, namespace, kind, name) for kind, name in CHILDREN}
    for kind, name in CHILDREN:
        operator.kubectl("label", kind, name, f"--namespace={namespace}", "example.com/team=payments")
        operator.kubectl("annotate", kind, name, f"--namespace={namespace}", "example.com/owner=alice")

    template_edit = {"spec": {"template": {"spec": {"containers": [
        {"name": "runtime", "image": "evil:latest", "args": ["--config", "/elsewhere.yaml"]}]}}}}
    edits = {
        "deployment": template_edit,
        "configmap": {"data": {"runtime.yaml": "tuples: []\n"}},
        "service": {"spec": {"selector": {"app.kubernetes.io/instance": "somebody-else"}}},
    }
    for kind, name in CHILDREN:
        operator.kubectl("patch", kind, name, f"--namespace={namespace}", "--type=strategic",
                         f"--patch={json.dumps(edits[kind])}")

    def restored(kind: str, name: str) -> dict[str, Any] | None:
        found = child(operator, namespace, kind, name)
        assert found is not None
        return found if edited_part(found, kind) == edited_part(original[kind], kind) else None

    for kind, name in CHILDREN:
        fixed = operator.wait_for(f"{kind}/{name} restored", functools.partial(restored, kind, name))
        assert fixed["metadata"]["labels"]["example.com/team"] == "payments"
        assert fixed["metadata"]["annotations"]["example.com/owner"] == "alice"
        assert fixed["metadata"]["uid"] == (original[kind] or {})["metadata"]["uid"]  # patched back, not replaced

    # Pods of the edited template (if the Deployment controller got to start any) go away again.
    template = (original["deployment"] or {})["spec"]["template"]

    def original_pods_only() -> list[dict[str, Any]] | None:
        pods = pool_pods(operator, namespace, POOL)
        wanted = [(c["image"], c["args"]) for c in template["spec"]["containers"]]
        same = all([(c["image"], c["args"]) for c in pod["spec"]["containers"]] == wanted for pod in pods)
        return pods if same and len(ready_pods(operator, namespace, POOL)) == 2 else None

    pods = operator.wait_for("only pods of the original template", original_pods_only)
    digest = template["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
    assert {pod["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] for pod in pods} == {digest}
    pool = wait_pool_ready(operator, namespace, POOL, replicas=2)
    assert pool["status"]["readiness"] == "2/2"


def test_deleting_the_pool_cascades_through_the_garbage_collector(operator: LocalCluster, namespace: str) -> None:
    operator.kubectl("apply", f"--namespace={namespace}", f"--filename={EXAMPLE}")
    pool = wait_pool_ready(operator, namespace, POOL, replicas=2)
    # kopf's finalizer (its resync timer needs one) is the only one, and the operator releases it.
    assert pool["metadata"]["finalizers"] == ["tensorwasm.dev/finalizer"]
    pids = [container_pid(pod["status"]["containerStatuses"][0]) for pod in pool_pods(operator, namespace, POOL)]
    assert len(pids) == 2
    assert all(pid and procs.alive(pid) for pid in pids)
    ips = [pod["status"]["podIP"] for pod in pool_pods(operator, namespace, POOL)]

    deleted = operator.kubectl("delete", f"--namespace={namespace}", f"warmpool/{POOL}", "--wait=true").stdout
    assert 'warmpool.tensorwasm.dev "classify" deleted' in deleted
    assert "NotFound" in operator.kubectl("get", "warmpool", POOL, f"--namespace={namespace}", check=False).stderr
    selector = f"--selector={selector_string(POOL)}"

    def all_gone() -> bool:
        left = operator.kubectl_json("get", "deployments,replicasets,pods,services,configmaps",
                                     f"--namespace={namespace}", selector)
        return not left["items"] and not any(pid and procs.alive(pid) for pid in pids)

    operator.wait_for("the pool's children, pods and runtime processes gone", all_gone)
    for ip in ips:
        with pytest.raises(urllib.error.URLError):
            get_text(f"http://{ip}:{RUNTIME_PORT}/healthz", timeout_s=2)
    # Only what the pool owned: the module's ConfigMap is the user's and stays.
    assert child(operator, namespace, "configmap", "classify-module") is not None

"""GitOps health: the Argo CD Lua check run by a real Lua 5.1, and the kstatus reading Flux applies."""

from __future__ import annotations

import itertools
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.gitops_checks import HEALTH_LUA, argo_health, kstatus
from warmpool_operator.health import Problem, Progress
from warmpool_operator.spec import parse_spec, parse_warmpool
from warmpool_operator.status import compute_status, invalid_spec_status

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
CASES = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_argocd_health_cases(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text())
    assert argo_health(obj) == case["healthStatus"]


def test_every_testdata_file_has_a_case() -> None:
    used = {Path(c["inputPath"]).name for c in CASES}
    assert used == {p.name for p in (ARGOCD / "testdata").glob("*.yaml")}
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded"}


def test_argocd_configmap_patch_carries_the_same_lua() -> None:
    from tools.argocd_cm import KEY, main

    assert main(["--check"]) == 0, "run python -m tools.argocd_cm"
    patch = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert patch["data"][KEY] == HEALTH_LUA


KSTATUS_OF_ARGO = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_kstatus_agrees_with_argocd_on_the_cases(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text())
    status, _ = kstatus(obj)
    argo = case["healthStatus"]["status"]
    stem = Path(case["inputPath"]).stem
    if stem == "new":
        # No status yet: kstatus has nothing to go on and says Current, where the Lua check waits.
        # The operator's first status write always carries Reconciling=True or Stalled=True (see
        # the last test), so the window is the time to the first reconcile (docs/gitops.md).
        assert status == "Current"
        assert argo == "Progressing"
    elif stem == "stale-conditions":
        # kstatus ignores a condition's own observedGeneration; the Lua check discards stale ones.
        # The operator stamps every condition with the generation it judged (see the last test).
        assert status == "Failed"
        assert argo == "Progressing"
    else:
        assert status == KSTATUS_OF_ARGO[argo]


def test_kstatus_reads_generation_and_conditions() -> None:
    base: dict[str, Any] = {"kind": "WarmPool", "metadata": {"generation": 2}, "status": {"observedGeneration": 1}}
    assert kstatus(base) == ("InProgress", "WarmPool generation is 2, but latest observed generation is 1")
    assert kstatus({**base, "metadata": {"generation": 2, "deletionTimestamp": "2026-11-20T10:00:00Z"}})[0] == (
        "Terminating"
    )
    stalled = {"kind": "WarmPool", "metadata": {"generation": 1},
               "status": {"observedGeneration": 1, "conditions": [{"type": "Stalled", "status": "True",
                                                                    "message": "broken"}]}}
    assert kstatus(stalled) == ("Failed", "broken")


SPEC = parse_spec({
    "tenant": "acme",
    "module": {"sha256": "d" * 64, "source": {"url": "http://modules/classify.wasm"}},
    "replicas": 2,
})
PROBLEMS = (None, Problem("ConfigMapMissing", "ConfigMap m does not exist"),
            Problem("TenantImmutable", "spec.tenant changed", True))


def operator_statuses() -> list[tuple[str, dict[str, Any]]]:
    """Every status the operator's own status code writes over a grid of rollout states and problems."""
    out = []
    for desired, replicas, updated, ready, observed, problem in itertools.product(
        (0, 2), (0, 2, 3), (0, 1, 2), (0, 1, 2), (True, False), PROBLEMS
    ):
        progress = Progress(desired=desired, replicas=replicas, updated=updated, ready=ready, available=ready,
                            observed=observed)
        status = compute_status(name="classify", generation=5, spec=SPEC, progress=progress, problem=problem,
                                previous={}, now=NOW)
        out.append((f"{progress} {problem}", status))
    out.append(("invalid spec", invalid_spec_status(generation=5, reason="InvalidSpec", message="spec.tenant: bad",
                                                    previous={}, now=NOW)))
    return out


def test_argocd_and_kstatus_agree_on_every_status_the_operator_writes() -> None:
    statuses = operator_statuses()
    seen = set()
    for label, status in statuses:
        obj = {"apiVersion": "tensorwasm.dev/v1alpha1", "kind": "WarmPool",
               "metadata": {"name": "classify", "generation": 5}, "status": status}
        argo = argo_health(obj)["status"]
        flux, _ = kstatus(obj)
        assert KSTATUS_OF_ARGO[argo] == flux, label
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert {c["observedGeneration"] for c in status["conditions"]} == {status["observedGeneration"]}, label
        assert (argo == "Healthy") == (ready["status"] == "True"), label
        seen.add(argo)
        # A spec edited after this status was written reads as in progress in both tools.
        newer = {**obj, "metadata": {"name": "classify", "generation": 6}}
        assert argo_health(newer)["status"] == "Progressing"
        assert kstatus(newer)[0] == "InProgress"
    assert seen == {"Healthy", "Progressing", "Degraded"}


KUSTOMIZE = ROOT / "examples" / "kustomize"


def kustomize_build(binary: Path, overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(binary), "build", str(KUSTOMIZE / overlay)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize(("overlay", "namespace"), [("overlays/staging", "acme-staging"),
                                                     ("overlays/production", "acme-prod")])
def test_kustomize_overlays_build_valid_warmpools(kustomize: Path, overlay: str, namespace: str) -> None:
    (body,) = [doc for doc in kustomize_build(kustomize, overlay) if doc["kind"] == "WarmPool"]
    assert body["kind"] == "WarmPool"
    assert body["metadata"]["namespace"] == namespace
    pool = parse_warmpool({**body, "metadata": {**body["metadata"], "uid": "u-1"}})
    base = yaml.safe_load((KUSTOMIZE / "base" / "warmpool.yaml").read_text())
    assert pool.spec.module.sha256 == base["spec"]["module"]["sha256"]
    if overlay.endswith("production"):
        # The autoscaler owns the pod count: the manifest must not set replicas (no GitOps drift).
        assert "replicas" not in body["spec"]
        assert pool.spec.autoscaling.enabled
        assert (pool.spec.autoscaling.min_replicas, pool.spec.autoscaling.max_replicas) == (2, 30)
        assert pool.spec.runtime.affinity is not None
    else:
        assert pool.spec.replicas == 1
        assert not pool.spec.autoscaling.enabled

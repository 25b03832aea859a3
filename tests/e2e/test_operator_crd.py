"""The WarmPool CRD on the real API server: accepted as structural, explained, defaulted; bad manifests refused."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import RealCluster
from tests.operator.harness import SHA_A, warmpool_manifest
from warmpool_operator.kinds import WARMPOOLS, Invalid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CRD = "warmpools.tensorwasm.dev"


@pytest.fixture
async def api(crds: LocalCluster, namespace: str) -> AsyncIterator[RealCluster]:
    async with RealCluster(crds, namespace) as view:
        yield view


def test_the_crd_is_established_with_a_structural_schema_and_its_names(crds: LocalCluster) -> None:
    crd = crds.kubectl_json("get", "customresourcedefinition", CRD)
    conditions = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    assert "NonStructuralSchema" not in conditions
    assert crd["status"]["acceptedNames"]["shortNames"] == ["wp"]
    rows = crds.kubectl("api-resources", "--api-group=tensorwasm.dev", "--no-headers").stdout.splitlines()
    (resources,) = [row.split() for row in rows if row.split()[:1] == ["warmpools"]]
    assert resources[:5] == ["warmpools", "wp", "tensorwasm.dev/v1alpha1", "true", "WarmPool"]


def test_kubectl_explain_shows_the_field_descriptions(crds: LocalCluster) -> None:
    spec = crds.kubectl("explain", "warmpool.spec").stdout
    assert "Desired state of the pool." in spec
    for field in ("tenant", "module", "warmInstancesPerTuple", "maxTotalWarm", "replicas", "autoscaling",
                  "limits", "runtime"):
        assert f"  {field}\t" in spec, field
    assert "Tenant the warm instances belong to" in spec
    sha = crds.kubectl("explain", "warmpool.spec.module.sha256").stdout
    assert "SHA-256 of the module bytes, 64 lowercase hex characters." in " ".join(sha.split())
    conditions = crds.kubectl("explain", "wp.status.conditions.observedGeneration").stdout
    assert "The metadata.generation the condition was computed for." in conditions


def test_a_valid_manifest_is_accepted_with_its_defaults(crds: LocalCluster, namespace: str) -> None:
    manifest = warmpool_manifest("defaults")
    for field in ("warmInstancesPerTuple", "maxTotalWarm", "replicas"):
        del manifest["spec"][field]
    manifest["spec"]["autoscaling"] = {"maxReplicas": 4}
    created = json.loads(crds.kubectl("create", f"--namespace={namespace}", "--dry-run=server", "--output=json",
                                      "--filename=-", stdin=json.dumps(manifest)).stdout)
    spec = created["spec"]
    assert spec["replicas"] == 1
    assert spec["autoscaling"] == {"enabled": False, "maxReplicas": 4}
    # Fields the operator's cluster defaults can set are left unset (docs/defaults.md): the operator
    # applies the cluster default, else the built-in one, and shows the effective values in status.
    assert "warmInstancesPerTuple" not in spec
    assert "maxTotalWarm" not in spec
    assert "limits" not in spec


BAD = [
    pytest.param({"tenant": "Acme_Corp"}, "tenant must be a DNS-1123 label", id="tenant-not-dns-label"),
    pytest.param({"module": {"sha256": SHA_A.upper(), "source": {"path": "/m.wasm"}}},
                 "module.sha256 must be 64 lowercase hexadecimal characters", id="sha256-uppercase"),
    pytest.param({"module": {"sha256": "abc123", "source": {"path": "/m.wasm"}}},
                 "module.sha256 must be 64 lowercase hexadecimal characters", id="sha256-short"),
    pytest.param({"module": {"sha256": SHA_A, "source": {"path": "/m.wasm", "url": "http://127.0.0.1/m.wasm"}}},
                 "module.source must set exactly one of url, configMapRef, path", id="two-module-sources"),
    pytest.param({"module": {"sha256": SHA_A, "source": {}}},
                 "module.source must set exactly one of url, configMapRef, path", id="no-module-source"),
    pytest.param({"warmInstancesPerTuple": 8, "maxTotalWarm": 4},
                 "maxTotalWarm must be >= warmInstancesPerTuple", id="max-total-below-per-tuple"),
    pytest.param({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
                 "autoscaling.minReplicas must be <= autoscaling.maxReplicas", id="autoscaling-min-above-max"),
    pytest.param({"autoscaling": {"targetMissRatio": 1.5}},
                 "autoscaling.targetMissRatio must be > 0 and < 1", id="target-miss-ratio-above-one"),
    pytest.param({"autoscaling": {"targetMissRatio": 0}},
                 "autoscaling.targetMissRatio must be > 0 and < 1", id="target-miss-ratio-zero"),
    # OpenAPI schema rules (not CEL): bounds and types.
    pytest.param({"warmInstancesPerTuple": -1}, "spec.warmInstancesPerTuple: Invalid value: -1: "
                 "spec.warmInstancesPerTuple in body should be greater than or equal to 0", id="negative-warm"),
    pytest.param({"replicas": "two"}, 'spec.replicas: Invalid value: "string": spec.replicas in body must be of '
                 "type integer", id="replicas-not-integer"),
    pytest.param({"limits": {"memoryBytes": 1024}}, "spec.limits.memoryBytes in body should be greater than or "
                 "equal to 65536", id="memory-below-one-page"),
]


@pytest.mark.parametrize(("spec", "message"), BAD)
async def test_bad_manifests_are_refused_with_422_and_the_rules_message(
    api: RealCluster, spec: dict[str, Any], message: str
) -> None:
    manifest = warmpool_manifest("refused", **spec)
    with pytest.raises(Invalid) as refused:
        await api.api.create(WARMPOOLS, api.namespace, manifest)
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    assert message in refused.value.message
    assert await api.api.get(WARMPOOLS, api.namespace, "refused") is None


def test_kubectl_apply_of_a_bad_manifest_shows_the_rules_message(crds: LocalCluster, namespace: str) -> None:
    manifest = warmpool_manifest("refused", warmInstancesPerTuple=32, maxTotalWarm=16)
    result = crds.kubectl("apply", f"--namespace={namespace}", "--filename=-", stdin=json.dumps(manifest),
                          check=False)
    assert result.returncode != 0
    assert 'The WarmPool "refused" is invalid' in result.stderr
    assert "maxTotalWarm must be >= warmInstancesPerTuple" in result.stderr


async def test_the_tenant_cannot_change_after_creation(api: RealCluster) -> None:
    created = await api.api.create(WARMPOOLS, api.namespace, warmpool_manifest("settled"))
    with pytest.raises(Invalid) as refused:
        await api.api.merge_patch(WARMPOOLS, api.namespace, "settled", {"spec": {"tenant": "globex"}})
    assert refused.value.status == 422
    assert "tenant is immutable; create a new WarmPool for another tenant" in refused.value.message
    # Other fields still change, and a patch that repeats the tenant is fine.
    changed = copy.deepcopy(created["spec"])
    changed["warmInstancesPerTuple"] = 2
    patched = await api.api.merge_patch(WARMPOOLS, api.namespace, "settled", {"spec": changed})
    assert (patched["spec"]["tenant"], patched["spec"]["warmInstancesPerTuple"]) == ("acme", 2)
    assert patched["metadata"]["generation"] == 2


def test_a_missing_tenant_is_refused_naming_the_field(crds: LocalCluster, namespace: str) -> None:
    manifest = warmpool_manifest("tenantless")
    del manifest["spec"]["tenant"]
    result = crds.kubectl("create", f"--namespace={namespace}", "--filename=-", stdin=json.dumps(manifest),
                          check=False)
    assert result.returncode != 0
    assert "spec.tenant: Required value" in result.stderr


def test_unknown_fields_are_refused_under_strict_validation_and_pruned_otherwise(
    crds: LocalCluster, namespace: str
) -> None:
    manifest = warmpool_manifest("typo", warmInstancesPerTupel=8)
    manifest["spec"]["limits"] = {"timeoutMs": 500, "memoryByte": 1 << 20}
    strict = crds.kubectl("create", f"--namespace={namespace}", "--validate=strict", "--filename=-",
                          stdin=json.dumps(manifest), check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.warmInstancesPerTupel"' in strict.stderr
    assert 'unknown field "spec.limits.memoryByte"' in strict.stderr
    assert "NotFound" in crds.kubectl("get", "warmpool", "typo", f"--namespace={namespace}", check=False).stderr

    # Without strict validation the API server drops them: nothing unknown is ever stored.
    crds.kubectl("create", f"--namespace={namespace}", "--validate=false", "--filename=-",
                 stdin=json.dumps(manifest))
    stored = crds.kubectl_json("get", "warmpool", "typo", f"--namespace={namespace}")["spec"]
    assert "warmInstancesPerTupel" not in stored
    assert stored["limits"] == {"timeoutMs": 500}

"""The examples stand alone: every module source they name ships with them, and the quickstart's invoke step
matches the example it invokes."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmpool_operator.spec import parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def assert_self_contained(documents: list[dict[str, Any]], where: str) -> int:
    """Every WarmPool's module comes from a ConfigMap among `documents` whose bytes hash to its sha256."""
    maps = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in documents if d["kind"] == "ConfigMap"}
    pools = [d for d in documents if d["kind"] == "WarmPool"]
    assert pools, where
    for pool in pools:
        spec = parse_spec(pool["spec"])
        ref = spec.module.source.config_map
        assert ref is not None, f"{where}: {pool['metadata']['name']} needs a module source nothing here deploys"
        config_map = maps.get((pool["metadata"].get("namespace"), ref.name))
        assert config_map is not None, f"{where}: ConfigMap {ref.name} is not beside the WarmPool"
        data = base64.b64decode(config_map["binaryData"][ref.key])
        assert hashlib.sha256(data).hexdigest() == spec.module.sha256, where
    return len(pools)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_each_example_file_brings_its_module(example: Path) -> None:
    assert assert_self_contained([d for d in yaml.safe_load_all(example.read_text()) if d], example.name) == 1


@pytest.mark.parametrize("overlay", ["overlays/staging", "overlays/production"])
def test_each_kustomize_overlay_brings_its_module_into_its_namespace(kustomize: Path, overlay: str) -> None:
    result = subprocess.run([str(kustomize), "build", str(EXAMPLES / "kustomize" / overlay)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["metadata"]["namespace"] for d in documents} == {"acme-prod" if "production" in overlay else
                                                                 "acme-staging"}
    assert assert_self_contained(documents, overlay) == 1


def test_no_example_points_at_an_undeployed_module_server() -> None:
    for path in EXAMPLES.rglob("*.yaml"):
        assert ".svc/" not in path.read_text(), path


def test_readme_invoke_step_calls_the_example_pool() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("### Quickstart on a cluster", 1)[1].split("\n## ", 1)[0]
    pool = next(d for d in yaml.safe_load_all((EXAMPLES / "classify.yaml").read_text()) if d["kind"] == "WarmPool")
    name, spec = pool["metadata"]["name"], pool["spec"]
    assert f"kubectl apply -f examples/{name}.yaml" in quickstart
    assert f"kubectl port-forward svc/{name} 8080:8080" in quickstart
    assert f"http://{name}.NAMESPACE.svc:8080" in quickstart
    (path,) = re.findall(r"localhost:8080(/v1/\S+)", quickstart)
    tenant, sha256, export = path.removeprefix("/v1/").split("/")
    assert (tenant, sha256) == (spec["tenant"], spec["module"]["sha256"])
    wat = (ROOT / "runtime" / "warmpool_runtime" / "examples" / "classify.wat").read_text()
    assert f'(export "{export}")' in wat
    assert "Content-Type: application/json" in quickstart

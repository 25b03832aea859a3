"""The two images' installed packages, measured from the installed distributions (tools/image_size.py), and the
prune rules that shrink the operator's (tools/image_prune.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.image_prune import parse_rules, prune, pruned, read_rules
from tools.image_size import LIMIT_MB, before, closure, main, measure, megabytes, read_requirements, targets

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, int]]:
    return {target.name: measure(target) for target in (before(), *targets())}


def test_each_image_installs_at_most_70_mb_of_packages(measured: dict[str, dict[str, int]]) -> None:
    assert LIMIT_MB == 70
    for target in targets():
        total = megabytes(sum(measured[target.name].values()))
        assert total <= LIMIT_MB, f"{target.name}: {total:.1f} MB"
    assert sum(measured["single image (before)"].values()) > max(sum(measured[t.name].values()) for t in targets())


def test_the_runtime_image_holds_no_operator_package_and_the_operator_image_no_runtime_one(
    measured: dict[str, dict[str, int]],
) -> None:
    runtime, operator = set(measured["runtime"]), set(measured["operator"])
    assert not runtime & {"kopf", "kubernetes", "pydantic", "pydantic-core", "requests", "bcrypt"}
    assert {"wasmtime", "uvloop", "httptools", "aiohttp", "pyyaml", "prometheus-client", "warmpool"} <= runtime
    assert not operator & {"wasmtime", "uvloop", "httptools", "bcrypt"}
    assert {"kopf", "kubernetes", "aiohttp", "warmpool"} <= operator
    for sizes in measured.values():
        assert not set(sizes) & {"pip", "setuptools", "wheel"}, "the base image's own"


def test_the_prune_rules_leave_the_kubernetes_clients_core(measured: dict[str, dict[str, int]]) -> None:
    kept, whole = measured["operator"]["kubernetes"], measured["single image (before)"]["kubernetes"]
    assert 0 < kept < whole / 10
    assert measured["runtime"]["warmpool"] == measured["operator"]["warmpool"] > 0


def test_the_closure_follows_extras_and_markers() -> None:
    (kopf,) = [r for r in read_requirements("operator") if r.name == "kopf"]
    names = set(closure([kopf]))
    assert {"kopf", "aiohttp", "yarl", "multidict", "python-json-logger"} <= names
    assert "kubernetes" not in names
    (uvloop,) = [r for r in read_requirements("runtime") if r.name == "uvloop"]
    assert uvloop.marker is not None, "uvloop is left out on Windows"


def test_rules_last_match_wins_and_a_directory_takes_what_is_under_it() -> None:
    rules = read_rules()
    assert not pruned("kubernetes/aio/client/api_client.py", rules)
    assert pruned("kubernetes/aio/client/api/core_v1_api.py", rules)
    assert pruned("kubernetes/aio/client/models/v1_pod.py", rules)
    assert not pruned("kubernetes/aio/client/api/__init__.py", rules)
    assert pruned("kubernetes/client/api/core_v1_api.py", rules)
    assert pruned("kubernetes/client/api/__pycache__/core_v1_api.cpython-311.pyc", rules)
    assert pruned("kubernetes/client/models/v1_pod.py", rules)
    assert not pruned("kubernetes/client/api/__init__.py", rules)
    assert not pruned("kubernetes/client/api/__pycache__/__init__.cpython-311.pyc", rules)
    assert not pruned("kubernetes/client/models/__init__.py", rules)
    assert not pruned("kubernetes/client/api_client.py", rules)
    assert not pruned("kubernetes/config/kube_config.py", rules)
    assert not pruned("kubernetes-37.0.2.dist-info/RECORD", rules)
    with pytest.raises(ValueError, match="bad prune pattern"):
        parse_rules("../etc")


def test_prune_deletes_what_the_rules_match_and_the_directories_left_empty(tmp_path: Path) -> None:
    files = ["kubernetes/__init__.py", "kubernetes/aio/__init__.py", "kubernetes/aio/client/rest.py",
             "kubernetes/aio/client/models/v1_pod.py", "kubernetes/client/api/__init__.py",
             "kubernetes/client/api/core_v1_api.py",
             "kubernetes/client/api/__pycache__/__init__.cpython-311.pyc",
             "kubernetes/client/api/__pycache__/core_v1_api.cpython-311.pyc",
             "kubernetes/client/models/__init__.py", "kubernetes/client/models/v1_pod.py",
             "kubernetes/client/rest.py", "kopf/__init__.py"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 10)
    assert prune(tmp_path, read_rules()) == 40
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(["kubernetes/__init__.py", "kubernetes/aio/__init__.py", "kubernetes/aio/client/rest.py",
                           "kubernetes/client/api/__init__.py",
                           "kubernetes/client/api/__pycache__/__init__.cpython-311.pyc",
                           "kubernetes/client/models/__init__.py", "kubernetes/client/rest.py", "kopf/__init__.py"])
    assert not (tmp_path / "kubernetes/aio/client/models").exists()


def test_the_report_prints_every_target_and_passes_under_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[-2:] == ["runtime", "operator"]
    assert out.splitlines()[-1].startswith("total")
    assert main(["--limit-mb", "1"]) == 1

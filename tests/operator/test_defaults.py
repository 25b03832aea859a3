"""Cluster-wide WarmPool defaults: parsing with errors naming the key, precedence, where they come from."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.operator.harness import SHA_A, warmpool_manifest
from warmpool.cli import build_parser
from warmpool_operator.defaults import ClusterDefaults, DefaultsError, load_defaults, parse_defaults, parse_pool
from warmpool_operator.health import Progress
from warmpool_operator.render import RenderOptions, render_children
from warmpool_operator.settings import SettingsError, config_from_env
from warmpool_operator.spec import SpecError
from warmpool_operator.status import compute_status

pytestmark = pytest.mark.unit

CLUSTER = {
    "warmInstancesPerTuple": 8,
    "maxTotalWarm": 64,
    "limits": {"memoryBytes": 32 << 20, "timeoutMs": 500},
    "runtime": {
        "image": "mirror.example/warmpool:1",
        "imagePullSecrets": [{"name": "mirror"}],
        "nodeSelector": {"pool": "wasm"},
        "tolerations": [{"key": "wasm", "operator": "Exists"}],
    },
    "autoscaling": {"maxReplicas": 20, "targetMissRatio": 0.05},
}


def pool_body(**spec: Any) -> dict[str, Any]:
    """A manifest carrying only tenant and module (what a user writes), plus `spec`."""
    body = warmpool_manifest("echo")
    body["spec"] = {"tenant": "acme", "module": {"sha256": SHA_A, "source": {"path": "/m.wasm"}}, **spec}
    body["metadata"].update(namespace="pools", uid="u-1", generation=1)
    return body


def test_unset_fields_take_the_cluster_default() -> None:
    spec = parse_pool(pool_body(), parse_defaults(CLUSTER)).spec
    assert (spec.warm_instances_per_tuple, spec.max_total_warm) == (8, 64)
    assert (spec.limits.memory_bytes, spec.limits.timeout_ms) == (32 << 20, 500)
    assert spec.runtime.image == "mirror.example/warmpool:1"
    assert spec.runtime.image_pull_secrets == ("mirror",)
    assert spec.runtime.node_selector == {"pool": "wasm"}
    assert (spec.autoscaling.max_replicas, spec.autoscaling.target_miss_ratio) == (20, 0.05)


def test_the_pool_s_own_value_wins_field_by_field() -> None:
    body = pool_body(
        warmInstancesPerTuple=2,
        limits={"timeoutMs": 100},
        runtime={"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        autoscaling={"enabled": True, "targetMissRatio": 0.2},
    )
    spec = parse_pool(body, parse_defaults(CLUSTER)).spec
    assert spec.warm_instances_per_tuple == 2
    assert spec.max_total_warm == 64  # not set by the pool: the cluster's
    assert (spec.limits.timeout_ms, spec.limits.memory_bytes) == (100, 32 << 20)
    # A list the pool sets replaces the default list; the runtime fields it leaves out stay defaulted.
    assert [t["key"] for t in spec.runtime.tolerations] == ["gpu"]
    assert spec.runtime.image == "mirror.example/warmpool:1"
    assert (spec.autoscaling.enabled, spec.autoscaling.target_miss_ratio, spec.autoscaling.max_replicas) == (
        True, 0.2, 20)


def test_without_cluster_defaults_the_built_ins_apply() -> None:
    for defaults in (ClusterDefaults(), parse_defaults({"runtime": {"image": "x:1"}})):
        spec = parse_pool(pool_body(), defaults).spec
        assert (spec.warm_instances_per_tuple, spec.max_total_warm, spec.limits.timeout_ms) == (4, 256, 1000)
        assert spec.autoscaling.max_replicas == 10


def test_the_manifest_is_not_changed_by_defaulting() -> None:
    body = pool_body(limits={"timeoutMs": 100})
    before = copy.deepcopy(body)
    parse_pool(body, parse_defaults(CLUSTER))
    assert body == before


def test_status_and_rendering_show_the_effective_values() -> None:
    pool = parse_pool(pool_body(), parse_defaults(CLUSTER))
    progress = Progress(observed=True, desired=1, replicas=1, updated=1, ready=1, available=1)
    status = compute_status(name="echo", generation=1, spec=pool.spec, progress=progress, problem=None,
                            previous={}, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert (status["warmInstancesPerTuple"], status["maxTotalWarm"], status["warmInstances"]) == (8, 64, 8)
    children = render_children(pool.meta, pool.spec, options=RenderOptions(default_image="built-in:1"), replicas=1)
    pod = children.deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "mirror.example/warmpool:1"
    assert pod["imagePullSecrets"] == [{"name": "mirror"}]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"warmInstancesPerTuple": -1}, "defaults.warmInstancesPerTuple"),
        ({"maxTotalWarm": "many"}, "defaults.maxTotalWarm"),
        ({"limits": {"memoryBytes": 1}}, "defaults.limits.memoryBytes"),
        ({"limits": {"cpu": 1}}, "defaults.limits"),
        ({"runtime": {"imagePullSecrets": [{"name": "Bad"}]}}, "defaults.runtime.imagePullSecrets[0].name"),
        ({"runtime": {"env": [{"name": "LD_PRELOAD", "value": "/x"}]}}, "defaults.runtime.env[0].name"),
        ({"runtime": {"colour": "blue"}}, "defaults.runtime"),
        ({"autoscaling": {"minReplicas": 0}}, "defaults.autoscaling.minReplicas"),
        ({"autoscaling": {"enabled": True}}, "defaults.autoscaling.enabled"),
        ({"autoscaling": []}, "defaults.autoscaling"),
        ({"tenant": "acme"}, "defaults"),
        ({"replicas": 3}, "defaults"),
    ],
)
def test_bad_defaults_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(DefaultsError) as caught:
        parse_defaults(raw)
    assert str(caught.value).startswith(f"{key}: "), str(caught.value)


def test_defaults_are_read_only() -> None:
    defaults = parse_defaults(CLUSTER)
    with pytest.raises(TypeError):
        defaults.fields["runtime"]["image"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        defaults.fields = {}  # type: ignore[misc]


def test_a_pool_made_invalid_by_a_default_says_so() -> None:
    defaults = parse_defaults({"warmInstancesPerTuple": 1, "maxTotalWarm": 2})
    with pytest.raises(SpecError) as caught:
        parse_pool(pool_body(warmInstancesPerTuple=4), defaults)
    assert caught.value.field == "spec.maxTotalWarm"
    assert "spec.maxTotalWarm from the operator's cluster defaults" in str(caught.value)
    with pytest.raises(SpecError) as plain:
        parse_pool(pool_body(warmInstancesPerTuple=4, maxTotalWarm=2), defaults)
    assert "cluster defaults" not in str(plain.value)


def test_yaml_document_needs_the_defaults_key() -> None:
    assert load_defaults("defaults:\n  warmInstancesPerTuple: 6\n", "f").fields == {"warmInstancesPerTuple": 6}
    assert load_defaults("", "f") == ClusterDefaults()
    for text, said in (("warmInstancesPerTuple: 6\n", "single key `defaults`"), ("defaults: [", "not valid YAML"),
                       ("defaults:\n  maxTotalWarm: -3\n", "f: defaults.maxTotalWarm: must be >= 0")):
        with pytest.raises(DefaultsError, match=said):
            load_defaults(text, "f")


def test_defaults_come_from_a_file_or_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text("defaults:\n  runtime:\n    image: mirror.example/warmpool:1\n")
    from_file = config_from_env({"WARMPOOL_OPERATOR_DEFAULTS_FILE": str(path)})
    assert from_file.defaults.fields["runtime"]["image"] == "mirror.example/warmpool:1"
    inline = config_from_env({"WARMPOOL_OPERATOR_DEFAULTS": "defaults: {warmInstancesPerTuple: 2}"})
    assert inline.defaults.fields == {"warmInstancesPerTuple": 2}
    assert config_from_env({}).defaults == ClusterDefaults()
    with pytest.raises(SettingsError, match="both set"):
        config_from_env({"WARMPOOL_OPERATOR_DEFAULTS_FILE": str(path), "WARMPOOL_OPERATOR_DEFAULTS": "defaults: {}"})
    with pytest.raises(SettingsError, match="cannot read"):
        config_from_env({"WARMPOOL_OPERATOR_DEFAULTS_FILE": str(tmp_path / "missing.yaml")})
    with pytest.raises(SettingsError, match=r"WARMPOOL_OPERATOR_DEFAULTS: defaults\.limits\.timeoutMs"):
        config_from_env({"WARMPOOL_OPERATOR_DEFAULTS": "defaults: {limits: {timeoutMs: 0}}"})


def test_cli_flag_names_the_defaults_file_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text("defaults:\n  warmInstancesPerTuple: -1\n")
    monkeypatch.setenv("WARMPOOL_OPERATOR_DEFAULTS", "defaults: {}")  # the flag wins over the variable
    args = build_parser().parse_args(["operator", "run", "-A", "--defaults", str(path)])
    assert args.func(args) == 2
    assert f"{path}: defaults.warmInstancesPerTuple: must be >= 0" in capsys.readouterr().err

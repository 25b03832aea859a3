"""The chart's `defaults` value: a ConfigMap mounted into the operator, read back as the same cluster defaults."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.packaging.helm import Helm
from warmpool_operator.defaults import load_defaults, parse_defaults
from warmpool_operator.settings import config_from_env

pytestmark = pytest.mark.component

DEFAULTS = {
    "warmInstancesPerTuple": 8,
    "limits": {"timeoutMs": 500},
    "runtime": {
        "image": "mirror.example:5000/warmpool:0.1.0",
        "imagePullSecrets": [{"name": "mirror"}],
        "tolerations": [{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "autoscaling": {"maxReplicas": 20},
}


CONFIG_MAP = "wp-warmpool-operator-defaults"


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def test_defaults_reach_the_operator_as_given(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template({"defaults": DEFAULTS}, name="cluster-defaults")
    (config_map,) = [doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"] == CONFIG_MAP]
    (deployment,) = of_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    path = PurePosixPath(env["WARMPOOL_OPERATOR_DEFAULTS_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "defaults"]
    assert (mount["mountPath"], mount["readOnly"]) == (str(path.parent), True)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "defaults"]
    assert volume["configMap"]["name"] == CONFIG_MAP
    text = config_map["data"][path.name]
    assert load_defaults(text, path.name) == parse_defaults(DEFAULTS)
    # What the operator does with the variable the chart sets, the file standing where it points.
    local = tmp_path / path.name
    local.write_text(text)
    config = config_from_env({**env, "WARMPOOL_OPERATOR_DEFAULTS_FILE": str(local)})
    assert config.defaults == parse_defaults(DEFAULTS)
    # The operator reads them at start: a changed value changes the pod template, which rolls it.
    other = helm.template({"defaults": {**DEFAULTS, "maxTotalWarm": 32}}, name="cluster-defaults-changed")
    (changed,) = of_kind(other, "Deployment")
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/defaults"] != (
        pod["metadata"]["annotations"]["checksum/defaults"])


def test_no_defaults_means_no_configmap_and_no_mount(helm: Helm) -> None:
    docs = helm.template(name="no-cluster-defaults")
    assert not [doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"] == CONFIG_MAP]
    (deployment,) = of_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "WARMPOOL_OPERATOR_DEFAULTS_FILE" not in {item["name"] for item in container["env"]}
    assert "defaults" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_chart_with_defaults_lints_clean(helm: Helm) -> None:
    result = helm.lint({"defaults": DEFAULTS}, name="lint-cluster-defaults")
    assert result.returncode == 0, result.stdout + result.stderr

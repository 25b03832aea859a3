"""Drift detection: whether a child needs applying again (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from warmpool_operator.diff import Exact, drift, is_controlled_by, parse_quantity

pytestmark = pytest.mark.unit

DESIRED: dict[str, Any] = {
    "metadata": {"name": "echo", "labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [{"name": "runtime", "image": "i:1", "resources": {"limits": {"cpu": "1000m"}}}],
                "volumes": [{"name": "config", "configMap": {"name": "echo-runtime"}}],
                "args": ["--port", "8080"],
            }
        },
    },
}


def actual(**overrides: Any) -> dict[str, Any]:
    """What an API server returns: the desired fields plus defaults and foreign additions."""
    obj: dict[str, Any] = {
        "metadata": {"name": "echo", "uid": "x", "resourceVersion": "7", "labels": {"a": "1", "team": "t"}},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 10,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "runtime",
                            "image": "i:1",
                            "resources": {"limits": {"cpu": "1"}},
                            "terminationMessagePath": "/dev/termination-log",
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "echo-runtime", "defaultMode": 420}}],
                    "args": ["--port", "8080"],
                    "dnsPolicy": "ClusterFirst",
                }
            },
        },
        "status": {"replicas": 2},
    }
    obj.update(overrides)
    return obj


def test_defaults_and_foreign_labels_are_not_drift() -> None:
    assert drift(DESIRED, actual()) == []


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda o: o["spec"].update(replicas=3), ".spec.replicas"),
        (lambda o: o["metadata"]["labels"].pop("a"), ".metadata.labels.a"),
        (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil"),
         ".spec.template.spec.containers[name=runtime].image"),
        (lambda o: o["spec"]["template"]["spec"]["containers"].clear(),
         ".spec.template.spec.containers[name=runtime]"),
        (lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(cpu="2"),
         ".spec.template.spec.containers[name=runtime].resources.limits.cpu"),
        (lambda o: o["spec"]["template"]["spec"]["args"].append("--debug"), ".spec.template.spec.args"),
    ],
)
def test_each_owned_change_is_reported_by_path(mutate: Any, path: str) -> None:
    obj = actual()
    mutate(obj)
    assert drift(DESIRED, obj) == [path]


def test_items_others_add_to_named_lists_are_not_drift() -> None:
    obj = actual()
    pod = obj["spec"]["template"]["spec"]
    pod["containers"].insert(0, {"name": "mesh-proxy", "image": "proxy:1"})
    pod["volumes"].append({"name": "mesh-certs", "emptyDir": {}})
    pod["nodeSelector"] = {"zone": "a"}
    assert drift(DESIRED, obj) == []


def test_type_changes_are_drift_but_equal_numbers_are_not() -> None:
    assert drift({"a": 1}, {"a": 1.0}) == []
    assert drift({"a": True}, {"a": 1}) == [".a"]
    assert drift({"a": "1"}, {"a": 1}) == [".a"]
    assert drift({"a": {"b": 1}}, {"a": "x"}) == [".a"]


def test_empty_maps_and_lists_count_as_absent() -> None:
    assert drift({"a": None}, {}) == []
    assert drift({"a": None}, {"a": {}}) == []
    assert drift({"a": None}, {"a": []}) == []
    assert drift({"a": None}, {"a": {"k": "v"}}) == [".a"]


def test_an_exact_map_counts_added_keys_as_drift() -> None:
    desired = {"metadata": {"labels": {"app": "x"}}, "spec": {"selector": Exact({"app": "x"})}}
    actual = {"metadata": {"labels": {"app": "x", "team": "y"}}, "spec": {"selector": {"app": "x", "canary": "1"}}}
    assert drift(desired, actual) == [".spec.selector.canary"]
    assert drift(desired, {"metadata": {"labels": {"app": "x"}}, "spec": {"selector": {"app": "x"}}}) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", Decimal(1)), ("1000m", Decimal(1)), ("0.5", Decimal("0.5")), ("128Mi", Decimal(128 * 2**20)),
     ("1G", Decimal(10**9)), ("1e3", Decimal(1000)), ("2Ki", Decimal(2048)), ("banana", None), ("", None)],
)
def test_quantities(text: str, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


def test_quantities_compare_by_value_only_under_resources() -> None:
    assert drift({"resources": {"cpu": "500m"}}, {"resources": {"cpu": "0.5"}}) == []
    assert drift({"labels": {"v": "500m"}}, {"labels": {"v": "0.5"}}) == [".labels.v"]


def test_controller_reference_is_matched_by_uid() -> None:
    owned = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}]}}
    assert is_controlled_by(owned, "u1")
    assert not is_controlled_by(owned, "u2")
    assert not is_controlled_by({"metadata": {"ownerReferences": [{"uid": "u1"}]}}, "u1")
    assert not is_controlled_by({"metadata": {}}, "u1")

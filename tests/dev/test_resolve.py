"""Resolving a parsed pod into argv, environment and volume files."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from warmpool.dev.agent.podspec import CONFIG_ERROR, Refused, parse_pod
from warmpool.dev.agent.resolve import (
    Addresses,
    Missing,
    Objects,
    container_env,
    expand,
    needed_objects,
    pod_mounts,
    process_argv,
    rewrite_paths,
    rewrite_text,
    volume_files,
)

pytestmark = pytest.mark.unit

ADDRESSES = Addresses(pod_ip="127.0.0.7", host_ip="127.0.0.1")


def pod(container: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "warmpool", **container}],
                 "volumes": volumes or []},
    }


def test_runtime_serve_gets_mount_paths_rewritten_and_the_pod_ip_appended() -> None:
    body = pod(
        {"command": ["warmpool", "runtime", "serve"],
         "args": ["--config", "/etc/warmpool/runtime.yaml", "--module=/modules/m.wasm", "--host", "0.0.0.0",
                  "--name", "$(POD)", "/etcetera"],
         "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/warmpool"}, {"name": "mods", "mountPath": "/modules"}]},
        [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "mods", "emptyDir": {}}],
    )
    plan = parse_pod(body)
    env = container_env(plan.containers[0], body, {}, ADDRESSES)
    argv = process_argv(plan.containers[0], env, warmpool=["/venv/bin/warmpool"], pod_dir="/pods/u1",
                        pod_ip=ADDRESSES.pod_ip)
    assert argv == [
        "/venv/bin/warmpool", "runtime", "serve", "--config", "/pods/u1/etc/warmpool/runtime.yaml",
        "--module=/pods/u1/modules/m.wasm", "--host", "0.0.0.0", "--name", "p", "/etcetera",
        "--host", "127.0.0.7",
    ]


def test_other_warmpool_commands_get_no_host_flag() -> None:
    plan = parse_pod(pod({"command": ["warmpool", "operator", "run"]}))
    argv = process_argv(plan.containers[0], {}, warmpool=["w"], pod_dir="/d", pod_ip="127.0.0.2")
    assert argv == ["w", "operator", "run"]


def test_environment_from_fields_configmaps_and_secrets_in_spec_order() -> None:
    body = pod({
        "command": ["warmpool"],
        "envFrom": [{"configMapRef": {"name": "base"}, "prefix": "B_"}],
        "env": [
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "URL", "value": "http://$(IP):8080/$$(IP)/$(NOPE)"},
        ],
    })
    objects: Objects = {("configmaps", "base"): {"data": {"X": "1"}},
               ("secrets", "s"): {"data": {"k": base64.b64encode(b"hunter2").decode()}}}
    plan = parse_pod(body)
    assert needed_objects(plan) == {("configmaps", "base"), ("secrets", "s")}
    env = container_env(plan.containers[0], body, objects, ADDRESSES)
    assert env == {"B_X": "1", "IP": "127.0.0.7", "APP": "a", "PASS": "hunter2",
                   "URL": "http://127.0.0.7:8080/$(IP)/$(NOPE)"}


def test_a_missing_configmap_for_env_is_a_config_error_naming_it() -> None:
    body = pod({"command": ["warmpool"],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]})
    with pytest.raises(Refused) as refused:
        container_env(parse_pod(body).containers[0], body, {("configmaps", "gone"): None}, ADDRESSES)
    assert refused.value.reason == CONFIG_ERROR
    assert 'configmap "gone" not found' in refused.value.message


def test_optional_references_may_be_missing() -> None:
    ref = {"name": "gone", "key": "k", "optional": True}
    body = pod({"command": ["warmpool"], "env": [{"name": "X", "valueFrom": {"configMapKeyRef": ref}}]})
    assert container_env(parse_pod(body).containers[0], body, {("configmaps", "gone"): None}, ADDRESSES) == {}


def test_configmap_volume_files_decode_binary_data_and_honour_items() -> None:
    wasm = b"\0asm\1\0\0\0"
    objects: Objects = {("configmaps", "mods"): {"data": {"a.txt": "hello"},
                                       "binaryData": {"m.wasm": base64.b64encode(wasm).decode()}}}
    body = pod({"command": ["warmpool"]}, [
        {"name": "all", "configMap": {"name": "mods"}},
        {"name": "some", "configMap": {"name": "mods", "items": [{"key": "m.wasm", "path": "sub/x.wasm"}]}},
    ])
    plan = parse_pod(body)
    assert volume_files(plan.volumes[0], body, objects, ADDRESSES, {}) == {"a.txt": b"hello", "m.wasm": wasm}
    assert volume_files(plan.volumes[1], body, objects, ADDRESSES, {}) == {"sub/x.wasm": wasm}
    with pytest.raises(Missing, match='configmap "mods" not found'):
        volume_files(plan.volumes[0], body, {("configmaps", "mods"): None}, ADDRESSES, {})


def test_volume_paths_may_not_escape_the_volume() -> None:
    body = pod({"command": ["warmpool"]},
               [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../../etc/passwd"}]}}])
    with pytest.raises(Refused, match="leaves the volume"):
        volume_files(parse_pod(body).volumes[0], body, {("configmaps", "c"): {"data": {"k": "x"}}}, ADDRESSES, {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/etc/warmpool", "/p/etc/warmpool"),
        ("/etc/warmpool/a/b", "/p/etc/warmpool/a/b"),
        ("--config=/etc/warmpool/x", "--config=/p/etc/warmpool/x"),
        ("/etc/warmpoolx", "/elsewhere/etc/warmpoolx"),
        ("/etcetera", "/etcetera"),
        ("/etc/warmpool/deep/f", "/p/etc/warmpool/deep/f"),
        ("relative/etc/warmpool", "relative/etc/warmpool"),
    ],
)
def test_rewrite_paths_matches_whole_path_components(value: str, expected: str) -> None:
    mounts = [("/etc/warmpool", "/p/etc/warmpool"), ("/etc", "/elsewhere/etc")]
    assert rewrite_paths(value, mounts) == expected


def test_expand_leaves_unknown_references_alone() -> None:
    assert expand("$(A)-$(B)-$$-$$(A)", {"A": "1"}) == "1-$(B)-$-$(A)"


def test_mount_paths_in_configmap_text_are_rewritten_but_binary_data_is_not() -> None:
    config = "tuples:\n  - module:\n      source:\n        path: /modules/m.wasm\n"
    wasm = b"\0asm/modules/m.wasm"
    body = pod({"command": ["warmpool"], "volumeMounts": [{"name": "cfg", "mountPath": "/etc/warmpool"},
                                                           {"name": "mods", "mountPath": "/modules"}]},
               [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "mods", "configMap": {"name": "mods"}}])
    objects: Objects = {("configmaps", "cfg"): {"data": {"runtime.yaml": config}},
                        ("configmaps", "mods"): {"binaryData": {"m.wasm": base64.b64encode(wasm).decode()}}}
    plan = parse_pod(body)
    mounts = pod_mounts(plan, "/pods/u1")
    assert mounts == [("/etc/warmpool", "/pods/u1/etc/warmpool"), ("/modules", "/pods/u1/modules")]
    files = volume_files(plan.volumes[0], body, objects, ADDRESSES, {}, text_mounts=mounts)
    assert files["runtime.yaml"].decode().endswith("path: /pods/u1/modules/m.wasm\n")
    assert volume_files(plan.volumes[1], body, objects, ADDRESSES, {}, text_mounts=mounts) == {"m.wasm": wasm}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("path: /modules/x.wasm", "path: /local/modules/x.wasm"),
        ('dir: "/modules"', 'dir: "/local/modules"'),
        ("/tmp and /tmpfs", "/local/tmp and /tmpfs"),
        ("url: http://host:8080/modules/x.wasm", "url: http://host:8080/modules/x.wasm"),
        ("relative/modules/x", "relative/modules/x"),
    ],
)
def test_rewrite_text_replaces_whole_absolute_paths_once(text: str, expected: str) -> None:
    mounts = [("/modules", "/local/modules"), ("/tmp", "/local/tmp")]
    assert rewrite_text(text, mounts) == expected

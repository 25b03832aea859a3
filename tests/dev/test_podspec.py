"""What the node agent accepts from a pod spec, and how it refuses what it cannot run."""

from __future__ import annotations

from typing import Any

import pytest

from warmpool.dev.agent.podspec import CONFIG_ERROR, CREATE_ERROR, Refused, map_command, parse_pod

pytestmark = pytest.mark.unit


def runtime_pod(**spec: Any) -> dict[str, Any]:
    container = {
        "name": "runtime",
        "image": "ghcr.io/example/warmpool:0.1",
        "command": ["warmpool", "runtime", "serve"],
        "args": ["--config", "/etc/warmpool/runtime.yaml"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/warmpool/"}],
    }
    base: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": "cfg"}}],
    }
    base.update(spec)
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": base}


def test_a_runtime_pod_is_parsed_with_named_probe_ports_and_normalised_mount_paths() -> None:
    plan = parse_pod(runtime_pod())
    (container,) = plan.containers
    assert container.command == ("warmpool", "runtime", "serve", "--config", "/etc/warmpool/runtime.yaml")
    assert container.readiness is not None
    assert (container.readiness.port, container.readiness.path, container.readiness.period_s) == (8080, "/readyz", 2)
    assert container.liveness is None
    assert container.mounts[0].mount_path == "/etc/warmpool"
    assert plan.restart_policy == "Always"
    assert plan.volumes[0].keyed[0].name == "cfg"


@pytest.mark.parametrize(
    ("command", "args", "image", "expected"),
    [
        (["warmpool", "runtime"], ["serve"], "x", ("warmpool", "runtime", "serve")),
        (["/usr/local/bin/warmpool"], ["a"], "x", ("warmpool", "a")),
        ([], ["runtime"], "registry.local:5000/warmpool-runtime:1@sha256:ab", ("warmpool", "runtime")),
    ],
)
def test_warmpool_commands_are_accepted(command: list[str], args: list[str], image: str,
                                        expected: tuple[str, ...]) -> None:
    assert map_command(command, args, image, "c") == expected


@pytest.mark.parametrize(
    ("command", "image"), [(["nginx"], "nginx"), ([], "nginx:1.27"), (["sh", "-c", "warmpool"], "warmpool")]
)
def test_other_commands_are_refused_with_create_container_error(command: list[str], image: str) -> None:
    with pytest.raises(Refused) as refused:
        map_command(command, [], image, "container c")
    assert refused.value.reason == CREATE_ERROR
    assert "container c" in refused.value.message


@pytest.mark.parametrize(
    ("volume", "fragment"),
    [
        ({"name": "data", "persistentVolumeClaim": {"claimName": "x"}}, "persistentVolumeClaim"),
        ({"name": "data", "nfs": {"server": "s", "path": "/"}}, "nfs"),
        ({"name": "data", "projected": {"sources": [{"clusterTrustBundle": {}}]}}, "clusterTrustBundle"),
    ],
)
def test_unsupported_volume_types_are_refused_by_name(volume: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Refused) as refused:
        parse_pod(runtime_pod(volumes=[{"name": "config", "configMap": {"name": "cfg"}}, volume]))
    assert refused.value.reason == CONFIG_ERROR
    assert fragment in refused.value.message


def test_other_refusals_name_the_problem() -> None:
    with pytest.raises(Refused, match="init containers"):
        parse_pod(runtime_pod(initContainers=[{"name": "i", "image": "warmpool"}]))
    exec_probe = runtime_pod()
    exec_probe["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}}
    with pytest.raises(Refused, match="only httpGet probes"):
        parse_pod(exec_probe)
    bad_port = runtime_pod()
    bad_port["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": "metrics"}}
    with pytest.raises(Refused, match="'metrics' names no container port"):
        parse_pod(bad_port)
    resource_env = runtime_pod()
    resource_env["spec"]["containers"][0]["env"] = [
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}
    ]
    with pytest.raises(Refused, match="resourceFieldRef"):
        parse_pod(resource_env)


def test_the_default_service_account_token_volume_is_accepted() -> None:
    projected = {"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
    plan = parse_pod(runtime_pod(volumes=[{"name": "config", "configMap": {"name": "cfg"}}, projected]))
    volume = plan.volumes[1]
    assert [t.path for t in volume.tokens] == ["token"]
    assert volume.keyed[0].items == (("ca.crt", "ca.crt"),)
    assert volume.downward[0].field_path == "metadata.namespace"

"""Live config on the real control plane: the node agent refreshes mounted ConfigMaps and Secrets as the kubelet
does, so `warmpool runtime serve --watch-config` picks up new tuples and rotated tokens without a restart."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import wasmtime
import yaml

from tests.e2e.conftest import LocalCluster
from warmpool_contract import TOKENS_DIR, WATCH_CONFIG_FLAG

pytestmark = pytest.mark.e2e

ADD_WAT = '(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'
OLD, NEW = "old-t0ken", "new-t0ken"


def _call(ip: str, sha: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://{ip}:8080/v1/t/{sha}/add", data=b'{"args":[40,2]}', method="POST",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def _readyz(ip: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{ip}:8080/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def _digests(*tokens: str) -> str:
    return base64.b64encode("".join(hashlib.sha256(t.encode()).hexdigest() + "\n" for t in tokens).encode()).decode()


def test_a_watched_config_and_token_secret_change_live_in_a_running_pod(cluster: LocalCluster, namespace: str) -> None:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    sha = hashlib.sha256(wasm).hexdigest()
    tuple_ = {"tenant": "t", "module": {"sha256": sha, "source": {"path": "/modules/add.wasm"}},
              "warmInstancesPerTuple": 1, "tokenDigestsFile": f"{TOKENS_DIR}/t"}
    settings = {"poolSlots": 16, "drainSeconds": 0}

    def config(*tuples: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "runtime", "namespace": namespace},
                "data": {"config.yaml": yaml.safe_dump({"tuples": list(tuples), "settings": settings})}}

    def tokens(*accepted: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokens", "namespace": namespace},
                "data": {"t": _digests(*accepted)}}

    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "modules", "namespace": namespace},
                   "binaryData": {"add.wasm": base64.b64encode(wasm).decode()}})
    cluster.apply(config())
    cluster.apply(tokens(OLD))
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fleet", "namespace": namespace},
        "spec": {
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "runtime", "image": "warmpool:dev", "command": ["warmpool", "runtime", "serve"],
                "args": ["--config", "/etc/warmpool/config.yaml", WATCH_CONFIG_FLAG, "--port", "8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/warmpool", "readOnly": True},
                    {"name": "modules", "mountPath": "/modules", "readOnly": True},
                    {"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True},
                ],
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "runtime"}},
                {"name": "modules", "configMap": {"name": "modules"}},
                {"name": "tokens", "secret": {"secretName": "tokens"}},
            ],
        },
    })
    cluster.kubectl("wait", f"--namespace={namespace}", "--for=condition=Ready", "pod/fleet", "--timeout=180s")
    ip = cluster.kubectl_json("get", "pod", f"--namespace={namespace}", "fleet")["status"]["podIP"]
    assert _readyz(ip)[1]["tuples"] == []  # Ready with no tuples yet

    cluster.apply(config(tuple_))
    cluster.wait_for("the new tuple to serve", lambda: _call(ip, sha, OLD) == (200, {"results": [42]}), timeout_s=60)
    assert _call(ip, sha)[0] == 401

    cluster.apply(tokens(NEW))
    cluster.wait_for("the rotated token to open the tuple", lambda: _call(ip, sha, NEW)[0] == 200, timeout_s=60)
    assert _call(ip, sha, OLD)[0] == 401

    cluster.apply(config())
    cluster.wait_for("the tuple to be removed", lambda: _call(ip, sha, NEW)[0] == 404, timeout_s=60)
    pod = cluster.kubectl_json("get", "pod", f"--namespace={namespace}", "fleet")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert _readyz(ip)[0] == 200

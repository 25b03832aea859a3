"""`warmpool dev up` on the real local control plane: its OCI registry, the pull Secret, pushing, `dev down`."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.gobuilds import ensure_kcluster
from tests.runtime.wasm import BYTES, compile_wat
from warmpool.cli import main
from warmpool.dev import controlplane
from warmpool.dev.commands import PULL_SECRET, registry_files, resolve_layout
from warmpool.dev.registry import running

pytestmark = pytest.mark.e2e


def test_dev_up_serves_a_registry_that_modules_can_be_pushed_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    try:
        assert main(["dev", "up", "--kubeconfig", str(kubeconfig), "--no-operator"]) == 0
        said = capsys.readouterr().err
        layout = resolve_layout(kubeconfig, None)
        files = registry_files(layout)
        assert running(files)

        assert main(["dev", "registry", "--kubeconfig", str(kubeconfig), "--json"]) == 0
        login = json.loads(capsys.readouterr().out)
        host = login["url"].removeprefix("http://")
        assert f"OCI registry: {login['url']}" in said
        assert login["password"] not in said
        push_line = re.search(r"push a module: DOCKER_CONFIG=(\S+) warmpool module push", said)
        assert push_line is not None

        secret = controlplane.kubectl(ensure_kcluster(), kubeconfig, "get", "secret", PULL_SECRET,
                                      "--namespace=default", "--output=json")
        assert secret.returncode == 0, secret.stderr
        body = json.loads(secret.stdout)
        assert body["type"] == "kubernetes.io/dockerconfigjson"
        auths = json.loads(base64.b64decode(body["data"][".dockerconfigjson"]))["auths"]
        assert base64.b64decode(auths[host]["auth"]).decode() == f"{login['username']}:{login['password']}"

        module = tmp_path / "upper.wasm"
        module.write_bytes(compile_wat(BYTES))
        assert main(["module", "push", str(module), f"{host}/dev/upper:v1", "--insecure",
                     "--docker-config", f"{push_line.group(1)}/config.json", "--pull-secret", PULL_SECRET]) == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["spec"]["module"]["source"]["oci"]["pullSecretRef"] == {"name": PULL_SECRET}
    finally:
        assert main(["dev", "down", "--kubeconfig", str(kubeconfig)]) == 0
    assert "stopped registry" in capsys.readouterr().err
    assert not running(files)

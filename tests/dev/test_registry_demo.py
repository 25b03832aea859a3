"""`make demo` (oci by default): the example module published to the dev registry and pulled back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import oras.provider
import pytest

from tests.gobuilds import ensure_registry
from warmpool.demo.__main__ import parser
from warmpool.demo.cluster_demo import demo_manifests, module_bytes, publish_to_dev_registry
from warmpool.dev.commands import PULL_SECRET, registry_files
from warmpool.dev.layout import Identity, Layout, kubeconfig
from warmpool.dev.registry import start_registry, stop_registry


@pytest.mark.unit
def test_the_demo_publishes_to_the_dev_registry_unless_told_to_use_a_configmap() -> None:
    assert parser().parse_args([]).module_source == "oci"
    assert parser().parse_args(["--module-source=configmap"]).module_source == "configmap"
    assert parser().parse_args([]).no_fleet is False


@pytest.mark.unit
def test_the_example_module_is_the_one_its_warmpool_pins() -> None:
    manifests = demo_manifests()
    data, key = module_bytes(manifests)
    pool = next(d for d in manifests if d["kind"] == "WarmPool")
    assert key == pool["spec"]["module"]["source"]["configMapRef"]["key"]
    assert hashlib.sha256(data).hexdigest() == pool["spec"]["module"]["sha256"]


@pytest.mark.component
def test_the_demo_publishes_its_module_and_points_the_warmpool_at_it(tmp_path: Path) -> None:
    layout = Layout(state_dir=tmp_path / "cluster", kubeconfig=tmp_path / "kubeconfig")
    layout.state_dir.mkdir()
    layout.kubeconfig.write_text(kubeconfig(server="https://127.0.0.1:1", ca_data_b64="",
                                            identity=Identity("admin", "t", ()), state_dir=layout.state_dir))
    files = registry_files(layout)
    access = start_registry(binary=ensure_registry(), files=files)
    try:
        manifests = publish_to_dev_registry(demo_manifests(), layout.kubeconfig, layout.state_dir)
        assert [d["kind"] for d in manifests] == ["WarmPool"]
        module = manifests[0]["spec"]["module"]
        oci = module["source"]["oci"]
        assert oci["repository"] == f"{access.host}/demo/classify"
        assert oci["insecure"] is True
        assert oci["pullSecretRef"] == {"name": PULL_SECRET}
        client = oras.provider.Registry(hostname=access.host, insecure=True, auth_backend="basic")
        client.auth.set_basic_auth(access.username, access.password)
        target = f"{oci['repository']}@{oci['reference']}"
        (layer,) = client.get_manifest(target)["layers"]
        pulled = Path(client.download_blob(target, layer["digest"], str(tmp_path / "pulled.wasm")))
        assert hashlib.sha256(pulled.read_bytes()).hexdigest() == module["sha256"]
    finally:
        stop_registry(files)

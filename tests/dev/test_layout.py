"""Pure cluster description: token file, kubeconfigs, state-dir discovery, component flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from warmpool.dev.agent.kubeapi import load_client
from warmpool.dev.controlplane import clear_state
from warmpool.dev.layout import (
    CONTROLLERS,
    Identity,
    Layout,
    Ports,
    Tokens,
    apiserver_args,
    controller_manager_args,
    default_state_dir,
    etcd_args,
    kubeconfig,
    state_dir_from_kubeconfig,
    token_file,
)

pytestmark = pytest.mark.unit

PORTS = Ports(etcd_client=2001, etcd_peer=2002, apiserver=2003, controller_manager=2004, scheduler=2005)


def test_token_file_lists_each_identity_with_its_groups() -> None:
    tokens = Tokens(
        admin=Identity("admin", "t1", ("system:masters",)),
        controller_manager=Identity("system:kube-controller-manager", "t2", ()),
        scheduler=Identity("system:kube-scheduler", "t3", ()),
        node_agent=Identity("system:node:n", "t4", ("system:nodes", "system:masters")),
    )
    assert token_file(tokens).splitlines() == [
        't1,admin,admin,"system:masters"',
        't2,system:kube-controller-manager,system:kube-controller-manager,""',
        't3,system:kube-scheduler,system:kube-scheduler,""',
        't4,system:node:n,system:node:n,"system:nodes,system:masters"',
    ]


def test_kubeconfig_is_read_by_the_kubernetes_client_and_records_the_state_dir(tmp_path: Path) -> None:
    text = kubeconfig(server="https://127.0.0.1:2003", ca_data_b64="Q0E=", identity=Identity("admin", "tok", ()),
                      state_dir=tmp_path / "state")
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    configuration = load_client(path).configuration
    assert configuration.host == "https://127.0.0.1:2003"
    assert configuration.get_api_key_with_prefix("BearerToken", alias="authorization") == "Bearer tok"
    assert configuration.verify_ssl
    assert Path(configuration.ssl_ca_cert).read_bytes() == b"CA"
    assert state_dir_from_kubeconfig(yaml.safe_load(text)) == tmp_path / "state"
    plain = yaml.safe_load(kubeconfig(server="s", ca_data_b64="", identity=Identity("u", "t", ())))
    assert state_dir_from_kubeconfig(plain) is None


def test_default_state_dir_is_a_hidden_sibling_of_the_kubeconfig() -> None:
    assert default_state_dir(Path("/x/kc.yaml")) == Path("/x/.kc.yaml.warmpool-dev")


def test_every_component_listens_on_loopback_only(tmp_path: Path) -> None:
    layout = Layout(state_dir=tmp_path, kubeconfig=tmp_path / "kc")
    etcd = etcd_args(layout, PORTS)
    assert "--listen-client-urls=http://127.0.0.1:2001" in etcd
    apiserver = apiserver_args(layout, PORTS)
    assert "--bind-address=127.0.0.1" in apiserver
    assert "--etcd-servers=http://127.0.0.1:2001" in apiserver
    assert f"--token-auth-file={layout.token_file}" in apiserver
    cidr = next(a for a in apiserver if a.startswith("--service-cluster-ip-range="))
    assert cidr.split("=", 1)[1].startswith("127.")


def test_controller_manager_runs_the_needed_controllers_but_not_node_lifecycle(tmp_path: Path) -> None:
    args = controller_manager_args(Layout(state_dir=tmp_path, kubeconfig=tmp_path / "kc"), PORTS)
    controllers = next(a for a in args if a.startswith("--controllers=")).split("=", 1)[1].split(",")
    needed = {"deployment", "replicaset", "garbage-collector", "namespace", "serviceaccount",
              "serviceaccount-token", "endpointslice"}
    assert {f"{name}-controller" for name in needed} <= set(controllers)
    assert "node-lifecycle-controller" not in CONTROLLERS


def test_clearing_state_removes_only_what_the_cluster_wrote(tmp_path: Path) -> None:
    layout = Layout(state_dir=tmp_path / "state", kubeconfig=tmp_path / "kc")
    for directory in (layout.pki, layout.etcd_data / "member", layout.pods / "uid" / "logs"):
        directory.mkdir(parents=True)
    layout.component_kubeconfig("kube-scheduler").write_text("x")
    (layout.state_dir / "notes.txt").write_text("mine")
    clear_state(layout)
    assert sorted(p.name for p in layout.state_dir.iterdir()) == ["notes.txt"]
    (layout.state_dir / "notes.txt").unlink()
    layout.pki.mkdir()
    clear_state(layout)
    assert not layout.state_dir.exists()

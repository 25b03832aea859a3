"""Pure description of a local cluster: state-dir layout, ports, tokens, kubeconfigs, command lines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HOST = "127.0.0.1"
SERVICE_CIDR = "127.96.0.0/16"
# Loopback service range: service IPs are bookkeeping only here (there is no kube-proxy).
NODE_NAME = "warmpool-dev-node"
STATE_DIR_EXTENSION = "warmpool.dev/state-dir"

CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "disruption-controller",
    "resourcequota-controller",
    "pod-garbage-collector-controller",
    "clusterrole-aggregation-controller",
)
"""The controllers the local cluster runs. node-lifecycle is left out on purpose: its taints
would evict pods from the node agent's node whenever heartbeats lag."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class Identity:
    name: str
    """User name the token authenticates as."""
    token: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Tokens:
    admin: Identity
    controller_manager: Identity
    scheduler: Identity
    node_agent: Identity


@dataclass(frozen=True)
class Layout:
    """Where everything of one local cluster lives."""

    state_dir: Path
    kubeconfig: Path
    """The admin kubeconfig, at the path the user chose."""

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids(self) -> Path:
        return self.state_dir / "pids"

    @property
    def pods(self) -> Path:
        return self.state_dir / "pods"

    @property
    def registry(self) -> Path:
        """The OCI registry's config, htpasswd, credentials (0600) and blobs."""
        return self.state_dir / "registry"

    @property
    def token_file(self) -> Path:
        return self.pki / "tokens.csv"

    @property
    def ports_file(self) -> Path:
        return self.state_dir / "ports.yaml"

    def owned(self) -> list[Path]:
        """Everything the cluster writes in the state dir (removed by `down`; nothing else is)."""
        names = ["pki", "etcd", "logs", "pids", "pods", "registry", "apiserver", "kube-controller-manager",
                 "ports.yaml"]
        return [self.state_dir / name for name in names] + sorted(self.state_dir.glob("*.kubeconfig"))

    def component_kubeconfig(self, component: str) -> Path:
        return self.state_dir / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pid(self, component: str) -> Path:
        return self.pids / f"{component}.pid"


def default_state_dir(kubeconfig: Path) -> Path:
    """The state dir used when none is given: a hidden sibling of the kubeconfig."""
    return kubeconfig.parent / f".{kubeconfig.name}.warmpool-dev"


def server_url(ports: Ports) -> str:
    return f"https://{HOST}:{ports.apiserver}"


def token_file(tokens: Tokens) -> str:
    """The API server's static token file (token,user,uid,"group1,group2")."""
    rows = [tokens.admin, tokens.controller_manager, tokens.scheduler, tokens.node_agent]
    return "".join(f'{i.token},{i.name},{i.name},"{",".join(i.groups)}"\n' for i in rows)


def kubeconfig(*, server: str, ca_data_b64: str, identity: Identity, state_dir: Path | None = None) -> str:
    """A kubeconfig with one cluster, one token user and one current context, all named warmpool-dev."""
    cluster: dict[str, Any] = {"server": server, "certificate-authority-data": ca_data_b64}
    if state_dir is not None:
        cluster["extensions"] = [
            {"name": STATE_DIR_EXTENSION, "extension": {"stateDir": str(state_dir)}}
        ]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "warmpool-dev", "cluster": cluster}],
        "users": [{"name": identity.name, "user": {"token": identity.token}}],
        "contexts": [{"name": "warmpool-dev", "context": {"cluster": "warmpool-dev", "user": identity.name}}],
        "current-context": "warmpool-dev",
    }
    return yaml.safe_dump(config, sort_keys=False)


def state_dir_from_kubeconfig(document: Mapping[str, Any]) -> Path | None:
    """The state dir recorded by `warmpool dev up` in a kubeconfig it wrote, if any."""
    for entry in document.get("clusters") or ():
        for ext in (entry.get("cluster") or {}).get("extensions") or ():
            if ext.get("name") == STATE_DIR_EXTENSION:
                path = (ext.get("extension") or {}).get("stateDir")
                if isinstance(path, str) and path:
                    return Path(path)
    return None


def etcd_args(layout: Layout, ports: Ports) -> list[str]:
    return [
        "etcd",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls=http://{HOST}:{ports.etcd_client}",
        f"--listen-peer-urls=http://{HOST}:{ports.etcd_peer}",
        "--unsafe-no-fsync",
    ]


def apiserver_args(layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        "kube-apiserver",
        f"--etcd-servers=http://{HOST}:{ports.etcd_client}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.state_dir / 'apiserver'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={layout.token_file}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The default/kubernetes Endpoints would carry 127.0.0.1, which Endpoints validation refuses.
        "--endpoint-reconciler-type=none",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_args(layout: Layout, ports: Ports) -> list[str]:
    kubeconfig_path = layout.component_kubeconfig("kube-controller-manager")
    return [
        "kube-controller-manager",
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--authentication-skip-lookup",
        f"--bind-address={HOST}",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.state_dir / 'kube-controller-manager'}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={layout.pki / 'sa.key'}",
        f"--root-ca-file={layout.pki / 'ca.crt'}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--profiling=false",
    ]


def scheduler_args(layout: Layout, ports: Ports) -> list[str]:
    kubeconfig_path = layout.component_kubeconfig("kube-scheduler")
    return [
        "kube-scheduler",
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--authentication-skip-lookup",
        f"--bind-address={HOST}",
        f"--secure-port={ports.scheduler}",
        "--leader-elect=false",
        "--profiling=false",
    ]

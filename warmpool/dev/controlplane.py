"""Start and stop the local control plane: etcd, kube-apiserver, controller-manager, scheduler, node agent."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from warmpool.dev import procs
from warmpool.dev.layout import (
    HOST,
    NODE_NAME,
    Identity,
    Layout,
    Ports,
    Tokens,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kubeconfig,
    scheduler_args,
    server_url,
    token_file,
)

COMPONENTS = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent", "operator", "registry",
)
"""Start order; stopping goes the other way."""

Log = Callable[[str], None]


class ClusterError(RuntimeError):
    """A component failed to start or become ready; the message names it and shows its log tail."""


@dataclass(frozen=True)
class Cluster:
    """A running local cluster."""

    layout: Layout
    ports: Ports
    binary: Path
    """The kcluster binary (its `kubectl` subcommand is the cluster's kubectl)."""

    @property
    def server(self) -> str:
        return server_url(self.ports)

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig


def warmpool_command() -> list[str]:
    """How to run this installation's `warmpool` CLI as a child process."""
    sibling = Path(sys.executable).with_name("warmpool")
    return [str(sibling)] if sibling.exists() else [sys.executable, "-m", "warmpool.cli"]


def _identities() -> Tokens:
    def make(name: str, *groups: str) -> Identity:
        return Identity(name=name, token=secrets.token_hex(24), groups=groups)

    return Tokens(
        admin=make("warmpool-admin", "system:masters"),
        controller_manager=make("system:kube-controller-manager"),
        scheduler=make("system:kube-scheduler"),
        node_agent=make(f"system:node:{NODE_NAME}", "system:nodes", "system:masters"),
    )


def _fail(layout: Layout, component: str, problem: str) -> ClusterError:
    log = layout.log(component)
    return ClusterError(f"{component}: {problem}\n--- last lines of {log} ---\n{procs.tail(log)}")


def _http_status(url: str, *, context: ssl.SSLContext | None, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ssl.SSLError):
        return 0, b""


def _answers_ok(url: str, context: ssl.SSLContext | None, token: str | None = None) -> Callable[[], bool]:
    return lambda: _http_status(url, context=context, token=token)[0] == 200


def _insecure_context() -> ssl.SSLContext:
    # Controller-manager and scheduler serve health on self-signed loopback certificates.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def wait_for(
    layout: Layout, component: str, check: Callable[[], bool], *, timeout_s: float,
    record: procs.Recorded | None = None, what: str = "ready",
) -> None:
    """Poll check until true; fail early if the component's process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if record is not None and not procs.recorded_alive(record):
            raise _fail(layout, component, "the process exited during startup")
        time.sleep(0.25)
    raise _fail(layout, component, f"not {what} after {timeout_s:.0f}s")


def _start(layout: Layout, component: str, argv: Sequence[str], env: dict[str, str] | None = None) -> procs.Recorded:
    return procs.start_detached(argv, log=layout.log(component), pid_file=layout.pid(component), env=env)


def running_components(layout: Layout) -> list[str]:
    alive = []
    for component in COMPONENTS:
        record = procs.read_pid_file(layout.pid(component))
        if record is not None and procs.recorded_alive(record):
            alive.append(component)
    return alive


def start_control_plane(*, binary: Path, layout: Layout, log: Log, with_node_agent: bool = True) -> Cluster:
    """Start every component in order and return once each is ready. Stops what it started on failure."""
    if alive := running_components(layout):
        raise ClusterError(
            f"a cluster already runs from {layout.state_dir} ({', '.join(alive)}); stop it with "
            f"`warmpool dev down --kubeconfig {layout.kubeconfig} --state-dir {layout.state_dir}`"
        )
    clear_state(layout)  # leftovers of a cluster that stopped or failed: start clean
    try:
        return _start_all(binary=binary, layout=layout, log=log, with_node_agent=with_node_agent)
    except BaseException:
        stop_components(layout, log=lambda _line: None)
        raise


def _start_all(*, binary: Path, layout: Layout, log: Log, with_node_agent: bool) -> Cluster:
    for directory in (layout.state_dir, layout.logs, layout.pids, layout.pods):
        directory.mkdir(parents=True, exist_ok=True)
    ports = Ports(*(procs.free_port() for _ in range(5)))
    layout.ports_file.write_text(yaml.safe_dump(ports.__dict__))
    tokens = _identities()

    log(f"generating certificates and keys in {layout.pki}")
    hosts = "127.0.0.1,localhost,kubernetes,kubernetes.default,kubernetes.default.svc"
    result = subprocess.run(
        [str(binary), "pki", f"--dir={layout.pki}", f"--hosts={hosts}"], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ClusterError(f"pki: `{binary} pki --dir={layout.pki}` failed: {result.stderr.strip()}")
    layout.token_file.write_text(token_file(tokens))
    layout.token_file.chmod(0o600)
    ca_b64 = base64.b64encode((layout.pki / "ca.crt").read_bytes()).decode()
    server = server_url(ports)
    layout.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    layout.kubeconfig.write_text(
        kubeconfig(server=server, ca_data_b64=ca_b64, identity=tokens.admin, state_dir=layout.state_dir)
    )
    layout.kubeconfig.chmod(0o600)
    for component, identity in (
        ("kube-controller-manager", tokens.controller_manager),
        ("kube-scheduler", tokens.scheduler),
        ("node-agent", tokens.node_agent),
    ):
        path = layout.component_kubeconfig(component)
        path.write_text(kubeconfig(server=server, ca_data_b64=ca_b64, identity=identity))
        path.chmod(0o600)

    log(f"starting etcd on {HOST}:{ports.etcd_client}")
    record = _start(layout, "etcd", [str(binary), *etcd_args(layout, ports)])
    etcd_health = f"http://{HOST}:{ports.etcd_client}/health"
    wait_for(layout, "etcd", lambda: b'"true"' in _http_status(etcd_health, context=None)[1],
             timeout_s=60, record=record)

    log(f"starting kube-apiserver on {server}")
    _start_apiserver(binary=binary, layout=layout, ports=ports, token=tokens.admin.token)
    ca_context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    admin = tokens.admin.token

    insecure = _insecure_context()
    for component, port, argv in (
        ("kube-controller-manager", ports.controller_manager, controller_manager_args(layout, ports)),
        ("kube-scheduler", ports.scheduler, scheduler_args(layout, ports)),
    ):
        log(f"starting {component}")
        record = _start(layout, component, [str(binary), *argv])
        wait_for(layout, component, _answers_ok(f"https://{HOST}:{port}/healthz", insecure),
                 timeout_s=120, record=record, what="healthy (/healthz)")

    # Pods are refused until the namespace's default ServiceAccount exists.
    sa_url = f"{server}/api/v1/namespaces/default/serviceaccounts/default"
    wait_for(layout, "kube-controller-manager",
             lambda: _http_status(sa_url, context=ca_context, token=admin)[0] == 200,
             timeout_s=120, what="done creating the default ServiceAccount")

    if with_node_agent:
        start_node_agent(layout=layout, server=server, ca_context=ca_context, admin_token=admin, log=log)
    return Cluster(layout=layout, ports=ports, binary=binary)


def _start_apiserver(*, binary: Path, layout: Layout, ports: Ports, token: str) -> None:
    record = _start(layout, "kube-apiserver", [str(binary), *apiserver_args(layout, ports)])
    ca_context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    wait_for(layout, "kube-apiserver", _answers_ok(f"{server_url(ports)}/readyz", ca_context, token),
             timeout_s=180, record=record, what="ready (/readyz)")


def restart_apiserver(cluster: Cluster, *, token: str) -> None:
    """Stop the API server and start it again on the same port and storage (every watch breaks)."""
    procs.stop_pid_file(cluster.layout.pid("kube-apiserver"), grace_s=15.0)
    _start_apiserver(binary=cluster.binary, layout=cluster.layout, ports=cluster.ports, token=token)


def start_node_agent(
    *, layout: Layout, server: str, ca_context: ssl.SSLContext, admin_token: str, log: Log
) -> None:
    log(f"starting the node agent (node {NODE_NAME}, pods under {layout.pods})")
    argv = [
        *warmpool_command(), "dev", "node-agent",
        f"--kubeconfig={layout.component_kubeconfig('node-agent')}",
        f"--node-name={NODE_NAME}", f"--pods-dir={layout.pods}",
    ]
    record = _start(layout, "node-agent", argv)
    node_url = f"{server}/api/v1/nodes/{NODE_NAME}"

    def node_ready() -> bool:
        status, body = _http_status(node_url, context=ca_context, token=admin_token)
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    wait_for(layout, "node-agent", node_ready, timeout_s=60, record=record, what=f"reporting node {NODE_NAME} Ready")


def operator_available() -> bool:
    """Whether `warmpool operator run` is registered in this installation."""
    probe = subprocess.run([*warmpool_command(), "operator", "run", "--help"], check=False, capture_output=True)
    return probe.returncode == 0


def start_operator(*, layout: Layout, log: Log, extra_env: dict[str, str] | None = None) -> procs.Recorded:
    """Run `warmpool operator run -A` against the cluster; return once its liveness endpoint answers."""
    health, metrics = procs.free_port(), procs.free_port()
    argv = [
        *warmpool_command(), "operator", "run", "--all-namespaces",
        f"--health-host={HOST}", f"--health-port={health}",
        f"--metrics-host={HOST}", f"--metrics-port={metrics}",
    ]
    env = {**os.environ, "KUBECONFIG": str(layout.kubeconfig), **(extra_env or {})}
    log(f"starting the operator: {' '.join(argv[len(warmpool_command()) :])}")
    record = _start(layout, "operator", argv, env=env)
    url = f"http://{HOST}:{health}/healthz"
    wait_for(layout, "operator", lambda: _http_status(url, context=None)[0] == 200,
             timeout_s=90, record=record, what="live (/healthz)")
    return record


def kubectl(
    cluster_binary: Path, kubeconfig_path: Path, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster_binary), "kubectl", f"--kubeconfig={kubeconfig_path}", *args],
        check=False, capture_output=True, text=True, timeout=timeout_s,
    )


def install_crds(*, binary: Path, layout: Layout, crds_dir: Path, log: Log) -> list[str]:
    """`kubectl apply` every CRD manifest in crds_dir and wait until they are Established."""
    files = sorted(p for p in crds_dir.glob("*.yaml")) + sorted(crds_dir.glob("*.yml"))
    if not files:
        log(f"no CRD manifests in {crds_dir}: skipping CRD installation")
        return []
    applied = kubectl(binary, layout.kubeconfig, "apply", *(f"--filename={f}" for f in files))
    if applied.returncode != 0:
        raise ClusterError(f"kubectl apply of {crds_dir} failed:\n{applied.stderr.strip()}")
    names = [line.split()[0].split("/", 1)[-1] for line in applied.stdout.splitlines() if line.strip()]
    crd_names = [n for n in names if "." in n]
    if crd_names:
        waited = kubectl(
            binary, layout.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
            *(f"customresourcedefinition/{n}" for n in crd_names),
        )
        if waited.returncode != 0:
            raise ClusterError(f"CRDs not Established: {waited.stderr.strip()}")
    log(f"installed {len(files)} manifest(s) from {crds_dir}")
    return names


def clear_state(layout: Layout) -> None:
    """Remove what a cluster wrote in its state dir, and the dir itself once empty."""
    for path in layout.owned():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        layout.state_dir.rmdir()


def stop_components(layout: Layout, *, log: Log, components: Sequence[str] = COMPONENTS) -> list[str]:
    """Stop the recorded processes in reverse start order; return the ones that were running."""
    stopped = []
    for component in reversed(components):
        if procs.stop_pid_file(layout.pid(component), grace_s=15.0):
            log(f"stopped {component}")
            stopped.append(component)
    return stopped

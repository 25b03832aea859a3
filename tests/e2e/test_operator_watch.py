"""Broken watches on the real control plane: a silently stalled stream and a 410 Gone; no event after them is missed."""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import LocalCluster
from tests.e2e.real_cluster import EXAMPLE, wait_pool_ready
from tests.e2e.test_operator_ha import Replica, start_replica
from tests.e2e.test_operator_outage import start_apiserver, stop_apiserver
from warmpool.dev import procs
from warmpool.dev.layout import HOST, Ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Only the watch may deliver the change: no periodic resync, and no Lease whose renewal would
# restart kopf (and so its watches) when its connection stalls.
WATCH_ONLY = {"WARMPOOL_OPERATOR_RESYNC_SECONDS": "3600", "WARMPOOL_OPERATOR_STANDALONE": "true",
              "WARMPOOL_OPERATOR_WATCH_INACTIVITY_SECONDS": "10", "WARMPOOL_OPERATOR_REQUEST_TIMEOUT_SECONDS": "5"}


class FreezingProxy:
    """A TCP relay on loopback whose open connections can be frozen: kept open, silently passing nothing."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server((HOST, 0))
        self.port = int(self.server.getsockname()[1])
        self.frozen: set[int] = set()
        self.open: set[int] = set()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.frozen |= self.open

    def close(self) -> None:
        self.closing = True
        self.server.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        key = id(client)
        self.open.add(key)
        peers = {client: upstream, upstream: client}
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            stack.enter_context(upstream)
            while not self.closing:
                if key in self.frozen:
                    threading.Event().wait(1)
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if key not in self.frozen:
                        peers[sock].sendall(data)


def through(cluster: LocalCluster, proxy: FreezingProxy, path: Path) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://{HOST}:{proxy.port}"
    path.write_text(yaml.safe_dump(config))
    return path


def ports(cluster: LocalCluster) -> Ports:
    return Ports(**yaml.safe_load(cluster.layout.ports_file.read_text()))


@contextlib.contextmanager
def replica(cluster: LocalCluster, namespace: str, name: str, **options: Any) -> Iterator[Replica]:
    cluster.stop_operator()  # the session's operator would act on the same pool
    started = start_replica(cluster, namespace, name, **options)
    try:
        yield started
    finally:
        procs.stop_pid_file(cluster.layout.pid(f"operator-{name}"), grace_s=10)


def scaled_to(cluster: LocalCluster, namespace: str, replicas: int) -> bool:
    deployment = cluster.kubectl_json("get", "deployment", "classify", f"--namespace={namespace}")
    return bool(deployment["spec"]["replicas"] == replicas)


def pool_created(cluster: LocalCluster, namespace: str) -> None:
    ns = f"--namespace={namespace}"
    cluster.kubectl("apply", ns, f"--filename={EXAMPLE}")
    cluster.wait_for("the pool's Deployment",
                     lambda: cluster.kubectl("get", "deployment", "classify", ns, check=False).returncode == 0)


def quiet(cluster: LocalCluster, running: Replica, seconds: float = 3.0) -> None:
    """Until the operator has logged nothing for `seconds`: no reconcile left in flight or queued."""
    last = {"size": -1, "since": time.monotonic()}

    def settled() -> bool:
        size = running.log.stat().st_size
        if size != last["size"]:
            last.update(size=size, since=time.monotonic())
        return time.monotonic() - last["since"] >= seconds

    cluster.wait_for("the operator idle", settled)


def test_a_change_after_a_silently_stalled_watch_is_reconciled(
    crds: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    proxy = FreezingProxy((HOST, ports(crds).apiserver))
    try:
        with replica(crds, namespace, "stalled", kubeconfig=through(crds, proxy, tmp_path / "kubeconfig"),
                     env=WATCH_ONLY) as running:
            pool_created(crds, namespace)
            # Nothing may be in flight when the streams stall: a reconcile started before would
            # read the changed WarmPool, and the change would come in without any watch.
            wait_pool_ready(crds, namespace, "classify")
            quiet(crds, running)
            proxy.freeze()  # every stream the operator has open goes silent, and stays open
            crds.kubectl("patch", "warmpool", "classify", f"--namespace={namespace}", "--type=merge",
                         "--patch", '{"spec": {"replicas": 1}}')
            # Only a watch reopened on a new connection can bring this change in.
            crds.wait_for("the change reconciled after the stall", lambda: scaled_to(crds, namespace, 1),
                          timeout_s=180)
    finally:
        proxy.close()


def etcd(cluster: LocalCluster, call: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{HOST}:{ports(cluster).etcd_client}/v3/{call}",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_a_change_after_410_gone_is_reconciled(crds: LocalCluster, namespace: str) -> None:
    with replica(crds, namespace, "gone", env=WATCH_ONLY, verbose=True) as running:
        pool_created(crds, namespace)
        stop_apiserver(crds)
        try:
            # Move etcd past every resourceVersion the operator has seen, and compact them away: the
            # restarted API server answers a watch from any of them with 410 Gone.
            key = base64.b64encode(f"/e2e-watch/{namespace}".encode()).decode()
            for _ in range(3):
                put = etcd(crds, "kv/put", {"key": key, "value": base64.b64encode(b"x").decode()})
            etcd(crds, "kv/compaction", {"revision": put["header"]["revision"]})
            etcd(crds, "kv/deleterange", {"key": key})
        finally:
            start_apiserver(crds)
        crds.kubectl("patch", "warmpool", "classify", f"--namespace={namespace}", "--type=merge",
                     "--patch", '{"spec": {"replicas": 1}}')
        crds.wait_for("the change reconciled after 410 Gone", lambda: scaled_to(crds, namespace, 1), timeout_s=180)
        log = running.log.read_text(errors="replace")
        # kopf's answer to an ERROR 410 in a stream: list again, then watch from the new version. If
        # its first attempt came while the API server's cache was still loading, it was refused with
        # 429 and kopf listed again from scratch, which is the same recovery.
        assert ("Restarting the watch-stream for warmpools" in log
                or "storage is (re)initializing" in log), log[-3000:]
        assert procs.recorded_alive(running.record)

"""Starting and stopping a local control plane for a test fixture (built on first use, stopped by PID),
and waiting on it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.gobuilds import ensure_kcluster
from warmpool.dev import controlplane
from warmpool.dev.agent.kubeapi import load_client
from warmpool.dev.build import BuildError
from warmpool.dev.controlplane import Cluster, ClusterError
from warmpool.dev.layout import Layout


@contextlib.contextmanager
def running_control_plane(root: Path, log: Callable[[str], None],
                          pytestconfig: pytest.Config | None = None) -> Iterator[Cluster]:
    """etcd, the API server, controllers, scheduler and node agent under `root`, for the `with` block.

    With `pytestconfig`, a cold build's progress goes to the terminal instead of the capture (it takes minutes).
    """
    capture = pytestconfig.pluginmanager.getplugin("capturemanager") if pytestconfig else None
    try:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            binary = ensure_kcluster(log=log)
    except BuildError as exc:
        pytest.fail(f"cannot build the local control plane: {exc}")
    layout = Layout(state_dir=root / "state", kubeconfig=root / "kubeconfig")
    try:
        running = controlplane.start_control_plane(binary=binary, layout=layout, log=log)
    except ClusterError as exc:
        pytest.fail(f"the local control plane did not start: {exc}")
    try:
        yield running
    finally:
        controlplane.stop_components(layout, log=log)


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str
    ca_path: str | None
    insecure: bool


def credentials(kubeconfig: Path) -> Credentials:
    """Server, bearer token and CA file of a kubeconfig's current context, as the Kubernetes client reads them."""
    configuration = load_client(kubeconfig).configuration
    bearer = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    return Credentials(server=configuration.host, token=str(bearer).removeprefix("Bearer "),
                       ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 120, interval_s: float = 0.5,
             detail: Callable[[], str] | None = None) -> Any:
    """Poll until check() is truthy and return it; fail naming `what` (and `detail()`, if given).

    The timeout is a cap against hanging, not a speed claim.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(interval_s)

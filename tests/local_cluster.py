"""Starting and stopping a local control plane for a test fixture: built on first use, stopped by PID."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from warmpool.dev import controlplane
from warmpool.dev.build import BuildError, ensure_kcluster
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

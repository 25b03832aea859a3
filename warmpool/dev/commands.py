"""Handlers of `warmpool dev ...`: turn the pieces into commands that say clearly what failed."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
from pathlib import Path

import yaml

from warmpool.dev import controlplane
from warmpool.dev import prometheus as dev_prometheus
from warmpool.dev.build import BuildError, ensure_kcluster, ensure_prometheus, ensure_registry
from warmpool.dev.controlplane import ClusterError
from warmpool.dev.layout import Layout, default_state_dir, state_dir_from_kubeconfig
from warmpool.dev.registry import RegistryAccess, RegistryError, RegistryFiles, read_access, running, start_registry

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"
PULL_SECRET = "warmpool-dev-registry"
"""The kubernetes.io/dockerconfigjson Secret (namespace default) holding the dev registry's login."""


def _say(line: str) -> None:
    print(f"warmpool dev: {line}", file=sys.stderr, flush=True)


def resolve_layout(kubeconfig: Path, state_dir: Path | None) -> Layout:
    """The layout for a kubeconfig: the explicit state dir, the one recorded in it, or the default."""
    kubeconfig = kubeconfig.expanduser().absolute()
    if state_dir is None and kubeconfig.exists():
        try:
            state_dir = state_dir_from_kubeconfig(yaml.safe_load(kubeconfig.read_text()) or {})
        except yaml.YAMLError:
            state_dir = None
    return Layout(state_dir=(state_dir or default_state_dir(kubeconfig)).expanduser().absolute(),
                  kubeconfig=kubeconfig)


def registry_files(layout: Layout) -> RegistryFiles:
    """The dev registry's files: its own directory, with its PID and log beside the other components'."""
    return RegistryFiles(root=layout.registry, pid=layout.pid("registry"), log=layout.log("registry"))


def _start_registry(binary: Path, registry_binary: Path, layout: Layout) -> RegistryAccess:
    """The OCI registry on loopback, and its login as a pull Secret in the default namespace."""
    files = registry_files(layout)
    access = start_registry(binary=registry_binary, files=files, log=_say)
    created = controlplane.kubectl(
        binary, layout.kubeconfig, "create", "secret", "generic", PULL_SECRET, "--namespace=default",
        "--type=kubernetes.io/dockerconfigjson",
        f"--from-file=.dockerconfigjson={files.docker_config_dir / 'config.json'}",
    )
    if created.returncode != 0:
        raise ClusterError(f"creating the Secret {PULL_SECRET} failed: {created.stderr.strip()}")
    return access


def _say_how_to_push(layout: Layout, access: RegistryAccess) -> None:
    files = registry_files(layout)
    _say(f"OCI registry: {access.url} (user {access.username}; login in {files.credentials}, mode 0600)")
    _say(f"push a module: DOCKER_CONFIG={files.docker_config_dir} warmpool module push MODULE.wasm "
         f"{access.host}/NAME:TAG --insecure --pull-secret {PULL_SECRET} --tenant TENANT")
    _say(f"the login as JSON: warmpool dev registry --kubeconfig {layout.kubeconfig} --json")


def up(*, kubeconfig: Path, state_dir: Path | None, operator: bool, crds: Path | None,
       registry: bool = False, prometheus: bool = False) -> int:
    layout = Layout(state_dir=(state_dir or default_state_dir(kubeconfig.absolute())).absolute(),
                    kubeconfig=kubeconfig.expanduser().absolute())
    if operator and not controlplane.operator_available():
        _say("`warmpool operator run` is not available in this installation; pass --no-operator to start "
             "the cluster without it")
        return 1
    try:
        binary = ensure_kcluster(log=_say)
        # Built before anything starts, so a failed build leaves nothing running.
        registry_binary = ensure_registry(log=_say) if registry else None
        cluster = controlplane.start_control_plane(binary=binary, layout=layout, log=_say)
    except (BuildError, ClusterError) as exc:
        _say(f"failed: {exc}")
        return 1
    access: RegistryAccess | None = None
    prometheus_url: str | None = None
    try:
        controlplane.install_crds(binary=binary, layout=layout, crds_dir=crds or REPO_CRDS, log=_say)
        if operator:
            controlplane.start_operator(layout=layout, log=_say)
        if registry_binary is not None:
            access = _start_registry(binary, registry_binary, layout)
        if prometheus:
            prometheus_url = dev_prometheus.start_prometheus(
                binary=ensure_prometheus(log=_say), layout=layout,
                warmpool_command=controlplane.warmpool_command(), log=_say,
            )
    except (ClusterError, BuildError, RegistryError, dev_prometheus.PrometheusError) as exc:
        _say(f"failed: {exc}")
        dev_prometheus.stop_prometheus(layout, log=_say)
        controlplane.stop_components(layout, log=_say)
        return 1
    _say(f"ready: API server {cluster.server}, kubeconfig {layout.kubeconfig}")
    _say(f"logs in {layout.logs}; kubectl: {binary} kubectl --kubeconfig {layout.kubeconfig} ...")
    if access is not None:
        _say_how_to_push(layout, access)
    if prometheus_url is not None:
        _say(f"Prometheus: {prometheus_url} (alerts: {prometheus_url}/api/v1/alerts)")
    _say(f"stop with: warmpool dev down --kubeconfig {layout.kubeconfig}")
    return 0


def down(*, kubeconfig: Path, state_dir: Path | None, keep_state: bool) -> int:
    layout = resolve_layout(kubeconfig, state_dir)
    if not layout.state_dir.exists():
        _say(f"nothing to stop: no state directory at {layout.state_dir}")
        return 1
    stopped = dev_prometheus.stop_prometheus(layout, log=_say) + controlplane.stop_components(layout, log=_say)
    if still := controlplane.running_components(layout):
        _say(f"failed to stop: {', '.join(still)} (see {layout.pids})")
        return 1
    if not keep_state:
        shutil.rmtree(dev_prometheus.files_of(layout).root, ignore_errors=True)
        controlplane.clear_state(layout)
        if state_dir_from_kubeconfig(_load(layout.kubeconfig)) == layout.state_dir:
            layout.kubeconfig.unlink(missing_ok=True)
    _say(f"stopped {len(stopped)} component(s)" + ("" if keep_state else f"; removed {layout.state_dir}"))
    return 0


def registry(*, kubeconfig: Path, state_dir: Path | None, as_json: bool) -> int:
    """Print the running dev registry's URL and login (the password only in --json)."""
    layout = resolve_layout(kubeconfig, state_dir)
    files = registry_files(layout)
    try:
        access = read_access(files)
    except RegistryError:
        _say(f"no registry recorded in {layout.state_dir}: start one with `warmpool dev up --kubeconfig "
             f"{layout.kubeconfig}` (without --no-registry)")
        return 1
    if not running(files):
        _say(f"the registry of {layout.state_dir} is not running (see {files.log})")
        return 1
    if as_json:
        print(json.dumps({"url": access.url, "username": access.username, "password": access.password}))
    else:
        print(f"url       {access.url}\nusername  {access.username}\npassword  in {files.credentials}\n"
              f"login     DOCKER_CONFIG={files.docker_config_dir}\npull secret  {PULL_SECRET} (namespace default)")
    return 0


def _load(path: Path) -> dict[str, object]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def node_agent(*, kubeconfig: Path, node_name: str, pods_dir: Path, cpu: str, memory: str, max_pods: int,
               backoff_s: float, verbose: bool) -> int:
    from kubernetes.config import ConfigException

    from warmpool.dev.agent.agent import NodeSettings, run_agent
    from warmpool.dev.agent.kubeapi import load_client
    from warmpool.dev.agent.runner import RunnerSettings

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        api_client = load_client(kubeconfig)
    except (OSError, ValueError, ConfigException) as exc:
        print(f"warmpool dev node-agent: cannot use {kubeconfig}: {exc}", file=sys.stderr)
        return 2
    settings = NodeSettings(name=node_name, pods_dir=pods_dir.absolute(), cpu=cpu, memory=memory,
                            max_pods=max_pods)
    runner_settings = RunnerSettings(host_ip=settings.host_ip, warmpool=tuple(controlplane.warmpool_command()),
                                     backoff_initial_s=backoff_s)
    asyncio.run(run_agent(settings, api_client, runner_settings))
    return 0


def prometheus_targets(*, kubeconfig: Path, state_dir: Path | None, period_s: float) -> int:
    layout = resolve_layout(kubeconfig, state_dir)
    return dev_prometheus.run_target_writer(
        kubeconfig=layout.kubeconfig, files=dev_prometheus.files_of(layout), operator_pid=layout.pid("operator"),
        period_s=period_s,
    )


def build(*, registry: bool = False, prometheus: bool = False) -> int:
    try:
        if prometheus:
            print(ensure_prometheus(log=_say))
            return 0
        print(ensure_registry(log=_say) if registry else ensure_kcluster(log=_say))
    except BuildError as exc:
        _say(f"failed: {exc}")
        return 1
    return 0


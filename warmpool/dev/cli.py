"""`warmpool dev ...`: start and stop the local control plane and its OCI registry, run the node agent, build."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_dev_commands(sub: Any) -> None:
    """Register `warmpool dev up|down|registry|node-agent|build`."""
    up = sub.add_parser(
        "up", help="start a local Kubernetes control plane, node agent and operator in the background",
        description="Build (or reuse) kcluster, start etcd, kube-apiserver, kube-controller-manager, "
                    "kube-scheduler and the node agent on 127.0.0.1, install the CRDs from crds/, run the "
                    "operator, start an OCI registry for modules (htpasswd login, stored under the state "
                    "directory with mode 0600, and as the Secret warmpool-dev-registry in namespace default), "
                    "and return once everything is ready.",
    )
    up.add_argument("--kubeconfig", type=Path, required=True, help="where to write the admin kubeconfig")
    up.add_argument("--state-dir", type=Path, help="state directory (default: a hidden sibling of the kubeconfig)")
    up.add_argument("--no-operator", action="store_true", help="do not run `warmpool operator run`")
    up.add_argument("--crds", type=Path, help="directory of CRD manifests (default: the repository's crds/)")
    up.add_argument("--no-registry", action="store_true",
                    help="do not build and start the OCI registry (127.0.0.1, htpasswd login) for modules")
    up.set_defaults(func=_up)

    registry = sub.add_parser("registry", help="show the URL and login of the OCI registry `warmpool dev up` started")
    registry.add_argument("--kubeconfig", type=Path, required=True, help="the kubeconfig `warmpool dev up` wrote")
    registry.add_argument("--state-dir", type=Path, help="state directory, if one was given to `up`")
    registry.add_argument("--json", action="store_true", help='print {"url", "username", "password"} as JSON')
    registry.set_defaults(func=_registry)

    down = sub.add_parser("down", help="stop everything `warmpool dev up` started and remove its state")
    down.add_argument("--kubeconfig", type=Path, required=True, help="the kubeconfig `warmpool dev up` wrote")
    down.add_argument("--state-dir", type=Path, help="state directory, if one was given to `up`")
    down.add_argument("--keep-state", action="store_true", help="keep the state directory (logs) after stopping")
    down.set_defaults(func=_down)

    agent = sub.add_parser("node-agent", help="run the local node agent in the foreground")
    agent.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig with a token user")
    agent.add_argument("--node-name", default="warmpool-dev-node", help="name of the Node to register")
    agent.add_argument("--pods-dir", type=Path, required=True, help="directory for per-pod files and logs")
    agent.add_argument("--cpu", default="32", help="CPU capacity to advertise (default 32)")
    agent.add_argument("--memory", default="64Gi", help="memory capacity to advertise (default 64Gi)")
    agent.add_argument("--max-pods", type=int, default=110, help="pod capacity to advertise (default 110)")
    agent.add_argument("--backoff-seconds", type=float, default=10.0,
                       help="initial crash-loop back-off, doubling up to 300s (default 10)")
    agent.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    agent.set_defaults(func=_node_agent)

    build = sub.add_parser("build", help="build (or find in the cache) the kcluster binary and print its path")
    build.add_argument("--registry", action="store_true", help="the OCI registry's binary instead of kcluster")
    build.set_defaults(func=_build)


def _up(args: argparse.Namespace) -> int:
    from warmpool.dev.commands import up

    return up(kubeconfig=args.kubeconfig, state_dir=args.state_dir, operator=not args.no_operator, crds=args.crds,
              registry=not args.no_registry)


def _registry(args: argparse.Namespace) -> int:
    from warmpool.dev.commands import registry

    return registry(kubeconfig=args.kubeconfig, state_dir=args.state_dir, as_json=args.json)


def _down(args: argparse.Namespace) -> int:
    from warmpool.dev.commands import down

    return down(kubeconfig=args.kubeconfig, state_dir=args.state_dir, keep_state=args.keep_state)


def _node_agent(args: argparse.Namespace) -> int:
    from warmpool.dev.commands import node_agent

    return node_agent(
        kubeconfig=args.kubeconfig, node_name=args.node_name, pods_dir=args.pods_dir, cpu=args.cpu,
        memory=args.memory, max_pods=args.max_pods, backoff_s=args.backoff_seconds, verbose=args.verbose,
    )


def _build(args: argparse.Namespace) -> int:
    from warmpool.dev.commands import build

    return build(registry=args.registry)

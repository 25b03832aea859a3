"""`warmpool operator ...`: run the kopf operator."""

from __future__ import annotations

import argparse
from typing import Any


def add_operator_commands(sub: Any) -> None:
    """Register `warmpool operator run`."""
    run = sub.add_parser(
        "run",
        help="reconcile WarmPool resources into runtime pods",
        description=(
            "Run the operator. Settings come from WARMPOOL_OPERATOR_* environment variables "
            "(see warmpool_operator.settings); the flags below override them."
        ),
    )
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch this namespace (repeat for several; a glob like 'team-*' works too)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--metrics-port", type=int, help="Prometheus metrics port (0 disables)")
    run.add_argument("--metrics-host", help="Prometheus metrics address")
    run.add_argument("--health-port", type=int, help="liveness endpoint port (0 disables)")
    run.add_argument("--health-host", help="liveness endpoint address")
    run.add_argument("--peering", dest="peering_name", help="peering object shared by operator replicas")
    run.add_argument("--priority", type=int, help="this replica's peering priority")
    run.add_argument("--standalone", action="store_true", default=None, help="ignore peering")
    run.add_argument(
        "--leader-election", action="store_true", default=None,
        help="elect one acting replica on a coordination.k8s.io Lease (replaces peering)",
    )
    run.add_argument("--lease-name", help="name of the leader election Lease")
    run.add_argument("--lease-namespace", help="namespace of the Lease (default: the pod's own)")
    run.add_argument(
        "--defaults", metavar="FILE", help="YAML file of cluster-wide WarmPool defaults (see docs/defaults.md)"
    )
    run.add_argument(
        "--log-format", choices=("json", "plain", "full"), default="json", help="log format (default json)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import os
    import sys

    try:
        import kopf

        from warmpool_operator.app import run_operator
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("warmpool"):
            raise
        print(f"warmpool operator: needs {exc.name}, which this installation lacks (the runtime image holds "
              "`warmpool runtime` only): run the operator image, or `pip install warmpool`", file=sys.stderr)
        return 2
    from warmpool_operator.settings import ENV_PREFIX, SettingsError, config_from_env

    env = dict(os.environ)
    if args.defaults is not None:  # the flag wins over both variables
        env.pop(f"{ENV_PREFIX}DEFAULTS", None)
        env[f"{ENV_PREFIX}DEFAULTS_FILE"] = args.defaults
    try:
        config = config_from_env(env)
    except SettingsError as exc:
        print(f"warmpool operator: {exc}", file=sys.stderr)
        return 2
    flags = ("metrics_port", "metrics_host", "health_port", "health_host", "peering_name", "priority", "standalone",
             "leader_election", "lease_name", "lease_namespace")
    overrides = {key: value for key in flags if (value := getattr(args, key)) is not None}
    config = dataclasses.replace(config, **overrides)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()], log_prefix=True)
    try:
        asyncio.run(
            run_operator(config, namespaces=tuple(args.namespaces or ()), clusterwide=bool(args.all_namespaces))
        )
    except kopf.LoginError as exc:
        print(f"warmpool operator: cannot reach the Kubernetes API: {exc}", file=sys.stderr)
        return 1
    return 0

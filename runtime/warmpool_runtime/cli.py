"""`warmpool runtime serve`: the command line of the data plane."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from warmpool_contract import DEFAULT_WARM_INSTANCES, HTTP_PORT, LOG_FORMAT_FLAG, LOG_FORMATS, WATCH_CONFIG_FLAG


def add_runtime_commands(sub: Any) -> None:
    """Register `warmpool runtime serve`."""
    serve = sub.add_parser(
        "serve", help="serve warm pools of Wasm instances over HTTP",
        description="Serve the tuples of a config file (--config), or one tuple given by flags. On SIGTERM, "
                    "readiness fails at once, requests are served for settings.drainSeconds more, then the "
                    "process stops accepting, finishes what is in progress and exits 0 within "
                    "settings.shutdownTimeoutSeconds (docs/runtime-config.md).",
    )
    serve.add_argument("--config", help="runtime config file (YAML or JSON; see docs/runtime-config.md)")
    serve.add_argument(WATCH_CONFIG_FLAG, dest="watch_config", action="store_true",
                       help="apply changes of the --config file live (tuples added, removed, resized; a mounted "
                            "ConfigMap's updates included); the pod is then Ready once the tuples it started "
                            "with are warm or failed (at most settings.startupGraceSeconds after the start), then "
                            "while it serves, whatever state later tuples are in (see /readyz)")
    serve.add_argument("--tenant", help="one-tuple mode: the tenant (DNS-1123 label)")
    serve.add_argument("--module", help="one-tuple mode: module file path or http(s) URL")
    serve.add_argument("--sha256", help="one-tuple mode: the module's sha256 (64 lowercase hex)")
    serve.add_argument("--warm", type=int, default=DEFAULT_WARM_INSTANCES,
                       help=f"one-tuple mode: warm instances (default {DEFAULT_WARM_INSTANCES}, 0 = off)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0; last one wins)")
    serve.add_argument("--port", type=int, default=HTTP_PORT, help=f"port to listen on (default {HTTP_PORT})")
    serve.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    serve.add_argument(LOG_FORMAT_FLAG, dest="log_format", choices=LOG_FORMATS, default="text",
                       help="log lines as text or as one JSON object each (default text)")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from warmpool_runtime.app import run_server
    from warmpool_runtime.config import ConfigError, load_config, single_tuple_config

    try:
        if args.config:
            if args.tenant or args.module or args.sha256:
                raise ConfigError("give either --config or --tenant/--module/--sha256, not both")
            config = load_config(args.config)
        else:
            if args.watch_config:
                raise ConfigError(f"{WATCH_CONFIG_FLAG} needs --config")
            missing = [f"--{n}" for n in ("tenant", "module", "sha256") if not getattr(args, n)]
            if missing:
                raise ConfigError(f"without --config, {', '.join(missing)} must be given")
            config = single_tuple_config(args.tenant, args.module, args.sha256, args.warm)
    except ConfigError as exc:
        print(f"warmpool runtime: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return run_server(config, args.host, args.port, args.log_level,
                      watch=args.config if args.watch_config else None, log_format=args.log_format)

"""`warmpool module push|inspect`: the argument parsers (handlers import lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from warmpool_contract import DEFAULT_MAX_MODULE_BYTES


def _login_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--insecure", action="store_true",
                        help="plain HTTP (a registry on loopback without TLS, e.g. `warmpool dev up`'s)")
    parser.add_argument("--username", help="registry user (the password comes from --password-stdin)")
    parser.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    parser.add_argument("--docker-config", type=Path, metavar="FILE",
                        help="docker config.json with the login (default: $DOCKER_CONFIG/config.json, "
                             "else ~/.docker/config.json)")


def add_module_commands(sub: Any) -> None:
    """Register `warmpool module push|inspect`."""
    push = sub.add_parser(
        "push", help="push a .wasm module to an OCI registry and print a WarmPool that uses it",
        description="Push FILE as a CNCF Wasm OCI artifact (config application/vnd.wasm.config.v0+json, one "
                    "application/wasm layer) to REPOSITORY[:TAG] (default tag: latest), then print a WarmPool "
                    "manifest pinning the module by sha256 and the manifest by digest. Credentials come from "
                    "--username/--password-stdin or a docker config.json, as with docker, helm and oras.",
    )
    push.add_argument("file", type=Path, metavar="FILE.wasm", help="the module to push")
    push.add_argument("target", metavar="REPOSITORY[:TAG]", help="e.g. ghcr.io/acme/classify:v1")
    push.add_argument("--tenant", default="default", help="spec.tenant of the printed WarmPool (default: default)")
    push.add_argument("--name", help="metadata.name of the printed WarmPool (default: the repository's last part)")
    push.add_argument("--pull-secret", metavar="NAME",
                      help="a kubernetes.io/dockerconfigjson Secret the runtime pulls with (spec...oci.pullSecretRef)")
    _login_arguments(push)
    push.set_defaults(func=_push)

    inspect = sub.add_parser(
        "inspect", help="show a module's digest, size, exports and imports, and the ABI functions it offers",
        description="REF is a local .wasm file or an OCI reference (REPOSITORY[:TAG] or REPOSITORY@sha256:...).",
    )
    inspect.add_argument("target", metavar="REF", help="a .wasm file, or host[:port]/path[:tag|@sha256:...]")
    inspect.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_MODULE_BYTES,
                         help=f"refuse modules larger than this (default {DEFAULT_MAX_MODULE_BYTES})")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    _login_arguments(inspect)
    inspect.set_defaults(func=_inspect)


def _login(args: argparse.Namespace) -> Any:
    from warmpool.module.commands import Login

    return Login(username=args.username, password_stdin=args.password_stdin, docker_config=args.docker_config)


def _push(args: argparse.Namespace) -> int:
    from warmpool.module.commands import push

    return push(file=args.file, target=args.target, tenant=args.tenant, name=args.name, insecure=args.insecure,
                pull_secret=args.pull_secret, login=_login(args))


def _inspect(args: argparse.Namespace) -> int:
    from warmpool.module.commands import inspect

    return inspect(target=args.target, insecure=args.insecure, login=_login(args), max_bytes=args.max_bytes,
                   as_json_output=args.json)

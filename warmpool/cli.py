"""The `warmpool` command: one argparse tree whose branches each package registers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from warmpool.dev import cli as dev_cli
from warmpool.module import cli as module_cli
from warmpool_lab import cli as lab_cli
from warmpool_lab.runtime_bench import cli as runtime_bench_cli
from warmpool_operator import cli as operator_cli
from warmpool_runtime import cli as runtime_cli


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; each package adds its own subcommands (handlers import lazily)."""
    parser = argparse.ArgumentParser(
        prog="warmpool",
        description="Warm pools of WebAssembly instances per tenant, on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"warmpool {installed_version()}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runtime = top.add_parser("runtime", help="the wasmtime data plane")
    runtime_cli.add_runtime_commands(runtime.add_subparsers(dest="runtime_command", required=True))

    operator = top.add_parser("operator", help="the Kubernetes operator")
    operator_cli.add_operator_commands(operator.add_subparsers(dest="operator_command", required=True))

    lab_cli.add_simulate_command(top)

    bench = top.add_parser("bench", help="benchmarks (ratios against baselines measured in the same run)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    runtime_bench_cli.add_bench_commands(bench_sub)
    lab_cli.add_bench_commands(bench_sub)

    module = top.add_parser("module", help="ship Wasm modules as OCI artifacts and look inside them")
    module_cli.add_module_commands(module.add_subparsers(dest="module_command", required=True))

    dev = top.add_parser("dev", help="a local Kubernetes control plane for development and tests")
    dev_cli.add_dev_commands(dev.add_subparsers(dest="dev_command", required=True))
    return parser


def installed_version() -> str:
    """The installed distribution's version (`unknown` when run from a tree that was never installed)."""
    try:
        return version("warmpool")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fleet_code = lab_cli.run_fleet_command(argv)
    if fleet_code is not None:
        return fleet_code
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

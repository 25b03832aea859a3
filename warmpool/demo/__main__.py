"""`python -m warmpool.demo [--runtime-only] [--keep] [--out DIR] [--module-source oci|configmap] [--no-fleet]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m warmpool.demo", description=__doc__)
    parser.add_argument("--runtime-only", action="store_true", help="only the runtime, no cluster (seconds)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="where to write demo.png")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".state" / "demo", help="cluster state")
    parser.add_argument("--module-source", choices=("oci", "configmap"), default="oci",
                        help="push the example module to the local OCI registry and let the runtime pull it "
                             "(default), or ship it in a ConfigMap")
    parser.add_argument("--no-fleet", action="store_true",
                        help="skip the second scene (a RuntimeFleet of eight tenants, about 3 minutes)")
    return parser


def main() -> int:
    args = parser().parse_args()
    if args.runtime_only:
        from warmpool.demo.runtime_demo import runtime_demo

        return runtime_demo()
    from warmpool.demo.cluster_demo import run

    return run(args.state_dir, args.out, args.keep, module_source=args.module_source, fleet=not args.no_fleet)


if __name__ == "__main__":
    sys.exit(main())

"""Copies crds/*.yaml (the single source of truth) into the chart's files/crds/; `--check` only compares.

The chart renders every file there through templates/crds.yaml (values `crds.install`, `crds.keep`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds"
TARGET = ROOT / "charts" / "warmpool-operator" / "files" / "crds"


def differences(source_dir: Path = SOURCE, target_dir: Path = TARGET) -> list[str]:
    """Files missing, extra or different in the chart's copy; [] when it is in sync."""
    source = {p.name: p.read_bytes() for p in source_dir.glob("*.yaml")}
    target = {p.name: p.read_bytes() for p in target_dir.glob("*.yaml")} if target_dir.exists() else {}
    out = [f"missing in the chart: {name}" for name in sorted(source.keys() - target.keys())]
    out += [f"not in crds/: {name}" for name in sorted(target.keys() - source.keys())]
    out += [f"differs: {name}" for name in sorted(source.keys() & target.keys()) if source[name] != target[name]]
    return out


def sync(source_dir: Path = SOURCE, target_dir: Path = TARGET) -> list[str]:
    """Make the chart's copy byte-identical; returns what changed."""
    changed = differences(source_dir, target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for stale in target_dir.glob("*.yaml"):
        if not (source_dir / stale.name).exists():
            stale.unlink()
    for crd in source_dir.glob("*.yaml"):
        (target_dir / crd.name).write_bytes(crd.read_bytes())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip())
    parser.add_argument("--check", action="store_true", help="exit 1 when the chart's CRDs are out of sync")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for change in sync():
        print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What each image target installs, measured from the installed distributions: `python -m tools.image_size`.

A target is the project's wheel plus the requirement closure of its requirements/ files (Requires-Dist followed,
markers and extras evaluated), each distribution weighed by the files its RECORD lists (bytecode included),
minus what the target's prune rules delete. pip, setuptools and wheel come with the base image and are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import marshal
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.image_prune import OPERATOR_IMAGE_RULES, Rule, parse_rules, pruned, read_rules

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
PROJECT = "warmpool"
BASE_IMAGE = frozenset({"pip", "setuptools", "wheel"})
"""What python:3.11-slim already holds; no target adds it."""
LIMIT_MB = 70.0


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    requirement_files: tuple[str, ...]
    """Files of requirements/ (their stems) the target installs: the Dockerfile's stage installs the same."""
    rules: tuple[Rule, ...] = ()


def targets() -> tuple[Target, ...]:
    """The Dockerfile's two final stages."""
    return (
        Target("runtime", ("common", "runtime")),
        Target("operator", ("common", "operator"), read_rules(OPERATOR_IMAGE_RULES)),
    )


def before() -> Target:
    """The single image the two targets replace: every dependency, only the Kubernetes client's asyncio copy deleted."""
    return Target("single image (before)", all_requirement_files(), parse_rules("kubernetes/aio"))


def all_requirement_files() -> tuple[str, ...]:
    """The files pyproject.toml makes the package's dependencies, in its order."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files: list[str] = pyproject["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    return tuple(Path(file).stem for file in files)


def read_requirements(stem: str) -> list[Requirement]:
    lines = (REQUIREMENTS / f"{stem}.txt").read_text().splitlines()
    return [Requirement(line.split("#", 1)[0].strip()) for line in lines if line.split("#", 1)[0].strip()]


def requirements(target: Target) -> list[Requirement]:
    """What the target's requirement files ask for, in their order."""
    return [req for stem in target.requirement_files for req in read_requirements(stem)]


def closure(requirements: Iterable[Requirement]) -> dict[str, Distribution]:
    """Every installed distribution the requirements pull in (markers and extras evaluated), by canonical name."""
    found: dict[str, Distribution] = {}
    seen: set[tuple[str, str]] = set()
    pending: list[tuple[Requirement, str]] = [(req, "") for req in requirements]
    environment = {key: str(value) for key, value in default_environment().items()}
    while pending:
        req, extra = pending.pop()
        if req.marker is not None and not req.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        extras = sorted(req.extras)
        if name in found and all((name, e) in seen for e in ["", *extras]):
            continue
        try:
            dist = found.get(name) or distribution(name)
        except PackageNotFoundError as exc:
            raise SystemExit(f"{req.name} is not installed here: pip install -e '.[dev]' first") from exc
        found[name] = dist
        for wanted in ["", *extras]:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            pending.extend((Requirement(line), wanted) for line in dist.requires or [])
    return found


def distribution_bytes(dist: Distribution, rules: Sequence[Rule]) -> int:
    """The sizes on disk of the files the distribution's RECORD lists, less the pruned ones."""
    total = 0
    for file in dist.files or []:
        if pruned(file.as_posix(), rules):
            continue
        located = Path(str(dist.locate_file(file)))
        if located.is_file():
            total += located.stat().st_size
    return total


def project_bytes() -> int:
    """The project's wheel as installed: its package sources and data, and the bytecode pip compiles for them.

    Measured from the tree (an editable install's RECORD lists no package files).
    """
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data_globs: list[str] = setuptools["package-data"]["*"]
    total = 0
    for folder in setuptools["package-dir"].values():
        for file in (ROOT / folder).rglob("*"):
            if not file.is_file() or "__pycache__" in file.parts:
                continue
            if file.suffix == ".py":
                source = file.read_bytes()
                code = compile(source, str(file), "exec", dont_inherit=True)
                total += len(source) + len(importlib.util.MAGIC_NUMBER) + 12 + len(marshal.dumps(code))
            elif any(file.match(glob) for glob in data_globs):
                total += file.stat().st_size
    return total


def absent_rules(target: Target) -> tuple[Rule, ...]:
    """Prune rules that make this environment look like the target's image, for an import blocker: the top-level
    modules of every installed distribution the image lacks, then the target's own prune rules."""
    kept = {*closure(requirements(target)), *BASE_IMAGE, PROJECT}
    absent = sorted(
        top for top, dists in packages_distributions().items()
        if not any(canonicalize_name(dist) in kept for dist in dists)
    )
    return (*(Rule(pattern, keep=False) for top in absent for pattern in (top, f"{top}.*")), *target.rules)


def measure(target: Target) -> dict[str, int]:
    """Bytes per distribution (the project first, then the largest), pip/setuptools/wheel left out."""
    dists = {name: dist for name, dist in closure(requirements(target)).items() if name not in BASE_IMAGE}
    sizes = {name: distribution_bytes(dist, target.rules) for name, dist in dists.items()}
    return {PROJECT: project_bytes(), **dict(sorted(sizes.items(), key=lambda item: (-item[1], item[0])))}


def megabytes(size: int) -> float:
    return size / 1e6


def table(measured: Mapping[str, Mapping[str, int]]) -> str:
    """One column per target, one row per distribution, MB, with the totals last."""
    names = list(dict.fromkeys(name for sizes in measured.values() for name in sizes))
    names.sort(key=lambda name: -max(sizes.get(name, 0) for sizes in measured.values()))
    width = max(len(name) for name in [*names, "total"])
    heads = list(measured)
    lines = ["MB".ljust(width) + "".join(f"  {head:>22}" for head in heads)]
    for name in names:
        cells = [measured[head].get(name) for head in heads]
        lines.append(name.ljust(width) + "".join(f"  {'-' if c is None else f'{megabytes(c):.1f}':>22}" for c in cells))
    totals = [sum(measured[head].values()) for head in heads]
    lines.append("total".ljust(width) + "".join(f"  {megabytes(t):>22.1f}" for t in totals))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.image_size", description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB, help="exit 1 when a target is larger")
    args = parser.parse_args(argv)
    measured = {target.name: measure(target) for target in (before(), *targets())}
    print(table(measured))
    over = [t.name for t in targets() if megabytes(sum(measured[t.name].values())) > args.limit_mb]
    if over:
        print(f"over {args.limit_mb:g} MB: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

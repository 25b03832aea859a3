"""Prune rules (.gitignore-like globs over site-packages paths): apply them to an install, or block their modules.

Standard library only: the Dockerfile runs this file as a script in the image, before anything else is there.
`python image_prune.py RULES [SITE_PACKAGES]` deletes what RULES match and prints the bytes it freed.
"""

from __future__ import annotations

import fnmatch
import importlib.abc
import importlib.machinery
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

OPERATOR_IMAGE_RULES = Path(__file__).with_name("operator-image.prune")
"""What the operator image deletes; the one list the Dockerfile, the size report and the tests read."""


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    keep: bool


def parse_rules(text: str) -> tuple[Rule, ...]:
    """One pattern a line; `#` comments and blank lines skipped; `!pattern` keeps."""
    rules: list[Rule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        if not pattern or pattern.startswith("..") or "\\" in pattern:
            raise ValueError(f"bad prune pattern: {raw!r}")
        rules.append(Rule(pattern, keep))
    return tuple(rules)


def read_rules(path: Path = OPERATOR_IMAGE_RULES) -> tuple[Rule, ...]:
    return parse_rules(path.read_text())


def pruned(path: str, rules: Sequence[Rule]) -> bool:
    """Whether `path` (relative to site-packages, `/`-separated) goes: the last rule matching it or a parent decides."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for rule in rules:
        if any(fnmatch.fnmatchcase(prefix, rule.pattern) for prefix in prefixes):
            verdict = not rule.keep
    return verdict


def prune(site_packages: Path, rules: Sequence[Rule]) -> int:
    """Delete every file the rules match under `site_packages`, then the directories left empty; the bytes freed."""
    freed = 0
    for top in sorted({rule.pattern.split("/", 1)[0] for rule in rules if not rule.keep}):
        for candidate in site_packages.glob(top):
            for dirpath, _dirs, files in os.walk(candidate):
                for name in files:
                    file = Path(dirpath, name)
                    if pruned(file.relative_to(site_packages).as_posix(), rules):
                        freed += file.lstat().st_size
                        file.unlink()
            for dirpath, _dirs, _files in sorted(os.walk(candidate), key=lambda step: -len(step[0])):
                if not os.listdir(dirpath) and Path(dirpath) != candidate:
                    os.rmdir(dirpath)
            if candidate.is_dir() and not any(candidate.iterdir()):
                shutil.rmtree(candidate)
    return freed


def module_path(name: str, origin: str | None) -> str:
    """Where module `name` sits relative to its sys.path entry, from the file it loads (`a/b/__init__.py`, `a/b.py`)."""
    base = name.replace(".", "/")
    if origin is None or origin in ("built-in", "frozen"):
        return base
    file = Path(origin).name
    if file.startswith("__init__."):
        return f"{base}/{file}"
    suffix = file[file.index(".") :] if "." in file else ""
    return base + suffix


class PruneBlocker(importlib.abc.MetaPathFinder):
    """Wraps the import system's finders and finds nothing the rules would delete, as if its files were gone.

    `import` then raises ModuleNotFoundError and `importlib.util.find_spec` answers None, as in the image.
    """

    def __init__(self, rules: Sequence[Rule], finders: Sequence[object],
                 report: Callable[[str], object] | None = None) -> None:
        self.rules = tuple(rules)
        self.report = report
        self.finders = tuple(finders)
        self.tops = {rule.pattern.split("/", 1)[0] for rule in self.rules}
        self.refused: list[str] = []
        """The modules asked for and not found because of the rules, in order (probes of optional ones too)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in self.finders:
            find = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        top = fullname.split(".", 1)[0]
        if any(fnmatch.fnmatchcase(top, pattern) for pattern in self.tops) and pruned(
            module_path(fullname, spec.origin), self.rules
        ):
            self.refused.append(fullname)
            if self.report is not None:
                self.report(fullname)
            return None
        return spec

    def find_distributions(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Installed distributions' metadata (importlib.metadata asks sys.meta_path), all of it: only modules hide."""
        for finder in self.finders:
            find = getattr(finder, "find_distributions", None)
            if find is not None:
                yield from find(*args, **kwargs)

    def invalidate_caches(self) -> None:
        for finder in self.finders:
            invalidate = getattr(finder, "invalidate_caches", None)
            if invalidate is not None:
                invalidate()


def install_blocker(rules: Iterable[Rule], report: Callable[[str], object] | None = None) -> PruneBlocker:
    """Put a blocker in place of sys.meta_path's finders (modules already imported stay); `report` hears of
    each module it hides."""
    blocker = PruneBlocker(tuple(rules), tuple(sys.meta_path), report)
    sys.meta_path[:] = [blocker]
    return blocker


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: image_prune.py RULES [SITE_PACKAGES]", file=sys.stderr)
        return 2
    site = Path(argv[1]) if len(argv) == 2 else Path(sysconfig.get_paths()["purelib"])
    freed = prune(site, read_rules(Path(argv[0])))
    print(f"pruned {freed / 1e6:.1f} MB from {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

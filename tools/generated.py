"""The shared command line of the generators: write the file, or with `--check` only say whether it is stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generator_main(argv: list[str] | None, *, doc: str | None, output: Path, render: Callable[[], str],
                   tool: str) -> int:
    """Run a generator of one file: `python -m tools.<tool> [--check]`; exit 1 from `--check` when stale."""
    parser = argparse.ArgumentParser(description=(doc or "").strip())
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not output.exists() or output.read_text() != text
        if stale:
            print(f"{output.relative_to(ROOT)} is stale: run python -m tools.{tool}", file=sys.stderr)
        return 1 if stale else 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output.relative_to(ROOT)}")
    return 0

"""docs/reliability.md names only tests that exist: each `tests/...py::name` is a test function of that file."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)(\[[^\]`]*\])?")
"""`path::test_name`, optionally followed by a parametrized id in brackets (checked by name only)."""


def references(text: str) -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2)) for match in REFERENCE.finditer(text)]


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """Names of the `test_*` functions (def or async def) a test file defines, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"))


def test_references_are_parsed_with_or_without_a_parametrized_id() -> None:
    text = ("`tests/a/test_x.py::test_one` and `tests/e2e/test_y.py::test_two[case-1]`, "
            "then tests/b/test_z.py::test_three.")
    assert references(text) == [("tests/a/test_x.py", "test_one"), ("tests/e2e/test_y.py", "test_two"),
                                ("tests/b/test_z.py", "test_three")]


def test_every_test_the_page_names_exists() -> None:
    found = references(PAGE.read_text())
    assert len(found) >= 100, "the page names far fewer tests than expected: is the reference pattern right?"
    missing = []
    for relative, name in found:
        path = ROOT / relative
        if not path.is_file():
            missing.append(f"{relative}::{name} (no such file)")
        elif name not in defined_tests(path):
            missing.append(f"{relative}::{name} (no such test function)")
    assert not missing, "docs/reliability.md names tests that do not exist:\n" + "\n".join(missing)


def test_every_reference_names_a_tier() -> None:
    tiers = re.compile(r"\((unit|component|e2e)\)")
    for line in PAGE.read_text().splitlines():
        if line.startswith("|") and references(line):
            assert tiers.search(line), f"a row without its tier: {line[:120]}"

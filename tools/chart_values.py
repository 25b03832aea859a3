"""Writes the values table of the chart README from values.yaml's `# --` comments; `--check` exits 1 when stale."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools.generated import generator_main

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "warmpool-operator"
README = CHART / "README.md"
BEGIN, END = "<!-- values:begin (python -m tools.chart_values) -->", "<!-- values:end -->"


@dataclass(frozen=True, slots=True)
class Value:
    path: str
    default: Any
    description: str


def comment_above(lines: list[str], line: int) -> str:
    """The `# --` comment block right above a key (its continuation lines included), as one line."""
    block: list[str] = []
    above = line - 1
    while above >= 0 and lines[above].strip().startswith("#"):
        text = lines[above].strip().lstrip("#").strip()
        block.insert(0, text)
        if text.startswith("--"):
            return " ".join(block).removeprefix("--").strip()
        above -= 1
    return ""


def leaves(node: yaml.Node, schema: Mapping[str, Any], lines: list[str], prefix: str = "") -> Iterator[Value]:
    """Every value the schema treats as one (a key whose schema has no `properties`), in file order."""
    if not isinstance(node, yaml.MappingNode):
        raise ValueError(f"{prefix or '<root>'}: expected a mapping")
    for key, value in node.value:
        path = f"{prefix}.{key.value}" if prefix else str(key.value)
        child = (schema.get("properties") or {}).get(key.value)
        if child is None:
            raise ValueError(f"{path}: not in values.schema.json")
        if "properties" in child and isinstance(value, yaml.MappingNode):
            yield from leaves(value, child, lines, path)
            continue
        default = yaml.safe_load(yaml.serialize(value))
        yield Value(path, default, comment_above(lines, key.start_mark.line))


def values(chart: Path = CHART) -> list[Value]:
    text = (chart / "values.yaml").read_text()
    schema = json.loads((chart / "values.schema.json").read_text())
    root = yaml.compose(text)
    return list(leaves(root, schema, text.splitlines())) if root is not None else []


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(found: list[Value]) -> str:
    lines = ["| value | default | description |", "| --- | --- | --- |"]
    for value in found:
        default = json.dumps(value.default, separators=(", ", ": "))
        lines.append(f"| `{value.path}` | `{cell(default)}` | {cell(value.description)} |")
    return "\n".join(lines)


def render(readme: str, found: list[Value]) -> str:
    """The README with the text between the markers replaced by the table."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{README.name} lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{table(found)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    return generator_main(argv, doc=__doc__, output=README, tool="chart_values",
                          render=lambda: render(README.read_text(), values()))


if __name__ == "__main__":
    sys.exit(main())

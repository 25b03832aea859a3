"""A small Dockerfile reader for the packaging tests: stages, instructions, exec-form arguments."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    """Upper-case instruction name (FROM, RUN, ...)."""
    value: str
    """Everything after the keyword, continuation lines joined."""

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT/CMD/RUN; a shell-form value is refused."""
        parsed = json.loads(self.value)
        if not isinstance(parsed, list) or not all(isinstance(part, str) for part in parsed):
            raise ValueError(f"{self.keyword} is not an exec-form array of strings: {self.value}")
        return parsed


@dataclass(slots=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def last(self, keyword: str) -> Instruction | None:
        found = [ins for ins in self.instructions if ins.keyword == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]


def bind_mounts(run: Instruction) -> list[dict[str, str]]:
    """The `--mount=type=bind,...` options of a RUN, each as its key=value pairs."""
    mounts = []
    for word in run.value.split():
        if not word.startswith("--mount="):
            continue
        options = dict(part.split("=", 1) for part in word.removeprefix("--mount=").split(","))
        if options.get("type") == "bind":
            mounts.append(options)
    return mounts


def stage_named(stages: list[Stage], name: str) -> Stage:
    (found,) = [stage for stage in stages if stage.name == name]
    return found


def logical_lines(text: str) -> list[str]:
    """Join backslash continuations; drop comments, parser directives and blank lines."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def read_stages(path: Path) -> tuple[list[Instruction], list[Stage]]:
    """(global instructions before the first FROM, stages in order)."""
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        ins = Instruction(keyword.upper(), value.strip())
        if ins.keyword == "FROM":
            words = ins.value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            preamble.append(ins)
    return preamble, stages

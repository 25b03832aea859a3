"""The user docs stay true to the code: generated reference, every metric, every error and reason, working links."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.metrics_catalogue import catalogue

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OPERATOR = ROOT / "operator" / "warmpool_operator"
TROUBLESHOOTING = (DOCS / "troubleshooting.md").read_text()


def test_reference_is_generated_from_the_crd() -> None:
    from tools.crd_reference import main

    assert main(["--check"]) == 0, "run python -m tools.crd_reference"


def crd_paths(schema: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, child in (schema.get("properties") or {}).items():
        yield f"{prefix}.{name}"
        yield from crd_paths(child, f"{prefix}.{name}")
        items = child.get("items")
        if isinstance(items, dict):
            yield from crd_paths(items, f"{prefix}.{name}[]")


def test_reference_lists_every_field_of_the_crd() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "warmpools.tensorwasm.dev.yaml").read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    reference = (DOCS / "reference-warmpool.md").read_text()
    paths = [*crd_paths(root["properties"]["spec"], "spec"), *crd_paths(root["properties"]["status"], "status")]
    assert len(paths) > 40
    missing = [path for path in paths if f"| `{path}` |" not in reference]
    assert missing == []


def metric_rows(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """`| name | type | labels | meaning |` rows of the Runtime and Operator tables."""
    rows = {}
    for match in re.finditer(r"^\| `([a-z_]+)` \| (counter|gauge|histogram) \| ([^|]*) \|", text, re.MULTILINE):
        labels = tuple(re.findall(r"`([a-z_]+)`", match.group(3)))
        rows[match.group(1)] = (match.group(2), labels)
    return rows


def test_metrics_doc_lists_every_exported_metric_with_its_type_and_labels() -> None:
    rows = metric_rows((DOCS / "metrics.md").read_text())
    expected = {metric.exposed: (metric.type, metric.labels) for metric in catalogue()}
    assert len(expected) >= 14
    assert rows == expected


def runtime_error_codes() -> set[str]:
    from warmpool_runtime import errors

    codes = {"internal"}
    pending: list[type[errors.RuntimeFault]] = [errors.RuntimeFault]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not errors.RuntimeFault and cls is not errors.ModuleError:
            codes.add(cls.code)
    return codes


def test_troubleshooting_explains_every_runtime_error_code() -> None:
    from warmpool_operator.readyz import ERROR_REASONS

    codes = runtime_error_codes() | set(ERROR_REASONS)
    assert {"guest_trap", "module_hash_mismatch", "not_ready"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in TROUBLESHOOTING)
    assert missing == []


def constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def reason_literals(node: ast.AST) -> Iterator[str | None]:
    """String literals in the places a reason is written: Problem(reason, ...), Cond(_, reason, _),
    Notice(_, reason, _), `step = "..."`, `reason="..."` and the ERROR_REASONS fallback."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        position = {"Problem": 0, "Cond": 1, "Notice": 1}.get(node.func.id)
        if position is not None and len(node.args) > position:
            yield constant(node.args[position])
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "step" for t in node.targets):
        yield constant(node.value)
    if isinstance(node, ast.keyword) and node.arg == "reason":
        yield constant(node.value)
    if (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "ERROR_REASONS" and len(node.args) == 2
    ):
        yield constant(node.args[1])


def operator_reasons() -> set[str]:
    """Condition and Event reasons the operator can write, read from its source."""
    from warmpool_operator.readyz import ERROR_REASONS

    reasons = set(ERROR_REASONS.values())
    for path in [*OPERATOR.glob("*.py"), *OPERATOR.glob("scaling/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            reasons.update(r for r in reason_literals(node) if r is not None)
    return reasons


def test_troubleshooting_explains_every_condition_reason_the_operator_writes() -> None:
    reasons = operator_reasons()
    # The scan finds what the operator really writes (a sample of each kind).
    assert {"ConfigMapMissing", "InvalidSpec", "CrashLoopBackOff", "ModuleHashMismatch", "ModuleFailed",
            "PoolWarm", "Prewarming", "RolledOut", "Recovered"} <= reasons
    missing = sorted(reason for reason in reasons if f"`{reason}`" not in TROUBLESHOOTING)
    assert missing == []


def test_troubleshooting_quotes_every_message_the_crd_validation_can_give() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "warmpools.tensorwasm.dev.yaml").read_text())

    def messages(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or []:
                yield " ".join(str(rule["message"]).split())
            for child in node.values():
                yield from messages(child)
        elif isinstance(node, list):
            for child in node:
                yield from messages(child)

    found = list(messages(crd))
    assert len(found) > 10
    missing = [message for message in found if f"`{message}`" not in TROUBLESHOOTING]
    assert missing == []


def test_troubleshooting_explains_every_alert() -> None:
    text = (ROOT / "charts" / "warmpool-operator" / "templates" / "monitoring-prometheusrule.yaml").read_text()
    names = re.findall(r"- alert: (\w+)", text)
    assert len(names) == 5
    assert [name for name in names if f"`{name}`" not in TROUBLESHOOTING] == []


def test_troubleshooting_quotes_the_operators_own_error_messages() -> None:
    cli = (OPERATOR / "cli.py").read_text()
    for message in ("warmpool operator: cannot reach the Kubernetes API",):
        assert message in cli
        assert message in TROUBLESHOOTING
    assert "warmpool runtime: invalid configuration" in (ROOT / "runtime" / "warmpool_runtime" / "cli.py").read_text()
    assert "warmpool runtime: invalid configuration" in TROUBLESHOOTING


@pytest.mark.parametrize("page", ["gitops.md", "metrics.md", "troubleshooting.md", "reference-warmpool.md"])
def test_relative_links_resolve(page: str) -> None:
    text = (DOCS / page).read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    broken = [link for link in local if not (DOCS / link).exists()]
    assert broken == []

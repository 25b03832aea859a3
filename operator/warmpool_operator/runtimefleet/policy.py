"""Which WarmPools a RuntimeFleet admits: its namespace policy and its token requirement (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from warmpool_operator.runtimefleet.spec import From, LabelSelector, Requirement, RuntimeFleet


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: every matchLabels pair and every requirement hold."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    return all(_holds(req, labels) for req in selector.match_expressions)


def _holds(req: Requirement, labels: Mapping[str, str]) -> bool:
    if req.operator == "Exists":
        return req.key in labels
    if req.operator == "DoesNotExist":
        return req.key not in labels
    if req.operator == "In":
        return labels.get(req.key) in req.values
    return labels.get(req.key) not in req.values  # NotIn: a missing key matches, as in Kubernetes


def describe_selector(selector: LabelSelector) -> str:
    """`{team: a}`, `{team: a, env in (prod, stage)}`: a selector as a short phrase for messages."""
    parts = [f"{key}: {value}" for key, value in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        if req.operator in ("In", "NotIn"):
            parts.append(f"{req.key} {'in' if req.operator == 'In' else 'notin'} ({', '.join(req.values)})")
        elif req.operator == "Exists":
            parts.append(f"{req.key} exists")
        else:
            parts.append(f"{req.key} absent")
    return "{" + ", ".join(parts) + "}"


def namespace_refusal(
    fleet: RuntimeFleet, namespace: str, namespace_labels: Mapping[str, str] | None
) -> str | None:
    """None when the fleet admits WarmPools of `namespace`, else why not (naming the policy).

    `namespace_labels` None means the namespace could not be read (then a Selector admits nothing).
    """
    allowed = fleet.spec.allowed
    if allowed.source is From.ALL:
        return None
    if allowed.source is From.SAME:
        if namespace == fleet.meta.namespace:
            return None
        return (f"RuntimeFleet {fleet.where} admits WarmPools from its own namespace only "
                f"(allowedPools.namespaces.from: Same); namespace {namespace} is another")
    assert allowed.selector is not None  # the parser requires it with Selector
    if namespace_labels is not None and selector_matches(allowed.selector, namespace_labels):
        return None
    unreadable = " (its labels could not be read)" if namespace_labels is None else ""
    return (f"RuntimeFleet {fleet.where} admits WarmPools from namespaces matching "
            f"{describe_selector(allowed.selector)}; namespace {namespace} does not match{unreadable}")

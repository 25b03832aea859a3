"""Per-tuple states in a fleet pod's `GET /readyz` body, and a member's standing across the pods (pure).

Each tuple entry names its tenant and module (the full sha256 or its short prefix), a state
(`loading`, `warm` or `failed`), its warm count and, when failed, a reason. Bodies written before
the `state` field existed (`ready` and `error` per tuple) are read too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warmpool_contract import SHORT_HASH

LOADING, WARM, FAILED = "loading", "warm", "failed"
MAX_REASON = 512


@dataclass(frozen=True, slots=True)
class TupleReport:
    tenant: str
    module: str
    """The module's sha256 or a prefix of it (at least SHORT_HASH characters)."""
    state: str
    warm: int
    reason: str = ""

    def is_for(self, tenant: str, sha256: str) -> bool:
        return self.tenant == tenant and len(self.module) >= SHORT_HASH and sha256.startswith(self.module)


def parse_tuple_states(body: Any) -> tuple[TupleReport, ...]:
    """The tuples of a readyz body; entries that are not the documented shape are skipped."""
    raw = body.get("tuples") if isinstance(body, Mapping) else None
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("tenant"), str):
            continue
        module = item.get("sha256", item.get("module"))
        if not isinstance(module, str):
            continue
        warm = item.get("warm")
        error = item.get("error")
        reason = item.get("reason")
        if not isinstance(reason, str):
            reason = str(error.get("message", "")) if isinstance(error, Mapping) else ""
        state = item.get("state")
        if state not in (LOADING, WARM, FAILED):
            state = FAILED if error else WARM if item.get("ready") is True else LOADING
        out.append(TupleReport(
            tenant=item["tenant"],
            module=module.lower(),
            state=str(state),
            warm=warm if isinstance(warm, int) and not isinstance(warm, bool) and warm >= 0 else 0,
            reason=reason[:MAX_REASON],
        ))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Standing:
    """One member's tuple across the fleet's Ready pods."""

    pods: int
    """Ready pods whose body was read."""
    warm_pods: int
    warm_instances: int
    failure: tuple[str, str] | None
    """(pod, reason) of the first pod where the tuple failed."""


def standing(tenant: str, sha256: str, reports: Mapping[str, tuple[TupleReport, ...]]) -> Standing:
    """`reports` by pod name: the tuples each Ready pod listed."""
    warm_pods = warm_instances = 0
    failure = None
    for pod, tuples in sorted(reports.items()):
        found = next((t for t in tuples if t.is_for(tenant, sha256)), None)
        if found is None:
            continue
        warm_instances += found.warm
        if found.state == WARM:
            warm_pods += 1
        elif found.state == FAILED and failure is None:
            failure = (pod, found.reason)
    return Standing(pods=len(reports), warm_pods=warm_pods, warm_instances=warm_instances, failure=failure)

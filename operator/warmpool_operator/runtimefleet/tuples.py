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


class Reports:
    """The tuples each Ready pod listed, indexed by (tenant, module) once, so that each member's standing
    is a few lookups instead of a scan of every pod's tuples (members x tuples per reconciliation)."""

    def __init__(self, reports: Mapping[str, tuple[TupleReport, ...]]) -> None:
        self._pods = len(reports)
        self._by_pod: list[tuple[str, dict[tuple[str, str], TupleReport]]] = []
        lengths: set[int] = set()
        for pod, tuples in sorted(reports.items()):
            index: dict[tuple[str, str], TupleReport] = {}
            for report in tuples:
                if len(report.module) >= SHORT_HASH:
                    index.setdefault((report.tenant, report.module), report)  # the first listed wins
                    lengths.add(len(report.module))
            self._by_pod.append((pod, index))
        self._order = {pod: {(t.tenant, t.module): n for n, t in reversed(list(enumerate(tuples)))}
                       for pod, tuples in reports.items()} if len(lengths) > 1 else {}
        self._lengths = sorted(lengths)

    def standing(self, tenant: str, sha256: str) -> Standing:
        warm_pods = warm_instances = 0
        failure = None
        keys = [(tenant, sha256[:length]) for length in self._lengths if length <= len(sha256)]
        for pod, index in self._by_pod:
            found = self._first(pod, index, keys)
            if found is None:
                continue
            warm_instances += found.warm
            if found.state == WARM:
                warm_pods += 1
            elif found.state == FAILED and failure is None:
                failure = (pod, found.reason)
        return Standing(pods=self._pods, warm_pods=warm_pods, warm_instances=warm_instances, failure=failure)

    def _first(
        self, pod: str, index: Mapping[tuple[str, str], TupleReport], keys: list[tuple[str, str]]
    ) -> TupleReport | None:
        """The first tuple the pod listed for one of `keys` (the sha256 and its prefixes listed)."""
        if len(keys) == 1:
            return index.get(keys[0])
        order = self._order.get(pod, {})
        hits = [(order[key], index[key]) for key in keys if key in index]
        return min(hits, key=lambda hit: hit[0])[1] if hits else None


def standing(tenant: str, sha256: str, reports: Mapping[str, tuple[TupleReport, ...]]) -> Standing:
    """`reports` by pod name: the tuples each Ready pod listed."""
    return Reports(reports).standing(tenant, sha256)

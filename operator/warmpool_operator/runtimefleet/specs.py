"""Members' parsed specs kept between a fleet's reconciliations, by uid and generation (pure).

A fleet's reconciliation reads every member; parsing and validating each spec again when its generation
has not changed is most of what it costs per member. Bounded by the members: each reconciliation keeps
only the uids it just read (a deleted pool's entry goes at the next one), and a new generation replaces
its entry. Status and metadata are never cached: they are read fresh every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from warmpool_operator.defaults import ClusterDefaults, parse_pool
from warmpool_operator.fields import SpecError
from warmpool_operator.spec import WarmPool, WarmPoolSpec, parse_meta


@dataclass
class ParsedSpecs:
    """uid -> (generation, parsed spec) of one fleet's members (and pools leaving it)."""

    _by_uid: dict[str, tuple[int, WarmPoolSpec]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._by_uid)

    def parse(self, body: Mapping[str, Any], defaults: ClusterDefaults) -> WarmPool:
        """`parse_pool(body, defaults)`, reusing the spec parsed for this uid at this generation."""
        meta = parse_meta(body.get("metadata"))
        known = self._by_uid.get(meta.uid)
        status = body.get("status") or {}
        if known is not None and known[0] == meta.generation and isinstance(status, Mapping):
            return WarmPool(meta=meta, spec=known[1], status=MappingProxyType(dict(status)))
        pool = parse_pool(body, defaults)
        self._by_uid[meta.uid] = (meta.generation, pool.spec)
        return pool

    def retain(self, uids: Iterable[str]) -> None:
        """Keep only these uids (those the reconciliation just read): deleted pools are dropped."""
        keep = set(uids)
        for uid in [uid for uid in self._by_uid if uid not in keep]:
            del self._by_uid[uid]


def parse_members(
    raw_pools: Iterable[Mapping[str, Any]], defaults: ClusterDefaults, specs: ParsedSpecs | None = None
) -> list[WarmPool]:
    """The pools not being deleted whose spec parses (the others' own reconciliation reports InvalidSpec)."""
    out = []
    for body in raw_pools:
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            continue
        try:
            out.append(parse_pool(body, defaults) if specs is None else specs.parse(body, defaults))
        except SpecError:
            continue
    return out

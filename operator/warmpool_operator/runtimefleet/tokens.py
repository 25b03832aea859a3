"""Which token Secrets the fleets' members reference, and their digests as the Secret watch last saw them.

Bounded by the objects: an entry per Secret some fleet's member names in `spec.auth.secretRef`,
dropped when no fleet references it any more (or the fleet is forgotten). Only sha256 digests are
kept, never a token. Without a Secret watch (`watching` False) nothing is cached: every fleet
reconciliation reads the Secrets by name, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

SecretKey = tuple[str, str]
"""(namespace, name) of a Secret."""
FleetKey = tuple[str, str]
"""(namespace, name) of a RuntimeFleet."""
Digests = tuple[str, ...] | None
"""A Secret's token digests; None when it does not exist."""


@dataclass
class TokenSecrets:
    watching: bool = False
    """Whether a Secret watch keeps `digests` current (else the cache is not used)."""
    _by_fleet: dict[FleetKey, frozenset[SecretKey]] = field(default_factory=dict)
    _fleets: dict[SecretKey, set[FleetKey]] = field(default_factory=dict)
    _digests: dict[SecretKey, Digests] = field(default_factory=dict)

    def referenced(self, namespace: str | None, name: str | None) -> bool:
        """The Secret watch's filter: only Secrets a fleet member names go further."""
        return namespace is not None and name is not None and (namespace, name) in self._fleets

    def record(self, fleet: FleetKey, secrets: Iterable[SecretKey]) -> None:
        """The Secrets a fleet's members (and leaving pools) name, as its reconciliation found them."""
        wanted = frozenset(secrets)
        before = self._by_fleet.get(fleet, frozenset())
        for key in before - wanted:
            self._unref(key, fleet)
        for key in wanted - before:
            self._fleets.setdefault(key, set()).add(fleet)
        if wanted:
            self._by_fleet[fleet] = wanted
        else:
            self._by_fleet.pop(fleet, None)

    def forget_fleet(self, fleet: FleetKey) -> None:
        for key in self._by_fleet.pop(fleet, frozenset()):
            self._unref(key, fleet)

    def cached(self, key: SecretKey) -> tuple[bool, Digests]:
        """(found, digests): whether the watch's view of this Secret can stand for a read."""
        if not self.watching or key not in self._digests:
            return False, None
        return True, self._digests[key]

    def remember(self, key: SecretKey, digests: Digests) -> None:
        """A read made by name: kept unless the watch has already said something (newer) about it."""
        if self.watching and key in self._fleets:
            self._digests.setdefault(key, digests)

    def observe(self, key: SecretKey, digests: Digests) -> frozenset[FleetKey]:
        """The watch saw `key` (None: deleted): the fleets to reconcile because its digests changed."""
        fleets = self._fleets.get(key)
        if not fleets:
            return frozenset()
        known = key in self._digests
        previous = self._digests.get(key)
        self._digests[key] = digests
        return frozenset(fleets) if not known or previous != digests else frozenset()

    def _unref(self, key: SecretKey, fleet: FleetKey) -> None:
        fleets = self._fleets.get(key)
        if fleets is None:
            return
        fleets.discard(fleet)
        if not fleets:
            del self._fleets[key]
            self._digests.pop(key, None)


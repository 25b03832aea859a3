"""Leader election's adapter: reads and writes the Lease through `KubeApi` and exposes leading/lost as events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from warmpool_operator.kinds import LEASES, ApiError, Conflict, Kind, NotFound, describe
from warmpool_operator.kube import TRANSIENT
from warmpool_operator.leader import Action, Observation, decide, parse_lease, release_spec, still_leading

log = logging.getLogger(__name__)


class LeaseStore(Protocol):
    """What election needs of the API (implemented by `warmpool_operator.kube.KubeApi`)."""

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, kind: Kind, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


class LeaderElector:
    """Tries to acquire the Lease every `retry_seconds`; `leading` is set while this replica holds it."""

    def __init__(
        self,
        api: LeaseStore,
        config: LeaseConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self.config = config
        self._monotonic = monotonic
        self._wall = wall
        self._observation: Observation | None = None
        self._renewed: float | None = None
        self._version: str | None = None
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self._failing = False

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    async def run(self) -> None:
        """Until cancelled; on cancellation a leader releases the Lease."""
        try:
            while True:
                await self.try_once()
                await asyncio.sleep(self.config.retry_seconds)
        finally:
            with contextlib.suppress(*TRANSIENT):
                await asyncio.shield(self.release())

    async def try_once(self) -> None:
        cfg = self.config
        try:
            await self._attempt()
        except TRANSIENT as exc:
            if not self._failing:
                log.warning("lease %s/%s: %s", cfg.namespace, cfg.name, describe(exc))
            self._failing = True
        else:
            self._failing = False
        now = self._monotonic()
        if self.is_leader and not still_leading(
            last_renewed=self._renewed, monotonic=now, renew_deadline_seconds=cfg.renew_deadline_seconds
        ):
            log.warning("lease %s/%s not renewed within %gs: stepping down", cfg.namespace, cfg.name,
                        cfg.renew_deadline_seconds)
            self.leading.clear()
            self.lost.set()

    async def _attempt(self) -> None:
        cfg = self.config
        body = await self._api.get(LEASES, cfg.namespace, cfg.name)
        record = parse_lease(body)
        started = self._monotonic()
        decision = decide(record, self._observation, me=cfg.identity, monotonic=started, wall=self._wall(),
                          duration_seconds=cfg.duration_seconds)
        self._observation = decision.observation
        if decision.action is Action.WAIT or decision.spec is None:
            if self.is_leader:
                log.warning("lease %s/%s is held by %s: stepping down", cfg.namespace, cfg.name,
                            record.holder if record else "?")
                self.leading.clear()
                self.lost.set()
            return
        try:
            if decision.action is Action.CREATE:
                written = await self._api.create(LEASES, cfg.namespace, {
                    "apiVersion": LEASES.api_version, "kind": "Lease",
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace}, "spec": decision.spec,
                })
            else:
                assert record is not None
                # resourceVersion makes the write conditional: of two replicas taking over, one gets 409.
                patch: dict[str, Any] = {"metadata": {"resourceVersion": record.resource_version},
                                         "spec": decision.spec}
                written = await self._api.merge_patch(LEASES, cfg.namespace, cfg.name, patch)
        except (Conflict, NotFound):
            return  # someone else wrote first: read again next round
        self._version = (written.get("metadata") or {}).get("resourceVersion")
        self._renewed = started
        if not self.is_leader:
            log.info("acquired lease %s/%s as %s", cfg.namespace, cfg.name, cfg.identity)
            self.lost.clear()
            self.leading.set()

    async def release(self) -> None:
        """Step down and free the Lease so that a standby takes over without waiting for expiry."""
        if not self.is_leader:
            return
        cfg = self.config
        self.leading.clear()
        self.lost.set()
        patch = {"metadata": {"resourceVersion": self._version}, "spec": release_spec()}
        try:
            await self._api.merge_patch(LEASES, cfg.namespace, cfg.name, patch)
        except ApiError as exc:
            log.info("lease %s/%s not released: %s", cfg.namespace, cfg.name, describe(exc))
        else:
            log.info("released lease %s/%s", cfg.namespace, cfg.name)

"""Reads `GET /readyz` from runtime pods directly by pod IP (never through the Service)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from warmpool_contract import READYZ_PATH
from warmpool_operator.health import pod_is_ready
from warmpool_operator.probing import probe_target
from warmpool_operator.readyz import ReadyzReport, parse_readyz

log = logging.getLogger(__name__)


class HttpProber:
    """Short timeouts and a cap on pods per pass: a reconcile must not wait on many dead pods."""

    def __init__(self, *, timeout_seconds: float, max_pods: int) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_pods = max_pods
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read(self, ip: str, port: int) -> ReadyzReport | None:
        """The parsed body, or None when the pod does not answer with the documented JSON."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        host = f"[{ip}]" if ":" in ip else ip
        try:
            async with self._session.get(f"http://{host}:{port}{READYZ_PATH}") as resp:
                if resp.status not in (200, 503):
                    return None
                return parse_readyz(json.loads(await resp.text()))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("readyz of %s:%s unavailable: %s", ip, port, exc)
            return None

    async def read_pods(self, pods: Sequence[Mapping[str, Any]]) -> dict[str, ReadyzReport]:
        targets: list[tuple[str, tuple[str, int]]] = []
        for pod in pods:
            target = probe_target(pod)
            if target is not None and not pod_is_ready(pod):
                targets.append(((pod.get("metadata") or {}).get("name", "?"), target))
        targets = targets[: self._max_pods]
        results = await asyncio.gather(*(self.read(ip, port) for _, (ip, port) in targets))
        return {name: report for (name, _), report in zip(targets, results, strict=True) if report is not None}

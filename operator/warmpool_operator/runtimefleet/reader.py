"""Reads the per-tuple states of fleet pods' `GET /readyz` by pod IP: the fleet's only HTTP edge."""

from __future__ import annotations

import json
import logging

import aiohttp

from warmpool_contract import READYZ_PATH
from warmpool_operator.runtimefleet.tuples import TupleReport, parse_tuple_states

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
"""A fleet of thousands of tuples lists them all; anything larger is not a readyz body."""


class ReadyzReader:
    """One session for every fleet; short timeouts, bounded bodies, every failure is None."""

    def __init__(self, *, timeout_seconds: float = 2.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def tuples(self, ip: str, port: int) -> tuple[TupleReport, ...] | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        host = f"[{ip}]" if ":" in ip else ip
        try:
            async with self._session.get(f"http://{host}:{port}{READYZ_PATH}") as resp:
                if resp.status not in (200, 503):
                    return None
                body = await resp.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                return None
            return parse_tuple_states(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("readyz of %s:%s unavailable: %s", ip, port, exc)
            return None

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


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds `limit` bytes.

    `StreamReader.read(n)` returns what has arrived so far, up to n: one read of a body larger than
    a few chunks (a /readyz of ~1,000 tuples, ~200 KB) is cut short and fails to parse.
    """
    body = bytearray()
    while chunk := await content.read(min(1 << 16, limit + 1 - len(body))):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


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
                body = await read_bounded(resp.content, MAX_BODY_BYTES)
            if body is None:
                return None
            return parse_tuple_states(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("readyz of %s:%s unavailable: %s", ip, port, exc)
            return None

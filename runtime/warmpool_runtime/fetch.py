"""Bounded HTTP fetches of module bytes: one GET capped in size and time, redirects followed by hand, retries."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from http import HTTPStatus
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from warmpool_contract import REDACTED, redact_url
from warmpool_runtime.errors import ModuleTooLarge, ModuleUnreachable
from warmpool_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

_DEFAULTS = RuntimeSettings()
_CHUNK = 1 << 16
MAX_REDIRECTS = 10
_SCRUBBED_MIN = 4
"""Header values this long or longer are scrubbed from any reason (shorter ones cannot be told from words)."""
_T = TypeVar("_T")


class FetchFailed(Exception):
    """One failed download attempt; `transient` ones are retried while the deadline allows."""

    def __init__(self, reason: str, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Request:
    """What one GET sends: `headers` go only to the first URL's origin (never across a redirect to another
    host, port or scheme); `ssl` is the TLS context for https (None: the system's trust store)."""

    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    ssl: ssl.SSLContext | None = None


@dataclass(slots=True)
class Progress:
    """Bytes received so far and the announced length (-1: none), for the error of a cut-short attempt."""

    got: int = 0
    total: int = -1

    def __str__(self) -> str:
        return f"got {self.got} of {self.total} bytes" if self.total >= 0 else f"got {self.got} bytes"


_RETRIED_STATUSES = frozenset({408, 429})
_HINTS = {401: "the source needs credentials", 403: "a signed URL may have expired",
          404: "no module at this URL"}


Attempt = Callable[["Progress"], Coroutine[Any, Any, _T]]
"""One try at the whole fetch; it records the bytes it has received in the Progress it is given."""


def retrying(shown: str, attempt: Attempt[_T], settings: RuntimeSettings = _DEFAULTS, *,
             clean: Callable[[str], str] = lambda reason: reason, sleep: Callable[[float], None] = time.sleep,
             rng: Callable[[], float] = random.random) -> _T:
    """Run `attempt` until it succeeds, retrying transient FetchFailed with backoff, all within
    `fetch_deadline_seconds`. Errors name the source as `shown`; `clean` scrubs any secret from a reason."""
    deadline = time.monotonic() + settings.fetch_deadline_seconds
    attempts = settings.fetch_retries + 1
    for number in range(1, attempts + 1):
        remaining = deadline - time.monotonic()
        try:
            return run_sync(functools.partial(bounded, attempt, remaining, settings))
        except FetchFailed as failure:
            reason = clean(failure.reason)
            if not failure.transient:
                raise ModuleUnreachable(f"cannot fetch module {shown}: {reason} (not retried)") from None
            if number == attempts:
                raise ModuleUnreachable(f"cannot fetch module {shown}: {reason} (after {attempts} attempts)") \
                    from None
            delay = backoff_delay(number, settings.fetch_backoff_seconds, settings.fetch_backoff_max_seconds,
                                  failure.retry_after, rng)
            if time.monotonic() + delay >= deadline:
                raise ModuleUnreachable(
                    f"cannot fetch module {shown}: {reason} (attempt {number} of {attempts}; no time left to retry "
                    f"within the {settings.fetch_deadline_seconds:g}s fetch deadline)") from None
            log.warning("module %s: %s; retry %d of %d in %.2fs", shown, reason, number, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def fetch_url(url: str, max_bytes: int, settings: RuntimeSettings = _DEFAULTS, *, request: Request | None = None,
              sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random) -> bytes:
    """Download a module, retrying transient failures with backoff, all within `fetch_deadline_seconds`.

    Every error names the source redacted (its query string and userinfo never appear, nor any header value).
    """
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ModuleUnreachable(f"module URL {shown} is not http(s)")
    request = request or Request()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.fetch_timeout_seconds,
                                    sock_read=settings.fetch_timeout_seconds)

    async def attempt(progress: Progress) -> bytes:
        async with session(timeout) as client:
            return await get_body(
                client, URL(url, encoded=True), request, max_bytes=max_bytes, progress=progress,
                on_status=lambda status, headers: status_failure(status, headers.get("Retry-After")),
                what=f"module at {shown}")

    def clean(reason: str) -> str:
        for value in request.headers.values():
            if len(value) >= _SCRUBBED_MIN:
                reason = reason.replace(value, REDACTED)
        return scrub(reason, url)

    return retrying(shown, attempt, settings, clean=clean, sleep=sleep, rng=rng)


def session(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    """A client session for module bytes: no transparent decompression (the bytes are hashed as sent);
    trust_env: HTTP(S)_PROXY and NO_PROXY are honoured."""
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=True)


async def bounded(attempt: Attempt[_T], remaining: float, settings: RuntimeSettings) -> _T:
    """One attempt, bounded as a whole by `remaining` seconds, its client failures turned into FetchFailed
    (a ModuleError passes through: it is never retried)."""
    progress = Progress()
    try:
        async with asyncio.timeout(max(remaining, 0.0)) as bound:
            return await attempt(progress)
    except TimeoutError:
        if bound.expired():
            raise FetchFailed(f"no complete download within the {settings.fetch_deadline_seconds:g}s fetch deadline "
                              f"({progress})", transient=True) from None
        raise FetchFailed(f"no data for {settings.fetch_timeout_seconds:g}s ({progress})", transient=True) from None
    except aiohttp.ClientPayloadError:
        raise FetchFailed(truncation(progress), transient=True) from None
    except aiohttp.ClientSSLError as exc:
        raise FetchFailed(f"TLS failed: {type(exc).__name__}", transient=False) from None
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror or type(exc.os_error).__name__
        raise FetchFailed(f"cannot connect to {exc.host}:{exc.port}: {why}", transient=True) from None
    except (aiohttp.InvalidURL, aiohttp.TooManyRedirects, ValueError) as exc:
        raise FetchFailed(f"unusable URL or redirect ({type(exc).__name__})", transient=False) from None
    except aiohttp.ServerDisconnectedError:
        raise FetchFailed(f"the server closed the connection ({progress})", transient=True) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise FetchFailed(f"connection failed: {type(exc).__name__} ({progress})", transient=True) from None


StatusFailure = Callable[[int, Mapping[str, str]], Exception]
"""Turns a non-200 answer (status, headers) into the exception to raise."""


async def get_body(client: aiohttp.ClientSession, url: URL, request: Request, *, max_bytes: int, progress: Progress,
                   on_status: StatusFailure, what: str, accept: str | None = None) -> bytes:
    """GET `url` and read its body, refusing more than `max_bytes` (before reading when announced).

    Redirects are followed here, not by aiohttp, so that the request's headers (credentials) never reach
    another origin, and at most MAX_REDIRECTS of them.
    """
    headers = {"Accept-Encoding": "identity", **request.headers}
    if accept is not None:
        headers["Accept"] = accept
    origin = url.origin()
    for _ in range(MAX_REDIRECTS + 1):
        sent = headers if url.origin() == origin else {k: v for k, v in headers.items()
                                                      if k in ("Accept-Encoding", "Accept")}
        async with client.get(url, headers=sent, allow_redirects=False,
                              ssl=request.ssl if request.ssl is not None else True) as response:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(f"HTTP {response.status} redirect without a Location", transient=False)
                url = response.url.join(URL(location, encoded=True))
                if url.scheme not in ("http", "https"):
                    raise FetchFailed("redirected to a URL that is not http(s)", transient=False)
                continue
            if response.status != 200:
                raise on_status(response.status, response.headers)
            return await read_capped(response, max_bytes, progress, what)
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects", transient=False)


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int, progress: Progress, what: str) -> bytes:
    """The response's body, at most `max_bytes` (ModuleTooLarge past it); a body cut short is transient."""
    length = response.content_length
    if length is not None:
        progress.total = length
        if length > max_bytes:
            raise ModuleTooLarge(f"{what} is {length} bytes, over the {max_bytes}-byte cap")
    data = bytearray()
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            data += chunk
            progress.got = len(data)
            if len(data) > max_bytes:
                raise ModuleTooLarge(f"{what} is over the {max_bytes}-byte cap")
    except aiohttp.ClientPayloadError:
        raise FetchFailed(truncation(progress), transient=True) from None
    if length is not None and len(data) < length:
        raise FetchFailed(truncation(progress), transient=True)
    return bytes(data)


def truncation(progress: Progress) -> str:
    if progress.total >= 0:
        return f"truncated: got {progress.got} of {progress.total} bytes"
    return f"truncated: got {progress.got} bytes, then the connection closed mid-body"


def status_failure(status: int, retry_after: str | None, hints: Mapping[int, str] = _HINTS,
                   prefix: str = "") -> FetchFailed:
    """An HTTP status as a failure: 5xx, 408 and 429 are transient (honouring Retry-After), others not."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    hint = f"; {hints[status]}" if status in hints else ""
    transient = retried_status(status)
    return FetchFailed(f"{prefix}HTTP {status} {phrase}{hint}", transient,
                       parse_retry_after(retry_after) if transient else None)


def retried_status(status: int) -> bool:
    return status >= 500 or status in _RETRIED_STATUSES


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None,
                  rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry `attempt` (1 = the first): exponential, half of it jittered, never over `cap`;
    a server's Retry-After is honoured up to `cap`."""
    exponential = min(cap, base * 2.0 ** min(attempt - 1, 62))
    delay = exponential * (0.5 + rng() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code (its own loop, in its own thread if need be)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(1, thread_name_prefix="module-fetch") as executor:
        return executor.submit(lambda: asyncio.run(factory())).result()


def scrub(text: str, url: str) -> str:
    """`text` with the URL's hidden parts (query and fragment, userinfo) replaced, in case a library echoed them."""
    text = text.replace(url, redact_url(url))
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    hidden = [url[cut + 1:]]
    authority = url[url.find("://") + 3:cut].split("/", 1)[0] if "://" in url[:cut] else ""
    if "@" in authority:
        hidden.append(authority.rsplit("@", 1)[0])
    for part in hidden:
        if part:
            text = text.replace(part, REDACTED)
    return text

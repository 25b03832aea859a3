"""Module store: fetch bytes (file, URL, directory), verify the sha256, compile once per hash."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import hashlib
import importlib.metadata
import logging
import math
import os
import random
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import wasmtime

from warmpool_contract import REDACTED, redact_url
from warmpool_runtime.errors import (
    MissingImport,
    ModuleError,
    ModuleHashMismatch,
    ModuleTooLarge,
    ModuleUnreachable,
)
from warmpool_runtime.layout import Layout, LayoutError, export_hidden_globals, scan
from warmpool_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

WASM_MAGIC = b"\0asm"
WASI_P1 = "wasi_snapshot_preview1"
_DEFAULTS = RuntimeSettings()
_CHUNK = 1 << 16
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """Exactly one of a file path, an http(s) URL, or a directory holding `<sha256>.wasm`."""

    path: str | None = None
    url: str | None = None
    dir: str | None = None

    def describe(self) -> str:
        """The source as it may be shown anywhere: a URL's credentials (query, userinfo) are hidden."""
        if self.url is not None:
            return redact_url(self.url)
        if self.path is not None:
            return redact_url(self.path)
        return f"{redact_url(str(self.dir))}/<sha256>.wasm"

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        kind = "url" if self.url is not None else "path" if self.path is not None else "dir"
        value = redact_url(self.url or self.path or str(self.dir))
        return f"ModuleSource({kind}={value!r})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_bytes(source: ModuleSource, sha256: str, max_bytes: int, settings: RuntimeSettings = _DEFAULTS) -> bytes:
    """Read the module's bytes, refusing anything over `max_bytes` before reading it all."""
    if source.url is not None:
        return fetch_url(source.url, max_bytes, settings)
    path = Path(source.path) if source.path is not None else Path(str(source.dir)) / f"{sha256}.wasm"
    shown = source.describe() if source.path is not None else redact_url(str(path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ModuleTooLarge(f"module {shown} is {size} bytes, over the {max_bytes}-byte cap")
        return path.read_bytes()
    except OSError as exc:
        raise ModuleUnreachable(f"cannot read module {shown}: {exc.strerror or type(exc).__name__}") from None


# URL fetches ---------------------------------------------------------------------------------------
class _Failed(Exception):
    """One failed download attempt; `transient` ones are retried while the deadline allows."""

    def __init__(self, reason: str, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


_RETRIED_STATUSES = frozenset({408, 429})
_HINTS = {401: "the source needs credentials", 403: "a signed URL may have expired",
          404: "no module at this URL"}


def fetch_url(url: str, max_bytes: int, settings: RuntimeSettings = _DEFAULTS,
              sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random) -> bytes:
    """Download a module, retrying transient failures with backoff, all within `fetch_deadline_seconds`.

    Every error names the source redacted (its query string and userinfo never appear).
    """
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ModuleUnreachable(f"module URL {shown} is not http(s)")
    deadline = time.monotonic() + settings.fetch_deadline_seconds
    attempts = settings.fetch_retries + 1
    for attempt in range(1, attempts + 1):
        remaining = deadline - time.monotonic()
        try:
            return _run(functools.partial(_download, url, max_bytes, settings, remaining))
        except _Failed as failure:
            reason = _scrub(failure.reason, url)
            if not failure.transient:
                raise ModuleUnreachable(f"cannot fetch module {shown}: {reason} (not retried)") from None
            if attempt == attempts:
                raise ModuleUnreachable(f"cannot fetch module {shown}: {reason} (after {attempts} attempts)") \
                    from None
            delay = backoff_delay(attempt, settings.fetch_backoff_seconds, settings.fetch_backoff_max_seconds,
                                  failure.retry_after, rng)
            if time.monotonic() + delay >= deadline:
                raise ModuleUnreachable(
                    f"cannot fetch module {shown}: {reason} (attempt {attempt} of {attempts}; no time left to retry "
                    f"within the {settings.fetch_deadline_seconds:g}s fetch deadline)") from None
            log.warning("module %s: %s; retry %d of %d in %.2fs", shown, reason, attempt, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


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


def _run(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code (its own loop, in its own thread if need be)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(1, thread_name_prefix="module-fetch") as executor:
        return executor.submit(lambda: asyncio.run(factory())).result()


async def _download(url: str, max_bytes: int, settings: RuntimeSettings, remaining: float) -> bytes:
    """One attempt, bounded as a whole by `remaining` seconds; raises _Failed (or a ModuleError, never retried)."""
    received = [0, -1]  # bytes so far, Content-Length (-1: none)
    try:
        async with asyncio.timeout(max(remaining, 0.0)) as bound:
            return await _get(url, max_bytes, settings.fetch_timeout_seconds, received)
    except TimeoutError:
        if bound.expired():
            raise _Failed(f"no complete download within the {settings.fetch_deadline_seconds:g}s fetch deadline "
                          f"({_progress(received)})", transient=True) from None
        raise _Failed(f"no data for {settings.fetch_timeout_seconds:g}s ({_progress(received)})",
                      transient=True) from None
    except aiohttp.ClientPayloadError:
        got, total = received
        reason = f"truncated: got {got} of {total} bytes" if total >= 0 else \
            f"truncated: got {got} bytes, then the connection closed mid-body"
        raise _Failed(reason, transient=True) from None
    except aiohttp.ClientSSLError as exc:
        raise _Failed(f"TLS failed: {type(exc).__name__}", transient=False) from None
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror or type(exc.os_error).__name__
        raise _Failed(f"cannot connect to {exc.host}:{exc.port}: {why}", transient=True) from None
    except (aiohttp.InvalidURL, aiohttp.TooManyRedirects, ValueError) as exc:
        raise _Failed(f"unusable URL or redirect ({type(exc).__name__})", transient=False) from None
    except aiohttp.ServerDisconnectedError:
        raise _Failed(f"the server closed the connection ({_progress(received)})", transient=True) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _Failed(f"connection failed: {type(exc).__name__} ({_progress(received)})", transient=True) from None


async def _get(url: str, max_bytes: int, read_timeout: float, received: list[int]) -> bytes:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout, sock_read=read_timeout)
    # The bytes are hashed as sent: no transparent decompression. trust_env: HTTP(S)_PROXY and NO_PROXY.
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=True) as session, \
            session.get(url, headers={"Accept-Encoding": "identity"}) as response:
        if response.status != 200:
            raise _status_failure(response.status, response.headers.get("Retry-After"))
        length = response.content_length
        if length is not None:
            received[1] = length
            if length > max_bytes:
                raise ModuleTooLarge(f"module at {redact_url(url)} is {length} bytes, over the {max_bytes}-byte cap")
        data = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            data += chunk
            received[0] = len(data)
            if len(data) > max_bytes:
                raise ModuleTooLarge(f"module at {redact_url(url)} is over the {max_bytes}-byte cap")
        if length is not None and len(data) < length:
            raise aiohttp.ClientPayloadError("short body")
        return bytes(data)


def _status_failure(status: int, retry_after: str | None) -> _Failed:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    hint = f"; {_HINTS[status]}" if status in _HINTS else ""
    transient = status >= 500 or status in _RETRIED_STATUSES
    return _Failed(f"HTTP {status} {phrase}{hint}", transient, parse_retry_after(retry_after) if transient else None)


def _progress(received: list[int]) -> str:
    got, total = received
    return f"got {got} of {total} bytes" if total >= 0 else f"got {got} bytes"


def _scrub(text: str, url: str) -> str:
    """`text` with the URL's hidden parts replaced, in case a library echoed them."""
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


def verify(data: bytes, sha256: str, origin: str) -> None:
    """The bytes must hash to `sha256` and be binary Wasm (wasmtime would compile WAT text too)."""
    actual = sha256_hex(data)
    if actual != sha256:
        raise ModuleHashMismatch(
            f"module {origin} has sha256 {actual}, expected {sha256}", expected=sha256, actual=actual
        )
    if not data.startswith(WASM_MAGIC):
        raise ModuleError(f"module {origin} is not binary WebAssembly (no \\0asm magic)")


def check_imports(module: wasmtime.Module, wasi_enabled: bool) -> None:
    """Fail at load time, naming the import, when the host does not provide it."""
    for imp in module.imports:
        if imp.module == WASI_P1 and wasi_enabled:
            continue
        raise MissingImport(
            f"module imports {imp.module}::{imp.name}, which this runtime does not provide",
            module=imp.module,
            name=imp.name,
        )


class ModuleStore:
    """Compiled modules by sha256; an optional precompiled cache lives only in a runtime-owned dir."""

    def __init__(self, engine: wasmtime.Engine, cache_dir: str | None = None,
                 settings: RuntimeSettings = _DEFAULTS) -> None:
        self._engine = engine
        self._settings = settings
        self._compiled: dict[str, wasmtime.Module] = {}
        self.layouts: dict[str, Layout] = {}
        """What each freshly read module's binary says about its mutable state."""
        self._lock = threading.Lock()
        self._cache_dir = _owned_cache_dir(cache_dir) if cache_dir else None

    def load(self, source: ModuleSource, sha256: str, max_bytes: int, wasi_enabled: bool) -> wasmtime.Module:
        with self._lock:
            cached = self._compiled.get(sha256)
        if cached is not None:
            return cached
        module = self._from_disk_cache(sha256)
        if module is None:
            data = fetch_bytes(source, sha256, max_bytes, self._settings)
            verify(data, sha256, source.describe())
            with contextlib.suppress(LayoutError):  # wasmtime's compile below names the defect
                layout = scan(data)
                if layout.in_place_reset_ok and layout.hidden_globals:
                    # Compile with the hidden globals exported, so an in-place reset can restore them.
                    data = export_hidden_globals(data, layout)
                    layout = replace(layout, exported_globals=layout.exported_globals | layout.hidden_globals)
                self.layouts[sha256] = layout
            try:
                module = wasmtime.Module(self._engine, data)
            except wasmtime.WasmtimeError as exc:
                raise ModuleError(f"module {source.describe()} does not compile: {exc}") from exc
            self._to_disk_cache(sha256, module)
        check_imports(module, wasi_enabled)
        with self._lock:
            self._compiled[sha256] = module
        return module

    def _cache_path(self, sha256: str) -> Path | None:
        if self._cache_dir is None:
            return None
        return self._cache_dir / f"{sha256}-{importlib.metadata.version('wasmtime')}.cwasm"

    def _from_disk_cache(self, sha256: str) -> wasmtime.Module | None:
        path = self._cache_path(sha256)
        if path is None or not path.exists() or not _owned_by_us(path):
            return None
        try:
            return wasmtime.Module.deserialize_file(self._engine, str(path))
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)
            return None

    def _to_disk_cache(self, sha256: str, module: wasmtime.Module) -> None:
        path = self._cache_path(sha256)
        if path is None:
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(module.serialize())
        os.replace(tmp, path)


def _owned_by_us(path: Path) -> bool:
    info = path.stat()
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _owned_cache_dir(cache_dir: str) -> Path:
    """Precompiled code is trusted native code: only a directory no one else can write may hold it."""
    path = Path(cache_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _owned_by_us(path):
        raise ValueError(f"compiled-module cache {path} must be owned by this user and not group/world-writable")
    return path

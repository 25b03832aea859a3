"""Every tuning constant of the runtime and its engine, with defaults: the `settings:` mapping of the config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


class SettingsError(ValueError):
    """A settings value that cannot work; the message names the `settings.<key>` it concerns."""


def _min(value: float) -> dict[str, float]:
    return {"minimum": value}


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Process-wide knobs; per-tuple limits (memory, deadline, fuel, ...) live in the tuples' `limits`.

    Each field is set in the config file under `settings:` by its camelCase name
    (`inline_budget_ms` -> `inlineBudgetMs`); docs/runtime-config.md lists them all.
    """

    # Call lanes ------------------------------------------------------------------------------------
    workers: int = field(default=4, metadata=_min(1))
    """Threads that run the calls that leave the inline lane (long calls, misses, guests that can block)."""
    inline_budget_ms: float = field(default=2.0, metadata=_min(0))
    """Calls first run on the server thread with this deadline; a slower one is re-run on a worker. 0: never."""
    slow_strikes: int = field(default=3, metadata=_min(1))
    """Inline calls in a row over the budget before an export counts as slow: one overrun can be the
    thread losing its core (a shared machine, a GC pause), and the worker lane costs every call ~50 µs."""
    slow_export_seconds: float = field(default=10.0, metadata=_min(0))
    """How long an export that counts as slow goes straight to a worker."""
    tenant_max_workers: int = field(default=0, metadata=_min(0))
    """Worker threads one tenant's calls may occupy at once. 0: all but one (at least one) while the
    pod serves several tenants, so a tenant whose guests are all stuck until their deadline always
    leaves a worker to the others; all of them while it serves one tenant."""
    tenant_max_calls: int = field(default=32, metadata=_min(1))
    """Worker-lane calls (running plus queued) one tenant may have; more are refused with 429."""
    max_queued_calls: int = field(default=128, metadata=_min(1))
    """Calls queued while every worker is busy, pod-wide; more are refused with 503. While a worker is
    idle, queued calls wait only for their own tenant's `tenant_max_workers` and count against it."""
    queue_high_water: float = field(default=0.5, metadata=_min(0))
    """`/readyz` turns 503 (saturated) once those queued calls reach this fraction of `max_queued_calls`..."""
    queue_low_water: float = field(default=0.125, metadata=_min(0))
    """... and 200 again once they are down to this fraction."""
    epoch_idle_park_ms: float = field(default=100.0, metadata=_min(0))
    """The epoch ticker stops after this long with no call or instantiation in flight, and starts
    again with the next one: an idle runtime costs no CPU."""

    # Pools -----------------------------------------------------------------------------------------
    loop_recycle_max_seconds: float = field(default=250e-6, metadata=_min(0))
    """Recycle on the event loop only while instantiation stays this cheap (moving average); dearer
    recycles go to the refill thread."""
    refill_retry_seconds: float = field(default=1.0, metadata=_min(0.001))
    """How often a pool whose refill failed (a start function that traps, say) is retried."""

    # Module store ----------------------------------------------------------------------------------
    fetch_timeout_seconds: float = field(default=10.0, metadata=_min(0.001))
    """Longest wait for a module URL's connection, or for any bytes from it (one read)."""
    fetch_deadline_seconds: float = field(default=120.0, metadata=_min(0.001))
    """Total deadline of fetching one module from a URL, retries and their backoff included: a source
    that drips bytes slowly enough to beat the per-read timeout still ends here."""
    fetch_retries: int = field(default=3, metadata=_min(0))
    """Further attempts after a transient failure (refused, reset, timeout, truncated, 5xx, 408, 429)."""
    fetch_backoff_seconds: float = field(default=0.5, metadata=_min(0))
    """Backoff before the first retry; it doubles per retry (with jitter) up to `fetch_backoff_max_seconds`."""
    fetch_backoff_max_seconds: float = field(default=10.0, metadata=_min(0))
    """Longest backoff, and the most of a 429/503 `Retry-After` that is honoured."""
    parallel_loads: int = field(default=4, metadata=_min(1))
    """Tuples fetched, compiled and prewarmed at once, at start and after a config change alike (the others
    wait, loading): one slow source never holds the others back, and a config adding a thousand tuples
    starts no more downloads than this."""

    # Live config ------------------------------------------------------------------------------------
    config_poll_seconds: float = field(default=1.0, metadata=_min(0.05))
    """How often the config file (with `--watch-config`) and the tuples' token digest files are checked for
    a change (a stat, and a read only when it changed); also how often the tuples' recent use is sampled
    for the `maxTotalWarm` cap."""
    startup_grace_seconds: float = field(default=120.0, metadata=_min(0))
    """With `--watch-config`, `/readyz` stays 503 until every tuple of the config the process started with is
    warm or failed, but no longer than this after the start: then the pod turns Ready anyway (logged), so
    one source that hangs cannot keep a fleet pod out of its Service. 0: Ready at once."""

    # HTTP surface ----------------------------------------------------------------------------------
    max_body_bytes: int = field(default=16 << 20, metadata=_min(1))
    """Larger request bodies are refused with `payload_too_large`."""
    route_cache_size: int = field(default=1024, metadata=_min(1))
    """Resolved invoke paths kept; bounded so that requests for ever-new paths cannot grow it."""
    listen_backlog: int = field(default=1024, metadata=_min(1))
    """Pending connections the listening socket queues."""
    max_request_line_bytes: int = field(default=8 << 10, metadata=_min(64))
    """Longest request target (the URL); a longer one is refused with 414 as its bytes arrive."""
    max_header_bytes: int = field(default=16 << 10, metadata=_min(256))
    """Most bytes of header lines one request may carry; more is refused with 431 as they arrive."""
    max_header_count: int = field(default=100, metadata=_min(1))
    """Most header lines one request may carry; more is refused with 431."""
    header_timeout_seconds: float = field(default=10.0, metadata=_min(0.01))
    """A request's line and headers must arrive within this long of its first byte (and a new
    connection's first request within this long of the accept), else 408 and the connection closes."""
    body_timeout_seconds: float = field(default=10.0, metadata=_min(0.01))
    """A body must arrive within this long of its headers, plus one second per `min_body_bytes_per_second`
    bytes it declares (`max_body_bytes` when chunked), else 408 and the connection closes."""
    min_body_bytes_per_second: int = field(default=1 << 20, metadata=_min(1))
    """The slowest body upload allowed for (see `body_timeout_seconds`)."""
    idle_timeout_seconds: float = field(default=75.0, metadata=_min(0.01))
    """A keep-alive connection with no request in progress, or one whose client stopped reading its
    answers, is closed after this long."""
    max_connections: int = field(default=1024, metadata=_min(1))
    """Open connections served at once; one more is answered 503 with `Retry-After` and closed."""
    max_pipelined_requests: int = field(default=16, metadata=_min(1))
    """Requests one connection may have running or answered-but-unsent; past it (or while its client
    is not reading answers) the connection is not read from."""
    drain_seconds: float = field(default=5.0, metadata=_min(0))
    """After SIGTERM: readiness fails at once, and requests are served this long before the listener closes."""
    shutdown_timeout_seconds: float = field(default=25.0, metadata=_min(0.1))
    """After SIGTERM the process exits within this long (drain window included), whatever is still
    running; keep it below the pod's `terminationGracePeriodSeconds` (30 s by default)."""

    # Engine ----------------------------------------------------------------------------------------
    pool_slots: int = field(default=1000, metadata=_min(1))
    """Instance slots (and memories, tables) the pooling allocator reserves up front."""
    max_memory_bytes: int = field(default=256 << 20, metadata=_min(65536))
    """Largest linear memory any slot can hold; per-tuple `limits.memoryBytes` must not exceed it."""
    max_wasm_stack_bytes: int = field(default=512 << 10, metadata=_min(4096))
    """Guest stack limit; deeper recursion traps with `stack_overflow`."""
    epoch_tick_ms: float = field(default=1.0, metadata=_min(0.001))
    """Granularity of per-call wall-clock deadlines (the epoch ticker's period)."""
    consume_fuel: bool = False
    """Compile fuel metering in (costs ~10-30 % of guest speed). Turned on anyway when a tuple sets `limits.fuel`."""
    pooling: bool = True
    """Use the pooling instance allocator (off only to measure what it buys)."""
    max_unused_warm_slots: int = field(default=100, metadata=_min(0))
    """Freed slots kept hot (resident and already mapped) for the next instantiation."""
    memory_keep_resident_bytes: int = field(default=1 << 20, metadata=_min(0))
    """A freed slot's memory up to this size is reset with memset rather than madvise (cheaper below ~1 MiB)."""
    table_keep_resident_bytes: int = field(default=64 << 10, metadata=_min(0))
    """As `memory_keep_resident_bytes`, for tables."""


def config_key(name: str) -> str:
    """The config file's camelCase key of a settings field."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


SETTINGS_KEYS: dict[str, str] = {config_key(f.name): f.name for f in fields(RuntimeSettings)}
"""Config key -> field name, for every field."""

def parse_settings(raw: Any, where: str = "settings") -> RuntimeSettings:
    """The settings a config mapping gives, over the defaults; unknown keys and bad values name their key."""
    if raw is None:
        return RuntimeSettings()
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where} must be a mapping")
    unknown = sorted(str(key) for key in set(raw) - set(SETTINGS_KEYS))
    if unknown:
        hints = [f"{key} (did you mean {_snake_hint(key)}?)" if _snake_hint(key) else key for key in unknown]
        raise SettingsError(f"{where}: unknown field(s) {', '.join(hints)}")
    defaults = RuntimeSettings()
    by_name = {f.name: f for f in fields(RuntimeSettings)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        spec = by_name[SETTINGS_KEYS[key]]
        values[spec.name] = _checked(value, getattr(defaults, spec.name), spec.metadata.get("minimum"),
                                     f"{where}.{key}")
    return replace(defaults, **values)


def _checked(value: Any, default: bool | float, minimum: float | None, where: str) -> Any:
    bound = "" if minimum is None else f" >= {minimum:g}"
    too_small = minimum is not None and not isinstance(value, bool) and isinstance(value, int | float) \
        and value < minimum
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f"{where} must be a boolean, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or too_small:
            raise SettingsError(f"{where} must be an integer{bound}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or too_small:
        raise SettingsError(f"{where} must be a finite number{bound}, got {value!r}")
    return float(value)


def _snake_hint(key: str) -> str | None:
    """The camelCase key a snake_case spelling means, when there is one."""
    camel = config_key(key) if "_" in key else None
    return camel if camel in SETTINGS_KEYS else None

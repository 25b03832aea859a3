"""Pure diff of two runtime configs into the tuple changes a live runtime applies, and the warm-floor cap."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from warmpool_runtime.config import RuntimeConfig, TupleConfig
from warmpool_runtime.settings import RuntimeSettings, config_key

TupleKey = tuple[str, str]
"""(tenant, module sha256)."""


@dataclass(frozen=True, slots=True)
class TupleChanges:
    """What turns the running tuple set into a new config's, tuple by tuple; other tuples are left alone."""

    add: tuple[TupleConfig, ...] = ()
    """New tuples: fetched, verified, compiled and prewarmed in the background."""
    remove: tuple[TupleKey, ...] = ()
    """Tuples gone from the config: new calls are refused, calls in flight finish, then instances are freed."""
    resize: tuple[TupleConfig, ...] = ()
    """Tuples whose pool is kept: only the warm count or the token file changed."""
    replace: tuple[TupleConfig, ...] = ()
    """Tuples whose module source or limits changed: a new pool is built, then the old one is drained."""
    restart_needed: tuple[str, ...] = ()
    """Config fields that changed but only take effect on a restart (they shape the engine, the workers,
    the listener)."""
    cap_changed: bool = False
    """`maxTotalWarm` changed: every tuple's floor is recomputed."""

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.resize or self.replace or self.cap_changed)


def _rebuild(old: TupleConfig, new: TupleConfig) -> bool:
    """The pool cannot be kept: its instances were made from another source or under other limits."""
    return old.source != new.source or old.limits != new.limits


def diff(old: RuntimeConfig, new: RuntimeConfig) -> TupleChanges:
    """The changes from the running config `old` to `new`, in `new`'s tuple order; pure."""
    before = {t.key: t for t in old.tuples}
    after = {t.key for t in new.tuples}
    add, resize, replace = [], [], []
    for t in new.tuples:
        was = before.get(t.key)
        if was is None:
            add.append(t)
        elif _rebuild(was, t):
            replace.append(t)
        elif was != t:
            resize.append(t)
    remove = tuple(t.key for t in old.tuples if t.key not in after)
    return TupleChanges(add=tuple(add), remove=remove, resize=tuple(resize), replace=tuple(replace),
                        restart_needed=restart_fields(old, new), cap_changed=old.max_total_warm != new.max_total_warm)


def restart_fields(old: RuntimeConfig, new: RuntimeConfig) -> tuple[str, ...]:
    """Config keys that differ and cannot change in a running process, by their config-file names."""
    out = [f"settings.{config_key(f.name)}" for f in fields(RuntimeSettings)
           if getattr(old.settings, f.name) != getattr(new.settings, f.name)]
    if old.wasi != new.wasi:
        out.append("wasi")
    if old.compiled_cache_dir != new.compiled_cache_dir:
        out.append("compiledCacheDir")
    return tuple(out)


def capped_floors(tuples: Iterable[TupleConfig], max_total: int,
                  last_used: Mapping[TupleKey, float] | None = None) -> dict[TupleKey, int]:
    """Warm floor per tuple, cut so their sum never exceeds `max_total`: the most recently used tuples
    keep their `warm` count, the coldest lose first (config order among equals); O(n log n) per change."""
    order = list(tuples)
    if last_used:
        position = {t.key: i for i, t in enumerate(order)}
        order.sort(key=lambda t: (-last_used.get(t.key, float("-inf")), position[t.key]))
    remaining, out = max_total, {}
    for t in order:
        out[t.key] = min(t.warm, remaining)
        remaining -= out[t.key]
    return out


@dataclass(slots=True)
class ReloadStatus:
    """What the config watcher has done, for `/readyz` and the metrics (written by the watcher thread only)."""

    watching: bool = False
    applied: int = 0
    refused: int = 0
    last_error: str | None = None
    """Why the newest config was refused (redacted); None once a config applies."""
    restart_needed: tuple[str, ...] = ()
    """Fields the applied config changed that the running process still has its old values for."""

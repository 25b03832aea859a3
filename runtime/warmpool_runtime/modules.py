"""Module store: fetch bytes (file, URL, directory, OCI registry), verify the sha256, compile once per hash."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import wasmtime

from warmpool_contract import SHA256_HEX, SHORT_HASH, redact_url
from warmpool_runtime.errors import (
    MissingImport,
    ModuleError,
    ModuleHashMismatch,
    ModuleTooLarge,
    ModuleUnreachable,
)
from warmpool_runtime.fetch import Request, fetch_url
from warmpool_runtime.layout import HIDDEN_GLOBAL_PREFIX, Layout, LayoutError, export_hidden_globals, scan
from warmpool_runtime.oci import OciSource, fetch_blob
from warmpool_runtime.settings import RuntimeSettings
from warmpool_runtime.source_files import read_headers, ssl_context

log = logging.getLogger(__name__)

WASM_MAGIC = b"\0asm"
WASI_P1 = "wasi_snapshot_preview1"
_DEFAULTS = RuntimeSettings()
_T = TypeVar("_T")
_MAX_SOURCES = 64
"""Sources remembered per cached module (the oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """Exactly one of a file path, an http(s) URL (with optional header files and CA bundle), a directory
    holding `<sha256>.wasm`, or an OCI registry repository."""

    path: str | None = None
    url: str | None = None
    dir: str | None = None
    oci: OciSource | None = None
    headers_dir: str | None = None
    """Beside `url`: a directory whose regular files are request headers (name = file name, value = content)."""
    ca_file: str | None = None
    """Beside `url`: a PEM bundle of the CAs trusted for https (instead of the system's)."""

    def describe(self) -> str:
        """The source as it may be shown anywhere: a URL's credentials (query, userinfo) are hidden, and header
        values are never part of it."""
        if self.oci is not None:
            return self.oci.describe()
        if self.url is not None:
            return redact_url(self.url)
        if self.path is not None:
            return redact_url(self.path)
        return f"{redact_url(str(self.dir))}/<sha256>.wasm"

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        if self.oci is not None:
            return f"ModuleSource(oci={self.oci.describe()!r})"
        kind = "url" if self.url is not None else "path" if self.path is not None else "dir"
        value = redact_url(self.url or self.path or str(self.dir))
        extras = "".join(f", {name}={redact_url(v)!r}" for name, v in
                         (("headers_dir", self.headers_dir), ("ca_file", self.ca_file)) if v is not None)
        return f"ModuleSource({kind}={value!r}{extras})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_bytes(source: ModuleSource, sha256: str, max_bytes: int, settings: RuntimeSettings = _DEFAULTS) -> bytes:
    """Read the module's bytes, refusing anything over `max_bytes` before reading it all."""
    if source.oci is not None:
        return fetch_blob(source.oci, sha256, max_bytes, settings)
    if source.url is not None:
        request = Request(headers=read_headers(source.headers_dir) if source.headers_dir else {},
                          ssl=ssl_context(source.ca_file) if source.ca_file else None)
        return fetch_url(source.url, max_bytes, settings, request=request)
    path = Path(source.path) if source.path is not None else Path(str(source.dir)) / f"{sha256}.wasm"
    shown = source.describe() if source.path is not None else redact_url(str(path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ModuleTooLarge(f"module {shown} is {size} bytes, over the {max_bytes}-byte cap")
        return path.read_bytes()
    except OSError as exc:
        raise ModuleUnreachable(f"cannot read module {shown}: {exc.strerror or type(exc).__name__}") from None


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


@dataclass(slots=True)
class StoreCounts:
    """What a store has done, per module sha256 over its life: the proof that a module shared by several tuples
    is fetched and compiled once."""

    fetched: int = 0
    """Modules read from their source (not from the bytes cache)."""
    compiled: int = 0
    """Modules compiled (not deserialized from the compiled cache)."""
    bytes_cache_hits: int = 0
    """Modules whose bytes came from the on-disk bytes cache, verified."""
    compiled_cache_hits: int = 0
    """Modules deserialized from the on-disk compiled cache."""
    shared: int = 0
    """Loads answered by a module another load had already compiled."""
    discarded: int = 0
    """Cache entries found corrupt (wrong hash, undeserializable) and removed."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    module: wasmtime.Module
    size: int


class _Flights:
    """Single flight: concurrent calls with one key share one run of the work and its outcome (value or error);
    a call after it ended runs the work anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future[Any]] = {}

    def run(self, key: Hashable, work: Callable[[], _T]) -> _T:
        with self._lock:
            future = self._running.get(key)
            leader = future is None
            if future is None:
                future = self._running[key] = Future()
        if not leader:
            return cast("_T", future.result())
        try:
            result = work()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._running[key]


class ModuleStore:
    """Modules by sha256, each compiled once however many tuples use it, and fetched once per source; thread-safe.

    A tuple gets a module only through its own source: the first load of a (module, source) pair fetches from
    that source, which proves the tuple may have it (a tenant naming another tenant's module with a source it
    cannot read gets nothing). Loads of one module from one source at once share one fetch and compile (and its
    error); loads from different sources share one compile (a slow source holds back no tuple that has another).
    With a cache directory (only this user may write it), the verified bytes are kept there as `<sha256>.wasm`
    (verified again when read; a corrupt one is discarded and fetched again) with `<sha256>.sources`, the digests
    of the sources that delivered them, beside the precompiled `<sha256>-<wasmtime version>.cwasm`.
    """

    def __init__(self, engine: wasmtime.Engine, cache_dir: str | None = None,
                 settings: RuntimeSettings = _DEFAULTS) -> None:
        self._engine = engine
        self._settings = settings
        self._loaded: dict[str, _Loaded] = {}
        self._proven: set[tuple[str, ModuleSource]] = set()
        """(sha256, source) pairs whose source delivered the module's bytes."""
        self.layouts: dict[str, Layout] = {}
        """What each module's binary says about its mutable state."""
        self.counts = StoreCounts()
        self._lock = threading.Lock()
        self._disk_lock = threading.Lock()
        """Serialises updates of the bytes cache (not held with `_lock`: writes may be slow)."""
        self._loads = _Flights()
        self._compiles = _Flights()
        self._cache_dir = _owned_cache_dir(cache_dir) if cache_dir else None

    def load(self, source: ModuleSource, sha256: str, max_bytes: int, wasi_enabled: bool) -> wasmtime.Module:
        loaded = self._memory(sha256, source) or self._loads.run(
            (sha256, source, max_bytes),
            lambda: self._memory(sha256, source) or self._fetch_and_compile(source, sha256, max_bytes))
        if loaded.size > max_bytes:  # loaded for a tuple with a larger cap
            raise ModuleTooLarge(f"module {source.describe()} is {loaded.size} bytes, over the {max_bytes}-byte cap")
        check_imports(loaded.module, wasi_enabled)
        return loaded.module

    def _memory(self, sha256: str, source: ModuleSource | None) -> _Loaded | None:
        """The compiled module, if this source has delivered it (any source: None)."""
        with self._lock:
            if source is not None and (sha256, source) not in self._proven:
                return None
            loaded = self._loaded.get(sha256)
            if loaded is not None:
                self.counts.shared += 1
            return loaded

    def _fetch_and_compile(self, source: ModuleSource, sha256: str, max_bytes: int) -> _Loaded:
        data = self._obtain(source, sha256, max_bytes)
        with self._lock:
            self._proven.add((sha256, source))
        return self._compiles.run(sha256, lambda: self._memory(sha256, None) or self._compile(source, sha256, data))

    def _obtain(self, source: ModuleSource, sha256: str, max_bytes: int) -> bytes:
        """The module's verified bytes: from the bytes cache if this source delivered them, or fetched (and cached)."""
        identity = source_identity(source)
        data = self._bytes_from_disk(sha256, max_bytes, identity)
        if data is None:
            data = fetch_bytes(source, sha256, max_bytes, self._settings)
            verify(data, sha256, source.describe())
            self._count("fetched")
            self._bytes_to_disk(sha256, data, identity)
        return data

    def _compile(self, source: ModuleSource, sha256: str, data: bytes) -> _Loaded:
        size = len(data)
        layout: Layout | None = None
        hidden: frozenset[int] = frozenset()
        with contextlib.suppress(LayoutError):  # wasmtime's compile below names the defect
            layout = scan(data)
            if layout.in_place_reset_ok and layout.hidden_globals:
                # Compile with the hidden globals exported, so an in-place reset can restore them.
                hidden = layout.hidden_globals
                data = export_hidden_globals(data, layout)
                layout = replace(layout, exported_globals=layout.exported_globals | hidden)
        module = self._from_disk_cache(sha256, hidden)
        if module is None:
            try:
                module = wasmtime.Module(self._engine, data)
            except wasmtime.WasmtimeError as exc:
                raise ModuleError(f"module {source.describe()} does not compile: {exc}") from exc
            self._count("compiled")
            self._to_disk_cache(sha256, module)
        loaded = _Loaded(module, size)
        with self._lock:
            if layout is not None:
                self.layouts[sha256] = layout
            self._loaded[sha256] = loaded
        return loaded

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.counts, what, getattr(self.counts, what) + 1)

    # The bytes cache -------------------------------------------------------------------------------------
    def _bytes_path(self, sha256: str) -> Path | None:
        return None if self._cache_dir is None else self._cache_dir / f"{sha256}.wasm"

    def _bytes_from_disk(self, sha256: str, max_bytes: int, identity: str) -> bytes | None:
        path = self._bytes_path(sha256)
        if path is None or identity not in self._sources_on_disk(path):
            return None
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ModuleTooLarge(f"module {sha256[:SHORT_HASH]} is {size} bytes, over the {max_bytes}-byte cap")
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("module %s: cached bytes unreadable (%s); fetching again", sha256[:SHORT_HASH],
                        exc.strerror or type(exc).__name__)
            return None
        if sha256_hex(data) != sha256 or not data.startswith(WASM_MAGIC):
            log.warning("module %s: cached bytes do not match their sha256; discarded, fetching again",
                        sha256[:SHORT_HASH])
            path.unlink(missing_ok=True)
            self._count("discarded")
            return None
        self._count("bytes_cache_hits")
        return data

    def _bytes_to_disk(self, sha256: str, data: bytes, identity: str) -> None:
        path = self._bytes_path(sha256)
        if path is None:
            return
        with self._disk_lock:  # the bytes before the source that vouches for them
            sources = self._sources_on_disk(path)
            if not path.exists():
                _write_atomically(path, data)
            if identity not in sources:
                kept = [*sources[-(_MAX_SOURCES - 1):], identity]
                _write_atomically(path.with_suffix(".sources"), "".join(f"{s}\n" for s in kept).encode())

    @staticmethod
    def _sources_on_disk(path: Path) -> list[str]:
        """The digests of the sources that delivered the cached bytes at `path` (none if unreadable)."""
        try:
            text = path.with_suffix(".sources").read_text("ascii")[:_MAX_SOURCES * 65]
        except (OSError, UnicodeDecodeError):
            return []
        return [line for line in text.splitlines() if SHA256_HEX.fullmatch(line)]

    # The compiled cache ----------------------------------------------------------------------------------
    def _cache_path(self, sha256: str) -> Path | None:
        if self._cache_dir is None:
            return None
        return self._cache_dir / f"{sha256}-{importlib.metadata.version('wasmtime')}.cwasm"

    def _from_disk_cache(self, sha256: str, hidden: frozenset[int]) -> wasmtime.Module | None:
        path = self._cache_path(sha256)
        if path is None or not path.exists() or not _owned_by_us(path):
            return None
        try:
            module = wasmtime.Module.deserialize_file(self._engine, str(path))
        except wasmtime.WasmtimeError:
            module = None
        if module is not None and hidden:
            # It must export the hidden globals as this build exports them, or an in-place reset would miss some.
            names = {e.name for e in module.exports}
            if not all(f"{HIDDEN_GLOBAL_PREFIX}{i}" in names for i in hidden):
                module = None
        if module is None:
            path.unlink(missing_ok=True)
            self._count("discarded")
            return None
        self._count("compiled_cache_hits")
        return module

    def _to_disk_cache(self, sha256: str, module: wasmtime.Module) -> None:
        path = self._cache_path(sha256)
        if path is not None:
            _write_atomically(path, module.serialize())


def source_identity(source: ModuleSource) -> str:
    """A digest naming the source in full (credentials-bearing parts included, so never shown, only compared)."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(source), sort_keys=True).encode()).hexdigest()


def _write_atomically(path: Path, data: bytes | bytearray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        log.warning("cannot write cache file %s: %s", path.name, exc.strerror or type(exc).__name__)


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

"""Module store: fetch bytes (file, URL, directory), verify the sha256, compile once per hash."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import stat
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import wasmtime

from warmpool_runtime.errors import (
    MissingImport,
    ModuleError,
    ModuleHashMismatch,
    ModuleTooLarge,
    ModuleUnreachable,
)
from warmpool_runtime.layout import Layout, LayoutError, export_hidden_globals, scan
from warmpool_runtime.settings import RuntimeSettings

WASM_MAGIC = b"\0asm"
WASI_P1 = "wasi_snapshot_preview1"
_DEFAULTS = RuntimeSettings()


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """Exactly one of a file path, an http(s) URL, or a directory holding `<sha256>.wasm`."""

    path: str | None = None
    url: str | None = None
    dir: str | None = None

    def describe(self) -> str:
        return self.path or self.url or f"{self.dir}/<sha256>.wasm"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_bytes(source: ModuleSource, sha256: str, max_bytes: int,
                timeout_s: float = _DEFAULTS.fetch_timeout_seconds) -> bytes:
    """Read the module's bytes, refusing anything over `max_bytes` before reading it all."""
    if source.url is not None:
        return _fetch_url(source.url, max_bytes, timeout_s)
    path = Path(source.path) if source.path is not None else Path(str(source.dir)) / f"{sha256}.wasm"
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ModuleTooLarge(f"module {path} is {size} bytes, over the {max_bytes}-byte cap")
        return path.read_bytes()
    except OSError as exc:
        raise ModuleUnreachable(f"cannot read module {path}: {exc.strerror or exc}") from exc


def _fetch_url(url: str, max_bytes: int, timeout_s: float) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise ModuleUnreachable(f"module URL {url!r} is not http(s)")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data: bytes = response.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ModuleUnreachable(f"cannot fetch module {url}: {exc}") from exc
    if len(data) > max_bytes:
        raise ModuleTooLarge(f"module at {url} is over the {max_bytes}-byte cap")
    return data


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
                 fetch_timeout_seconds: float = _DEFAULTS.fetch_timeout_seconds) -> None:
        self._engine = engine
        self._fetch_timeout_seconds = fetch_timeout_seconds
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
            data = fetch_bytes(source, sha256, max_bytes, self._fetch_timeout_seconds)
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

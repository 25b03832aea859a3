"""Module loading: sources, hash verification, binary-only, size cap, imports, compiled cache."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from tests.runtime.wasm import BYTES, MISSING_IMPORT, START_TRAPS, STATEFUL, WASI, compile_wat, write_module
from warmpool_runtime import errors
from warmpool_runtime.engine import build_engine
from warmpool_runtime.modules import ModuleSource, ModuleStore
from warmpool_runtime.settings import RuntimeSettings

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return build_engine(RuntimeSettings(pool_slots=16, max_memory_bytes=16 << 20))


@pytest.fixture
def module_server(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving tmp_path."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_loads_from_path_url_and_directory(engine, tmp_path, module_server) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    for source in (ModuleSource(path=str(path)), ModuleSource(url=f"{module_server}/{path.name}"),
                   ModuleSource(dir=str(tmp_path))):
        module = ModuleStore(engine).load(source, sha, 1 << 20, wasi_enabled=True)
        assert any(e.name == "add" for e in module.exports)


def test_hash_mismatch_is_refused_with_both_hashes(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(errors.ModuleHashMismatch) as caught:
        ModuleStore(engine).load(ModuleSource(path=str(path)), wrong, 1 << 20, True)
    assert sha in caught.value.message
    assert wrong in caught.value.message


@pytest.mark.parametrize("data", [b"garbage bytes that are not wasm", STATEFUL.encode(), b"\0asm\x01\0\0\0\xff\xff"])
def test_garbage_and_wat_text_are_refused(engine, tmp_path, data: bytes) -> None:
    path = tmp_path / "m.wasm"
    path.write_bytes(data)
    with pytest.raises(errors.ModuleError) as caught:
        ModuleStore(engine).load(ModuleSource(path=str(path)), hashlib.sha256(data).hexdigest(), 1 << 20, True)
    assert caught.value.code == "module_invalid"


def test_oversized_module_is_refused_before_reading(engine, tmp_path, module_server) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    for source in (ModuleSource(path=str(path)), ModuleSource(url=f"{module_server}/{path.name}")):
        with pytest.raises(errors.ModuleTooLarge):
            ModuleStore(engine).load(source, sha, 64, True)


def test_unreachable_sources_say_so(engine, tmp_path, module_server) -> None:
    sha = "0" * 64
    for source in (ModuleSource(path=str(tmp_path / "absent.wasm")), ModuleSource(url=f"{module_server}/absent"),
                   ModuleSource(dir=str(tmp_path))):
        with pytest.raises(errors.ModuleUnreachable):
            ModuleStore(engine).load(source, sha, 1 << 20, True)


def test_missing_import_is_named_at_load_time(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, MISSING_IMPORT)
    with pytest.raises(errors.MissingImport) as caught:
        ModuleStore(engine).load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert "env::host_secret" in caught.value.message


def test_wasi_imports_are_offered_only_when_enabled(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, WASI)
    assert ModuleStore(engine).load(ModuleSource(path=str(path)), sha, 1 << 20, wasi_enabled=True)
    with pytest.raises(errors.MissingImport):
        ModuleStore(engine).load(ModuleSource(path=str(path)), sha, 1 << 20, wasi_enabled=False)


def test_compiled_cache_is_reused_and_only_from_an_owned_directory(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, BYTES)
    cache = tmp_path / "cache"
    ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    cached = list(cache.glob(f"{sha}-*.cwasm"))
    assert len(cached) == 1
    path.unlink()  # the second store must not need the source any more
    module = ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert any(e.name == "upper" for e in module.exports)
    os.chmod(cached[0], 0o666)  # writable by others: never deserialized
    with pytest.raises(errors.ModuleUnreachable):
        ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(ValueError, match="not group/world-writable"):
        ModuleStore(engine, str(shared))


def test_a_module_whose_start_traps_never_becomes_ready(make_runtime, tmp_path) -> None:
    path, sha = write_module(tmp_path, START_TRAPS)
    runtime = make_runtime({"tuples": [{"tenant": "acme", "module": {"sha256": sha, "source": {"path": str(path)}}}]},
                           wait_ready=False)
    assert not runtime.registry.ready
    (status,) = runtime.registry.statuses()
    assert status.error is not None
    assert status.error.code == "instantiate_failed"


def test_compile_wat_helper_produces_binary() -> None:
    assert compile_wat(STATEFUL).startswith(b"\0asm")

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
    assert (cache / f"{sha}.wasm").read_bytes() == path.read_bytes()  # the verified bytes, beside it
    path.unlink()  # the second store must not need the source any more
    store = ModuleStore(engine, str(cache))
    module = store.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert any(e.name == "upper" for e in module.exports)
    assert (store.counts.fetched, store.counts.bytes_cache_hits, store.counts.compiled_cache_hits,
            store.counts.compiled) == (0, 1, 1, 0)
    os.chmod(cached[0], 0o666)  # writable by others: never deserialized, compiled again from the verified bytes
    store = ModuleStore(engine, str(cache))
    store.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert (store.counts.compiled_cache_hits, store.counts.compiled) == (0, 1)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(ValueError, match="not group/world-writable"):
        ModuleStore(engine, str(shared))


def test_a_corrupt_cached_module_is_discarded_and_fetched_again(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, BYTES)
    cache = tmp_path / "cache"
    ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    entry = cache / f"{sha}.wasm"
    entry.write_bytes(entry.read_bytes()[:-1] + b"\x00")  # one byte flipped on disk
    store = ModuleStore(engine, str(cache))
    store.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert (store.counts.discarded, store.counts.fetched, store.counts.bytes_cache_hits) == (1, 1, 0)
    assert hashlib.sha256(entry.read_bytes()).hexdigest() == sha  # replaced by the verified bytes
    path.unlink()
    entry.write_bytes(b"\0asm\x01\0\0\0")  # corrupt, and no source left: unreachable, not the wrong module
    with pytest.raises(errors.ModuleUnreachable):
        ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert not entry.exists()


def test_a_cached_module_over_a_tuples_cap_is_refused(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, BYTES)
    cache = tmp_path / "cache"
    store = ModuleStore(engine, str(cache))
    store.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    with pytest.raises(errors.ModuleTooLarge):  # the same store: the compiled module, another tuple's cap
        store.load(ModuleSource(path=str(path)), sha, 64, True)
    with pytest.raises(errors.ModuleTooLarge):  # a new store: the bytes cache
        ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 64, True)


def test_one_module_from_several_sources_is_compiled_once_and_fetched_from_each(engine, tmp_path,
                                                                               module_server) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    store = ModuleStore(engine)
    sources = (ModuleSource(url=f"{module_server}/{path.name}"), ModuleSource(path=str(path)),
               ModuleSource(dir=str(tmp_path)))
    modules = [store.load(source, sha, 1 << 20, True) for source in sources * 2]
    assert all(m is modules[0] for m in modules)
    # Each source had to deliver the bytes once (that proves the tuple may have them); one compile served all.
    assert (store.counts.fetched, store.counts.compiled, store.counts.shared) == (3, 1, 5)


def test_a_source_that_cannot_deliver_a_module_gets_nothing_from_the_cache(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    cache = tmp_path / "cache"
    store = ModuleStore(engine, str(cache))
    store.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    # Another tenant names the same module with a source it cannot read: neither memory nor disk serves it.
    elsewhere = ModuleSource(path=str(tmp_path / "not-there.wasm"))
    with pytest.raises(errors.ModuleUnreachable):
        store.load(elsewhere, sha, 1 << 20, True)
    with pytest.raises(errors.ModuleUnreachable):
        ModuleStore(engine, str(cache)).load(elsewhere, sha, 1 << 20, True)
    path.unlink()  # the source that delivered them still gets the cached bytes
    assert ModuleStore(engine, str(cache)).load(ModuleSource(path=str(path)), sha, 1 << 20, True)


def test_concurrent_loads_of_one_module_share_one_fetch_and_compile(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    data = path.read_bytes()
    hits: list[str] = []
    release = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            release.wait(30)  # held until every loader has started
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = ModuleStore(engine)
        source = ModuleSource(url=f"http://127.0.0.1:{server.server_address[1]}/m.wasm")
        results: list[wasmtime.Module] = []
        loaders = [threading.Thread(target=lambda: results.append(store.load(source, sha, 1 << 20, True)))
                   for _ in range(8)]
        for loader in loaders:
            loader.start()
        release.set()
        for loader in loaders:
            loader.join(60)
    finally:
        server.shutdown()
        server.server_close()
    assert len(results) == 8
    assert all(m is results[0] for m in results)
    # However the loaders interleaved, the module was downloaded and compiled once.
    assert hits == ["/m.wasm"]
    assert (store.counts.fetched, store.counts.compiled) == (1, 1)


def test_two_tenants_with_one_module_compile_it_once(make_runtime, tmp_path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    runtime = make_runtime({"maxTotalWarm": 4, "tuples": [
        {"tenant": tenant, "module": {"sha256": sha, "source": {"path": str(path)}}, "warmInstancesPerTuple": 1}
        for tenant in ("acme", "globex")]})
    assert {s.tenant for s in runtime.registry.statuses() if s.ready} == {"acme", "globex"}
    counts = runtime.registry.modules.counts
    assert (counts.fetched, counts.compiled) == (1, 1)


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


HIDDEN_GLOBAL = """
(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "bump") (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1))) (global.get $calls)))
"""


def test_a_cached_module_keeps_its_layout_and_must_export_its_hidden_globals(engine, tmp_path) -> None:
    path, sha = write_module(tmp_path, HIDDEN_GLOBAL)
    cache = tmp_path / "cache"
    exported = "__warmpool_global_0"
    first = ModuleStore(engine, str(cache))
    assert exported in {e.name for e in first.load(ModuleSource(path=str(path)), sha, 1 << 20, True).exports}
    again = ModuleStore(engine, str(cache))
    module = again.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert again.counts.compiled_cache_hits == 1
    assert again.layouts[sha].in_place_reset_ok  # read from the cached bytes: an in-place reset stays possible
    assert exported in {e.name for e in module.exports}
    # A compiled file without the export (built otherwise) would let a reset miss the global: it is discarded.
    (cwasm,) = cache.glob(f"{sha}-*.cwasm")
    cwasm.write_bytes(wasmtime.Module(engine, path.read_bytes()).serialize())
    fresh = ModuleStore(engine, str(cache))
    module = fresh.load(ModuleSource(path=str(path)), sha, 1 << 20, True)
    assert (fresh.counts.discarded, fresh.counts.compiled) == (1, 1)
    assert exported in {e.name for e in module.exports}

"""A fleet pod (`--watch-config`) on a real runtime process whose modules come from a loopback HTTP server that
holds chosen downloads until the test lets them go: Ready only once the tuples it started with are warm or failed
(or its startup grace ran out), never unready for tuples added later; background loads bounded in number."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.live import GUARD, SETTINGS, Client, MountedDir, serve, until
from tests.runtime.wasm import BYTES, STATEFUL, compile_wat
from warmpool_contract import WATCH_CONFIG_FLAG

pytestmark = pytest.mark.component

WAIT_FOR_BYTES = {"fetchTimeoutSeconds": 600, "fetchDeadlineSeconds": 600}
"""A held download is waited for as long as the test holds it (the runtime's own bound is not under test)."""


class ModuleServer:
    """Module bytes by URL path on 127.0.0.1; a GET of a held path waits until `release` lets it go (any held
    request, one per release). Counts the requests held now (arrived, not yet answered) and the most at once."""

    def __init__(self, routes: dict[str, bytes], held: set[str]) -> None:
        self.routes, self.held = routes, held
        self.arrived: Counter[str] = Counter()
        self.holding = 0
        self.most_held = 0
        self._lock = threading.Lock()
        self._gate = threading.Semaphore(0)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path
                held = path in owner.held
                with owner._lock:
                    owner.arrived[path] += 1
                    if held:
                        owner.holding += 1
                        owner.most_held = max(owner.most_held, owner.holding)
                if held:
                    owner._gate.acquire(timeout=GUARD)
                    with owner._lock:  # before the answer: a load can only start anew once this one has its bytes
                        owner.holding -= 1
                body = owner.routes.get(path)
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self, n: int = 1) -> None:
        self._gate.release(n)

    def close(self) -> None:
        self.release(1000)  # nothing stays held past the test
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def modules() -> Iterator[tuple[dict[str, bytes], set[str], list[ModuleServer]]]:
    routes: dict[str, bytes] = {}
    held: set[str] = set()
    servers: list[ModuleServer] = []
    yield routes, held, servers
    for server in servers:
        server.close()


def start_server(modules: tuple[dict[str, bytes], set[str], list[ModuleServer]]) -> ModuleServer:
    routes, held, servers = modules
    servers.append(ModuleServer(routes, held))
    return servers[-1]


def url_tuple(tenant: str, url: str, sha: str, warm: int = 1) -> dict[str, Any]:
    return {"tenant": tenant, "module": {"sha256": sha, "source": {"url": url}}, "warmInstancesPerTuple": warm}


def document(*tuples: dict[str, Any], **settings: Any) -> str:
    return json.dumps({"maxTotalWarm": 64, "tuples": list(tuples),
                       "settings": {**SETTINGS, **WAIT_FOR_BYTES, **settings}})


def state(client: Client, tenant: str, sha: str) -> str | None:
    found = client.tuple_state(tenant, sha)
    return None if found is None else str(found["state"])


def test_a_fleet_pod_is_ready_once_its_initial_tuples_are_warm_or_failed_and_stays_ready_for_later_ones(
        tmp_path: Path, modules: tuple[dict[str, bytes], set[str], list[ModuleServer]]) -> None:
    stateful, other = compile_wat(STATEFUL), compile_wat(BYTES)
    sha = hashlib.sha256(stateful).hexdigest()
    routes, held, _ = modules
    routes.update({"/slow.wasm": stateful, "/wrong.wasm": other, "/late.wasm": stateful})
    held.update({"/slow.wasm", "/late.wasm"})
    server = start_server(modules)
    initial = [url_tuple("slow", server.url("/slow.wasm"), sha),
               url_tuple("gone", server.url("/missing.wasm"), sha),   # 404: failed, not retried
               url_tuple("wrong", server.url("/wrong.wasm"), sha)]    # another module's bytes: hash mismatch
    mounted = MountedDir(tmp_path / "etc")
    mounted.write({"config.json": document(*initial)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: server.arrived["/slow.wasm"] == 1, "the slow module is being fetched")
        until(lambda: state(client, "gone", sha) == state(client, "wrong", sha) == "failed", "two tuples failed")
        status, body = client.readyz()
        assert (status, body["ready"], body["reason"], body["loading"], body["startup"]) == (
            503, False, "initial tuples loading", 1, "loading")
        errors = {t["tenant"]: t["error"]["code"] for t in body["tuples"] if t["error"]}
        assert errors == {"gone": "module_unreachable", "wrong": "module_hash_mismatch"}
        status, _, answer = client.call("slow", sha, "add", [1, 2])
        assert (status, answer["error"]["code"]) == (503, "not_ready")

        server.release()  # the slow module arrives: every initial tuple is warm or failed
        status, body = until(lambda: (r := client.readyz())[0] == 200 and r, "the pod turns ready")
        assert (body["ready"], body["reason"], body["loading"], body["startup"]) == (True, None, 0, "settled")
        assert state(client, "slow", sha) == "warm"
        assert client.call("slow", sha, "add", [1, 2])[::2] == (200, {"results": [3]})

        # Later tuples, one whose download hangs and one that fails, leave the pod ready.
        mounted.write({"config.json": document(*initial, url_tuple("late", server.url("/late.wasm"), sha),
                                               url_tuple("late404", server.url("/late-missing.wasm"), sha))})
        until(lambda: server.arrived["/late.wasm"] == 1, "the late module is being fetched")
        until(lambda: state(client, "late404", sha) == "failed", "the late failing tuple failed")
        status, body = client.readyz()
        assert (status, body["ready"], body["reason"], body["startup"]) == (200, True, None, "settled")
        assert state(client, "late", sha) == "loading"
        status, _, answer = client.call("late", sha, "add", [1, 2])
        assert (status, answer["error"]["code"]) == (503, "not_ready")
    log = next(tmp_path.glob("runtime-*.log")).read_text()
    assert "every tuple of the initial config is warm or failed" in log


def test_a_fleet_pod_whose_initial_download_hangs_turns_ready_when_its_startup_grace_ends(
        tmp_path: Path, modules: tuple[dict[str, bytes], set[str], list[ModuleServer]]) -> None:
    stateful = compile_wat(STATEFUL)
    sha = hashlib.sha256(stateful).hexdigest()
    routes, held, _ = modules
    routes["/hangs.wasm"] = stateful
    held.add("/hangs.wasm")
    server = start_server(modules)
    mounted = MountedDir(tmp_path / "etc")
    mounted.write({"config.json": document(url_tuple("hangs", server.url("/hangs.wasm"), sha),
                                           startupGraceSeconds=0.5)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: server.arrived["/hangs.wasm"] == 1, "the module is being fetched")
        _, body = until(lambda: (r := client.readyz())[0] == 200 and r, "the pod turns ready")
        assert (body["ready"], body["reason"], body["loading"], body["startup"]) == (True, None, 0, "graceExpired")
        assert state(client, "hangs", sha) == "loading"  # still held by the server
    log = next(tmp_path.glob("runtime-*.log")).read_text()
    assert "1 tuple(s) of the initial config still loading after settings.startupGraceSeconds" in log
    assert f"hangs/{sha[:12]}" in log


def test_a_config_adding_many_tuples_fetches_parallel_loads_of_them_at_once(
        tmp_path: Path, modules: tuple[dict[str, bytes], set[str], list[ModuleServer]]) -> None:
    stateful = compile_wat(STATEFUL)
    sha = hashlib.sha256(stateful).hexdigest()
    routes, held, _ = modules
    paths = [f"/m/{i}.wasm" for i in range(10)]  # one source each: every tuple fetches
    routes.update(dict.fromkeys(paths, stateful))
    held.update(paths)
    server = start_server(modules)
    mounted = MountedDir(tmp_path / "etc")
    mounted.write({"config.json": document(parallelLoads=3)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: client.readyz()[0] == 200, "ready with no tuples")
        added = [url_tuple(f"t{i}", server.url(path), sha) for i, path in enumerate(paths)]
        mounted.write({"config.json": document(*added, parallelLoads=3)})
        until(lambda: server.holding == 3, "three downloads in flight")
        _, body = client.readyz()
        assert [t["state"] for t in body["tuples"]] == ["loading"] * 10  # the rest queue, loading
        for remaining in range(10, 0, -1):
            until(lambda r=remaining: server.holding >= min(3, r), "the next queued download starts")
            server.release()
        until(lambda: all(t["state"] == "warm" for t in client.readyz()[1]["tuples"]), "every tuple is warm")
        assert sum(server.arrived[p] for p in paths) == 10
        assert server.most_held == 3


def test_an_initial_tuple_that_a_later_config_removes_while_it_loads_no_longer_holds_the_pod_back(
        tmp_path: Path, modules: tuple[dict[str, bytes], set[str], list[ModuleServer]]) -> None:
    stateful = compile_wat(STATEFUL)
    sha = hashlib.sha256(stateful).hexdigest()
    routes, held, _ = modules
    routes["/hangs.wasm"] = stateful
    held.add("/hangs.wasm")
    server = start_server(modules)
    mounted = MountedDir(tmp_path / "etc")
    mounted.write({"config.json": document(url_tuple("hangs", server.url("/hangs.wasm"), sha))})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: server.arrived["/hangs.wasm"] == 1, "the module is being fetched")
        status, body = client.readyz()
        assert (status, body["reason"], body["loading"]) == (503, "initial tuples loading", 1)
        mounted.write({"config.json": document()})
        _, body = until(lambda: (r := client.readyz())[0] == 200 and r, "the pod turns ready")
        assert (body["ready"], body["startup"], body["tuples"]) == (True, "settled", [])

"""`warmpool runtime serve --watch-config` on a real process: tuples added, removed and resized live through a
kubelet-style ConfigMap directory, with other tuples undisturbed; bad configs refused; readiness per pod."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.live import SETTINGS, Client, MountedDir, SteadyLoad, free_port, serve, until
from tests.runtime.wasm import BYTES, NAP_C, STATEFUL, build_c, tuple_entry, write_module
from warmpool_contract import WATCH_CONFIG_FLAG
from warmpool_runtime.config import MAX_CONFIG_BYTES

pytestmark = pytest.mark.component


def document(*tuples: dict[str, Any], **settings: Any) -> str:
    return json.dumps({"maxTotalWarm": 64, "limits": {"timeoutMs": 10_000}, "tuples": list(tuples),
                       "settings": {**SETTINGS, **settings}})


@pytest.fixture
def mounted(tmp_path: Path) -> MountedDir:
    return MountedDir(tmp_path / "etc")


def applied(client: Client, n: int) -> bool:
    return bool(client.readyz()[1]["config"]["applied"] >= n)


def test_tuples_are_added_resized_and_removed_live_without_disturbing_a_tuple_under_load(
        tmp_path: Path, mounted: MountedDir) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    bpath, bsha = write_module(tmp_path, BYTES)
    steady = tuple_entry("steady", path, sha, 8)
    mounted.write({"config.json": document(steady)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: client.readyz()[0] == 200 and client.tuple_state("steady", sha)["state"] == "warm",
              "the steady tuple is warm")
        misses_before = client.metric("tensor_wasm_pool_draws_total", tenant="steady", result="miss")
        with SteadyLoad(client.port, "steady", sha, "add", [2, 3]) as load:
            # Add a tuple of another tenant, and a second module of the same tenant.
            mounted.write({"config.json": document(steady, tuple_entry("beta", bpath, bsha, 2),
                                                   tuple_entry("steady", bpath, bsha, 1))})
            until(lambda: (client.tuple_state("beta", bsha) or {}).get("state") == "warm", "beta is warm")
            until(lambda: (client.tuple_state("steady", bsha) or {}).get("state") == "warm", "steady/bytes warm")
            status, _, body = client.request("POST", f"/v1/beta/{bsha}/upper", b"live",
                                             {"Content-Type": "application/octet-stream"})
            assert (status, body) == (200, b"LIVE")

            # Resize it: the floor follows, the pool is the same (its hits are kept).
            hits = client.metric("tensor_wasm_pool_draws_total", tenant="beta", result="hit")
            mounted.write({"config.json": document(steady, tuple_entry("beta", bpath, bsha, 5),
                                                   tuple_entry("steady", bpath, bsha, 1))})
            until(lambda: client.tuple_state("beta", bsha)["target"] == 5, "beta's floor is 5")
            until(lambda: client.tuple_state("beta", bsha)["warm"] == 5, "beta holds 5 warm")
            assert client.metric("tensor_wasm_pool_draws_total", tenant="beta", result="hit") == hits == 1

            # Remove both added tuples: calls to them are refused naming the tuple.
            mounted.write({"config.json": document(steady)})
            until(lambda: client.tuple_state("beta", bsha) is None, "beta is gone from /readyz")
            status, _, answer = client.call("beta", bsha, "upper", [])
            assert (status, answer["error"]["code"]) == (404, "unknown_tenant")
            assert "beta" in answer["error"]["message"]
            status, _, answer = client.call("steady", bsha, "upper", [])
            assert (status, answer["error"]["code"]) == (404, "unknown_module")
            assert bsha in answer["error"]["message"]
            served_during_changes = load.total
        assert served_during_changes > 0
        assert set(load.statuses) == {200}, load.statuses
        assert not load.wrong
        assert client.metric("tensor_wasm_pool_draws_total", tenant="steady", result="miss") == misses_before == 0
        _, body = client.readyz()
        assert body["config"] == {"watching": True, "applied": 3, "refused": 0, "lastError": None,
                                  "restartNeeded": []}
        assert client.metric("tensor_wasm_config_reloads_total", result="applied") == 3
        assert client.metric("tensor_wasm_tuples", state="warm") == 1


def test_a_removed_tuple_finishes_its_call_in_flight_then_answers_404(tmp_path: Path, mounted: MountedDir) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    npath, nsha = build_c(tmp_path, NAP_C, "nap")
    steady = tuple_entry("steady", path, sha, 2)
    mounted.write({"config.json": document(steady, tuple_entry("sleepy", npath, nsha, 1))})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: client.readyz()[0] == 200 and client.tuple_state("sleepy", nsha)["state"] == "warm",
              "the sleepy tuple is warm")
        outcome: list[tuple[int, dict[str, str], Any]] = []
        caller = threading.Thread(target=lambda: outcome.append(client.call("sleepy", nsha, "nap", [1500])))
        caller.start()
        until(lambda: client.metric("tensor_wasm_pool_in_flight", tenant="sleepy") == 1, "the nap is in flight")

        mounted.write({"config.json": document(steady)})
        until(lambda: client.tuple_state("sleepy", nsha) is None, "the removal is applied")
        status, _, answer = client.call("sleepy", nsha, "nap", [1])
        assert (status, answer["error"]["code"]) == (404, "unknown_tenant")
        caller.join(60)
        ((status, _, answer),) = outcome
        assert (status, answer) == (200, {"results": [7]})
        until(lambda: client.metric("tensor_wasm_pool_in_flight", tenant="sleepy") == 0, "nothing left in flight")
        assert client.call("steady", sha, "add", [1, 1])[2] == {"results": [2]}


def test_an_unreachable_source_leaves_the_pod_ready_and_the_tuple_failed(tmp_path: Path, mounted: MountedDir) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    closed = free_port()  # nothing listens there
    far = {"tenant": "far", "module": {"sha256": "ab" * 32, "source": {
        "url": f"http://user:pa55w0rd@127.0.0.1:{closed}/m.wasm?X-Amz-Signature=s3cr3t"}}, "warmInstancesPerTuple": 2}
    mounted.write({"config.json": document(tuple_entry("steady", path, sha, 2), far)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        state = until(lambda: (s := client.tuple_state("far", "ab" * 32)) and s["state"] == "failed" and s,
                      "the far tuple failed")
        until(lambda: (s := client.tuple_state("steady", sha)) and s["state"] == "warm", "the steady tuple is warm")
        status, body = client.readyz()
        assert (status, body["ready"], body["tuplesGateReadiness"]) == (200, True, False)
        assert state["error"]["code"] == "module_unreachable"
        assert state["module"] == ("ab" * 32)[:12]
        text = json.dumps(body)
        assert "s3cr3t" not in text
        assert "pa55w0rd" not in text
        assert client.metric("tensor_wasm_tuple_ready", tenant="far") == 0
        assert client.metric("tensor_wasm_tuple_ready", tenant="steady") == 1
        assert client.metric("tensor_wasm_tuples", state="failed") == 1
        status, _, answer = client.call("far", "ab" * 32, "f", [])
        assert (status, answer["error"]["code"], answer["error"]["cause"]) == (503, "not_ready", "module_unreachable")


def test_a_config_that_does_not_parse_is_refused_and_the_running_set_kept(tmp_path: Path, mounted: MountedDir) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    steady = tuple_entry("steady", path, sha, 2)
    mounted.write({"config.json": document(steady)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: client.readyz()[0] == 200, "ready")
        mounted.write({"config.json": json.dumps({"tuples": [{"tenant": "Bad_Name"}], "settings": SETTINGS})})
        until(lambda: client.readyz()[1]["config"]["refused"] == 1, "the bad config is refused")
        status, body = client.readyz()
        assert status == 200
        assert "tuples[0].tenant" in body["config"]["lastError"]
        assert [t["tenant"] for t in body["tuples"]] == ["steady"]
        assert client.metric("tensor_wasm_config_reloads_total", result="refused") == 1
        assert client.call("steady", sha, "add", [2, 2])[2] == {"results": [4]}

        mounted.write({"config.json": "{not json"})
        until(lambda: client.readyz()[1]["config"]["refused"] == 2, "the broken file is refused")

        # Settings that need a restart are reported; the tuples change anyway.
        mounted.write({"config.json": document(steady, tuple_entry("beta", path, sha, 1), workers=2)})
        until(lambda: applied(client, 1), "the good config applies")
        _, body = client.readyz()
        assert body["config"]["lastError"] is None
        assert body["config"]["restartNeeded"] == ["settings.workers"]
        until(lambda: (client.tuple_state("beta", sha) or {}).get("state") == "warm", "beta is warm")


def test_a_config_file_over_its_cap_is_refused_and_the_running_set_kept(tmp_path: Path, mounted: MountedDir) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    steady = tuple_entry("steady", path, sha, 1)
    mounted.write({"config.json": document(steady)})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        until(lambda: client.readyz()[0] == 200, "ready")
        grown = document(steady, tuple_entry("beta", path, sha, 1))
        mounted.write({"config.json": grown + " " * (MAX_CONFIG_BYTES + 1 - len(grown))})  # valid JSON, too big
        until(lambda: client.readyz()[1]["config"]["refused"] == 1, "the oversized file is refused")
        status, body = client.readyz()
        assert status == 200
        assert f"{MAX_CONFIG_BYTES + 1} bytes, over the cap of {MAX_CONFIG_BYTES}" in body["config"]["lastError"]
        assert [t["tenant"] for t in body["tuples"]] == ["steady"]
        assert client.metric("tensor_wasm_config_reloads_total", result="refused") == 1

        mounted.write({"config.json": grown})  # the same tuples within the cap apply
        until(lambda: (client.tuple_state("beta", sha) or {}).get("state") == "warm", "beta is warm")
        assert client.readyz()[1]["config"]["lastError"] is None
    log = next(tmp_path.glob("runtime-*.log")).read_text()
    assert f"config: refused, the running tuples are kept: config {mounted.root / 'config.json'} is" in log


def test_a_fleet_starts_with_no_tuples_and_ready(tmp_path: Path, mounted: MountedDir) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    mounted.write({"config.json": document()})
    with serve(mounted.root / "config.json", WATCH_CONFIG_FLAG) as (_, client):
        _, body = until(lambda: (r := client.readyz())[0] == 200 and r, "ready with no tuples")
        assert body["tuples"] == []
        mounted.write({"config.json": document(tuple_entry("first", path, sha, 1))})
        until(lambda: (client.tuple_state("first", sha) or {}).get("state") == "warm", "the first tuple is warm")
        assert client.call("first", sha, "add", [40, 2])[2] == {"results": [42]}


def test_without_watching_the_pod_is_ready_only_once_every_tuple_is_warm(tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    config = tmp_path / "etc" / "config.json"
    config.parent.mkdir()
    far = {"tenant": "far", "module": {"sha256": "cd" * 32, "source": {"url": f"http://127.0.0.1:{free_port()}/m"}}}
    config.write_text(document(tuple_entry("steady", path, sha, 1), far))
    with serve(config) as (_, client):
        until(lambda: (client.tuple_state("far", "cd" * 32) or {}).get("state") == "failed", "far failed")
        until(lambda: (client.tuple_state("steady", sha) or {}).get("state") == "warm", "steady warm")
        status, body = client.readyz()
        assert (status, body["ready"], body["tuplesGateReadiness"], body["config"]["watching"]) == (
            503, False, True, False)
        assert (body["reason"], body["loading"], body["startup"]) == ("tuples not warm", 1, None)
        config.write_text(document(tuple_entry("steady", path, sha, 1)))  # not watched: nothing changes
        assert client.tuple_state("far", "cd" * 32) is not None

"""The config diff, the warm cap by recent use, and the config watcher (pure, and on a real in-process runtime)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.runtime.conftest import invoke, settle, wait_until
from tests.runtime.live import MountedDir
from tests.runtime.wasm import STATEFUL, tuple_entry, write_module
from warmpool_runtime.config import ConfigError, parse_config
from warmpool_runtime.errors import UnknownTenant
from warmpool_runtime.metrics import build_registry
from warmpool_runtime.reconfig import capped_floors, diff
from warmpool_runtime.watch import ConfigWatcher, redact_error

SHA, OTHER = "a" * 64, "b" * 64


def entry(tenant: str = "acme", sha: str = SHA, warm: int = 2, **extra: Any) -> dict[str, Any]:
    return {"tenant": tenant, "module": {"sha256": sha, "source": {"path": f"/m/{sha}.wasm"}},
            "warmInstancesPerTuple": warm, **extra}


def config(*tuples: dict[str, Any], **top: Any) -> Any:
    return parse_config({"tuples": list(tuples), **top})


@pytest.mark.unit
def test_the_diff_names_each_tuple_change_and_leaves_the_others_alone() -> None:
    old = config(entry("keep"), entry("grow"), entry("gone"), entry("limits"), entry("moved"), entry("auth"))
    new = config(entry("keep"), entry("grow", warm=5), entry("limits", limits={"timeoutMs": 5}),
                 {**entry("moved"), "module": {"sha256": SHA, "source": {"url": "http://127.0.0.1/m.wasm"}}},
                 entry("auth", tokenDigestsFile="/var/run/warmpool/tokens/auth"), entry("new", OTHER))
    changes = diff(old, new)
    assert [t.tenant for t in changes.add] == ["new"]
    assert changes.remove == (("gone", SHA),)
    assert [t.tenant for t in changes.resize] == ["grow", "auth"]
    assert [t.tenant for t in changes.replace] == ["limits", "moved"]
    assert (changes.restart_needed, changes.cap_changed, changes.empty) == ((), False, False)
    assert diff(new, new).empty


@pytest.mark.unit
def test_the_diff_of_a_new_module_hash_is_a_removal_and_an_addition() -> None:
    changes = diff(config(entry(sha=SHA)), config(entry(sha=OTHER)))
    assert (changes.remove, [t.sha256 for t in changes.add]) == ((("acme", SHA),), [OTHER])


@pytest.mark.unit
def test_settings_wasi_and_the_cache_dir_need_a_restart_and_the_cap_does_not() -> None:
    old = config(entry())
    new = config(entry(), maxTotalWarm=3, wasi=False, compiledCacheDir="/tmp/c",
                 settings={"workers": 2, "configPollSeconds": 5})
    changes = diff(old, new)
    assert changes.restart_needed == ("settings.workers", "settings.configPollSeconds", "wasi", "compiledCacheDir")
    assert changes.cap_changed
    assert (changes.add, changes.remove) == ((), ())


@pytest.mark.unit
def test_an_empty_tuple_list_is_a_fleet_with_no_members_yet() -> None:
    assert config().tuples == ()
    with pytest.raises(ConfigError, match="tuples must be given"):
        parse_config({})


@pytest.mark.unit
@pytest.mark.parametrize("value", ["relative/path", 3, ""])
def test_a_token_digests_file_must_be_an_absolute_path(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"tuples\[0\]\.tokenDigestsFile must be an absolute path"):
        config(entry(tokenDigestsFile=value))


@pytest.mark.unit
def test_the_cap_takes_warm_slots_from_the_least_recently_used_tuples_first() -> None:
    tuples = config(entry("a", warm=3), entry("b", warm=3), entry("c", warm=3)).tuples
    assert capped_floors(tuples, 5) == {("a", SHA): 3, ("b", SHA): 2, ("c", SHA): 0}  # config order
    used = {("a", SHA): 1.0, ("b", SHA): 3.0, ("c", SHA): 2.0}
    assert capped_floors(tuples, 5, used) == {("b", SHA): 3, ("c", SHA): 2, ("a", SHA): 0}
    assert capped_floors(tuples, 100, used) == {("a", SHA): 3, ("b", SHA): 3, ("c", SHA): 3}
    # Equal recency: config order decides.
    assert capped_floors(tuples, 4, dict.fromkeys(used, 1.0)) == {("a", SHA): 3, ("b", SHA): 1, ("c", SHA): 0}


@pytest.mark.unit
def test_config_errors_shown_anywhere_have_their_urls_redacted() -> None:
    message = redact_error("while parsing\n  url: https://u:pa55@h.example/m.wasm?X-Amz-Signature=s3cr3t\n  ^")
    assert "s3cr3t" not in message
    assert "pa55" not in message
    assert "https://h.example/m.wasm?<redacted>" in message


@pytest.mark.component
async def test_under_the_cap_the_coldest_tuple_loses_its_idle_instances_first(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    runtime = make_runtime({"maxTotalWarm": 4, "tuples": [tuple_entry(t, path, sha, 2) for t in ("a", "b", "c")]})
    pools = {t: runtime.registry.pools[(t, sha)] for t in ("a", "b", "c")}
    assert [pools[t].floor for t in "abc"] == [2, 2, 0]  # nothing used yet: config order

    assert await invoke(runtime, "c", sha, "add", [1, 2]) == [3]
    runtime.registry.tick(time.monotonic() + 100)
    assert [pools[t].floor for t in "abc"] == [2, 0, 2]
    wait_until(lambda: pools["c"].warm == 2)
    assert (pools["a"].warm, pools["b"].warm) == (2, 0)
    assert [pools[t].stats.evictions for t in "abc"] == [0, 2, 0]

    assert await invoke(runtime, "b", sha, "add", [1, 2]) == [3]
    runtime.registry.tick(time.monotonic() + 200)
    assert [pools[t].floor for t in "abc"] == [0, 2, 2]
    assert [pools[t].stats.evictions for t in "abc"] == [2, 2, 0]
    wait_until(lambda: pools["b"].warm == 2)

    text = generate_latest(build_registry(runtime.registry.pools.values)).decode()
    assert f'tensor_wasm_pool_evictions_total{{module="{sha[:12]}",tenant="a"}} 2.0' in text


@pytest.mark.component
def test_the_watcher_applies_a_kubelet_style_swap_and_refuses_a_bad_file(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, 1)], "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    mounted = MountedDir(tmp_path / "etc")
    mounted.write({"config.json": json.dumps(raw)})
    watcher = ConfigWatcher(runtime, str(mounted.root / "config.json"))
    assert not watcher.check(str(mounted.root / "config.json"))  # the config the runtime started with
    assert not watcher.check(str(mounted.root / "config.json"))  # unchanged: not even read
    mounted.write({"config.json": json.dumps(raw, indent=2)})
    assert not watcher.check(str(mounted.root / "config.json"))  # another text of the same config

    mounted.write({"config.json": json.dumps({**raw, "tuples": [*raw["tuples"], tuple_entry("b", path, sha, 1)]})})
    assert watcher.check(str(mounted.root / "config.json"))
    wait_until(lambda: ("b", sha) in runtime.registry.pools)
    mounted.write({"config.json": json.dumps({**raw, "tuples": "nope"})})
    assert not watcher.check(str(mounted.root / "config.json"))
    assert (runtime.reloads.applied, runtime.reloads.refused) == (1, 1)
    assert runtime.reloads.last_error == "tuples must be a list"
    assert set(runtime.registry.pools) == {("a", sha), ("b", sha)}  # the running set is kept
    mounted.write({"config.json": json.dumps(raw)})  # back to the first config: b is removed
    assert watcher.check(str(mounted.root / "config.json"))
    assert runtime.reloads.last_error is None
    assert set(runtime.registry.pools) == {("a", sha)}


@pytest.mark.component
async def test_a_tuple_whose_limits_change_is_rebuilt_and_its_old_pool_drained(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, 2), tuple_entry("b", path, sha, 2)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    old, other = runtime.registry.pools[("a", sha)], runtime.registry.pools[("b", sha)]
    assert await invoke(runtime, "a", sha, "add", [1, 2]) == [3]

    changed = {**raw, "tuples": [tuple_entry("a", path, sha, 2, timeoutMs=5000), raw["tuples"][1]]}
    changes = runtime.apply(parse_config(changed))
    assert ([t.tenant for t in changes.replace], changes.restart_needed) == (["a"], ())
    await settle(lambda: runtime.registry.pools[("a", sha)] is not old)
    new = runtime.registry.pools[("a", sha)]
    assert new.template.limits.timeout_ms == 5000
    assert await invoke(runtime, "a", sha, "add", [2, 2]) == [4]
    await settle(lambda: old.floor == 0 and old.warm == 0)  # drained: its instances are freed
    assert runtime.registry.pools[("b", sha)] is other
    assert other.warm == 2

    # A replacement that cannot load: the tuple fails, and its old pool is not kept serving the old limits.
    broken = {**raw, "tuples": [tuple_entry("a", path, sha, 2, memoryBytes=1024), raw["tuples"][1]]}
    runtime.apply(parse_config(broken))
    await settle(lambda: ("a", sha) in runtime.registry.load_errors)
    assert ("a", sha) not in runtime.registry.pools
    (state,) = [s for s in runtime.registry.statuses() if s.tenant == "a"]
    assert state.state == "failed"
    await settle(lambda: new.floor == 0 and new.warm == 0)  # the call's instance came back on the loop
    assert runtime.registry.pools[("b", sha)] is other


@pytest.mark.component
async def test_a_removed_tuple_is_refused_at_once_and_its_pool_freed(make_runtime, tmp_path: Path) -> None:
    import gc
    import weakref

    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, 2), tuple_entry("b", path, sha, 2)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    assert await invoke(runtime, "a", sha, "add", [1, 2]) == [3]
    gone = weakref.ref(runtime.registry.pools[("a", sha)])
    version = runtime.registry.version

    changes = runtime.apply(parse_config({**raw, "tuples": [raw["tuples"][1]]}))
    assert changes.remove == (("a", sha),)
    assert runtime.registry.version > version  # cached routes are dropped
    with pytest.raises(UnknownTenant, match="'a'"):
        runtime.registry.target("a", sha, "add")
    assert await invoke(runtime, "b", sha, "add", [2, 3]) == [5]

    def freed() -> bool:
        gc.collect()
        return gone() is None

    await settle(freed)  # no thread, table or pending reset keeps the removed pool (and its instances) alive


@pytest.mark.unit
async def test_a_module_leaves_memory_with_the_last_tuple_that_uses_it(make_runtime, tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, 1), tuple_entry("b", path, sha, 1)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    store = runtime.registry.modules
    assert await invoke(runtime, "a", sha, "add", [1, 2]) == [3]
    runtime.apply(parse_config({**raw, "tuples": [raw["tuples"][1]]}))
    await settle(lambda: not any(t.name == "tuple-drain" for t in threading.enumerate()))
    # "a" is drained; "b" still uses the module
    assert store._memory(sha, None) is not None

    runtime.apply(parse_config({**raw, "tuples": []}))
    await settle(lambda: store._memory(sha, None) is None)
    assert sha not in store.layouts


@pytest.mark.component
@pytest.mark.parametrize("warm", [1, 2])
async def test_a_removed_tuple_is_freed_without_any_further_call(make_runtime, tmp_path: Path, warm: int) -> None:
    import gc
    import weakref

    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, warm), tuple_entry("b", path, sha, warm)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    assert await invoke(runtime, "a", sha, "add", [1, 2]) == [3]
    await settle(lambda: runtime.registry.pools[("a", sha)].warm == warm)  # the call's instance is back, reset
    routes = runtime.registry.route_cache()  # as a server caches the target it resolved for a path
    routes[f"/v1/a/{sha}/add".encode()] = runtime.registry.target("a", sha, "add")
    late = runtime.registry.target("a", sha, "add")  # resolved before the change, cached after it
    gone = weakref.ref(runtime.registry.pools[("a", sha)])

    runtime.apply(parse_config({**raw, "tuples": [raw["tuples"][1]]}))
    routes[f"/v1/a/{sha}/add".encode()] = late
    del late
    await settle(lambda: not any(t.name == "tuple-drain" for t in threading.enumerate()))

    def freed() -> bool:
        gc.collect()
        return gone() is None

    await settle(freed)  # no other traffic: nothing but the removed tuple's own drain may have run
    assert not routes


@pytest.mark.component
async def test_a_removed_tuple_called_over_http_is_freed_without_any_further_request(
        make_runtime, tmp_path: Path) -> None:
    import asyncio
    import gc
    import weakref

    import aiohttp

    from warmpool_runtime.metrics import build_registry
    from warmpool_runtime.server import serve

    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, 1), tuple_entry("b", path, sha, 1)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(runtime, build_registry(runtime.registry.pools.values), "127.0.0.1", 0,
                                     lambda s: started.set_result(s.sockets[0].getsockname()[1])))
    port = await started
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # the second call goes by the server's cached route
            async with session.post(f"http://127.0.0.1:{port}/v1/a/{sha}/add", json={"args": [1, 2]}) as resp:
                assert (resp.status, await resp.json()) == (200, {"results": [3]})
    gone = weakref.ref(runtime.registry.pools[("a", sha)])

    runtime.apply(parse_config({**raw, "tuples": [raw["tuples"][1]]}))

    def freed() -> bool:
        gc.collect()
        return gone() is None

    try:
        await settle(freed)  # no request came in since the removal
    finally:
        task.cancel()


@pytest.mark.component
async def test_a_removed_tuple_whose_last_call_failed_on_a_worker_is_freed(make_runtime, tmp_path: Path) -> None:
    import gc
    import weakref

    from warmpool_runtime.errors import GuestTrap

    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry("a", path, sha, 1), tuple_entry("b", path, sha, 1)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20, "inlineBudgetMs": 0, "workers": 1}}
    runtime = make_runtime(raw)
    with pytest.raises(GuestTrap):  # the worker hands the trap (and its traceback) to the caller
        await invoke(runtime, "a", sha, "trap", [])
    await settle(lambda: runtime.registry.pools[("a", sha)].warm == 1)
    gone = weakref.ref(runtime.registry.pools[("a", sha)])

    runtime.apply(parse_config({**raw, "tuples": [raw["tuples"][1]]}))

    def freed() -> bool:
        gc.collect()
        return gone() is None

    await settle(freed)  # the idle worker thread keeps nothing of its last call


@pytest.mark.component
async def test_one_thread_drains_every_removed_pool_and_busy_ones_hold_no_other_back(make_runtime,
                                                                                      tmp_path: Path) -> None:
    import gc
    import weakref

    path, sha = write_module(tmp_path, STATEFUL)
    raw = {"tuples": [tuple_entry(f"t{i}", path, sha, 1, timeoutMs=60_000) for i in range(20)],
           "settings": {"poolSlots": 64, "maxMemoryBytes": 16 << 20}}
    runtime = make_runtime(raw)
    busy = [runtime.registry.pools[(f"t{i}", sha)] for i in range(5)]
    held = [pool.acquire() for pool in busy]  # as calls in flight hold them
    assert all(pool.busy for pool in busy)
    others = [weakref.ref(runtime.registry.pools[(f"t{i}", sha)]) for i in range(5, 20)]

    def drainers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "tuple-drain")

    runtime.apply(parse_config({**raw, "tuples": []}))

    def others_freed() -> bool:
        gc.collect()
        return all(ref() is None for ref in others)

    await settle(others_freed)  # while the busy pools still wait for their calls
    assert drainers() == 1  # one thread waits for all five, not one each
    assert [pool.floor for pool in busy] == [1] * 5
    for pool, instance in zip(busy, held, strict=True):
        assert instance is not None
        pool.release(instance)
    await settle(lambda: drainers() == 0)
    assert [pool.floor for pool in busy] == [0] * 5  # drained once their calls were over

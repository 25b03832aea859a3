"""Fixtures that build real runtimes (real wasmtime) from WAT modules in a temp dir."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.wasm import STATEFUL, tuple_entry, write_module
from warmpool_runtime.config import parse_config
from warmpool_runtime.lanes import CallArgs, CallResult, PendingCall
from warmpool_runtime.service import Runtime

SMALL_ENGINE = {"poolSlots": 64, "maxMemoryBytes": 16 << 20}
"""Settings that keep each test's engine small (the pooling allocator reserves every slot up front)."""

_serving: weakref.WeakKeyDictionary[Runtime, asyncio.AbstractEventLoop] = weakref.WeakKeyDictionary()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the background refill thread will make true (a liveness bound, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


async def settle(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """`wait_until` for async tests: yields to the event loop, where resets are scheduled."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def call(runtime: Runtime, tenant: str, sha256: str, export: str, args: CallArgs) -> CallResult | PendingCall:
    """A call on the path the HTTP surface takes: resolve the target, hand it to the call lanes.

    The result when the call completed inline, else a Future of it. Attaches the runtime to the
    running loop on first use, as serving does.
    """
    loop = asyncio.get_running_loop()
    if _serving.get(runtime) is not loop:
        runtime.serve_on(loop)
        _serving[runtime] = loop
    return runtime.lanes.call(runtime.registry.target(tenant, sha256, export), args)


async def invoke(runtime: Runtime, tenant: str, sha256: str, export: str, args: CallArgs) -> CallResult:
    """`call`, awaited when it went to a worker."""
    result = call(runtime, tenant, sha256, export, args)
    return await result if isinstance(result, asyncio.Future) else result


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    runtimes: list[Runtime] = []

    def build(raw: dict[str, Any], *, wait_ready: bool = True, **kwargs: Any) -> Runtime:
        raw = {**raw, "settings": {**SMALL_ENGINE, **raw.get("settings", {})}}
        runtime = Runtime(parse_config(raw), **kwargs)
        runtime.start()
        runtime.load_all()
        runtimes.append(runtime)
        if wait_ready:
            assert not runtime.registry.load_errors, runtime.registry.load_errors
            wait_until(lambda: runtime.registry.ready)
        return runtime

    yield build
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def stateful(tmp_path: Path) -> tuple[Path, str]:
    return write_module(tmp_path, STATEFUL)


@pytest.fixture
def one_tuple(stateful: tuple[Path, str]) -> Callable[..., dict[str, Any]]:
    def raw(warm: int = 2, **limits: Any) -> dict[str, Any]:
        path, sha = stateful
        return {"tuples": [tuple_entry("acme", path, sha, warm, **limits)]}

    return raw

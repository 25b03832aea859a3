"""Fixtures that build real runtimes (real wasmtime) from WAT modules in a temp dir."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.wasm import STATEFUL, tuple_entry, write_module
from warmpool_runtime.config import parse_config
from warmpool_runtime.engine import EngineSettings
from warmpool_runtime.service import Runtime

SMALL_ENGINE = EngineSettings(pool_slots=64, max_memory_bytes=16 << 20)


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


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    runtimes: list[Runtime] = []

    def build(raw: dict[str, Any], *, wait_ready: bool = True, **kwargs: Any) -> Runtime:
        runtime = Runtime(parse_config(raw), kwargs.pop("engine", SMALL_ENGINE), **kwargs)
        runtime.start()
        runtime.load_all()
        runtimes.append(runtime)
        if wait_ready:
            assert not runtime.load_errors, runtime.load_errors
            wait_until(lambda: runtime.ready)
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

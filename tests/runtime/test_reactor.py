"""WASI reactors built by clang-14: `_initialize` runs once per instance before any export, and every reset
(in place or by recycling) gives back the post-`_initialize` state; a failing `_initialize` fails the load."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.runtime.conftest import invoke, settle
from tests.runtime.wasm import CLANG, CLANG_WASI, build_c, tuple_entry
from warmpool.module.wasm_info import inspect_module
from warmpool_runtime.errors import UnknownExport
from warmpool_runtime.instance import ResetMode
from warmpool_runtime.modules import sha256_hex
from warmpool_runtime.pool import TuplePool

pytestmark = pytest.mark.component

# Constructors set a global, fill a table and allocate on the heap; `ready` reads what they set,
# `bump` mutates all of it (a reset must undo that), `pick` calls through a static table of function
# pointers (clang's indirect function table, initialised by the module's element segment).
CTOR_C = r"""
#include <stdint.h>
#include <stdlib.h>

static int32_t ready_value;
static int32_t squares[16];
static int32_t *heap_value;

static int32_t twice(int32_t x) { return 2 * x; }
static int32_t plus_one(int32_t x) { return x + 1; }
typedef int32_t (*unary)(int32_t);
static unary const volatile ops[2] = { twice, plus_one };

__attribute__((constructor)) static void set_ready(void) { ready_value = 42; }

__attribute__((constructor)) static void fill(void) {
  for (int32_t i = 0; i < 16; i++) squares[i] = i * i;
  heap_value = malloc(sizeof *heap_value);
  *heap_value = 7;
}

__attribute__((export_name("ready"))) int32_t ready(void) { return ready_value; }

__attribute__((export_name("square"))) int32_t square(int32_t i) { return squares[i & 15]; }

__attribute__((export_name("heap"))) int32_t heap(void) { return heap_value ? *heap_value : -1; }

/* 42 * 10000 + 9 * 100 + 7 on a clean instance; anything else if an earlier call's writes survived. */
__attribute__((export_name("bump"))) int32_t bump(void) {
  int32_t seen = ready_value * 10000 + squares[3] * 100 + *heap_value;
  ready_value += 1;
  squares[3] += 1;
  *heap_value += 1;
  return seen;
}

__attribute__((export_name("pick"))) int32_t pick(int32_t which, int32_t x) { return ops[which & 1](x); }
"""
CLEAN_BUMP = 42 * 10000 + 9 * 100 + 7

TRAPPING_CTOR_C = r"""
__attribute__((constructor)) static void boom(void) { __builtin_trap(); }
__attribute__((export_name("f"))) int f(void) { return 1; }
"""

SPINNING_CTOR_C = r"""
volatile int forever = 1;
__attribute__((constructor)) static void spin(void) { while (forever) {} }
__attribute__((export_name("f"))) int f(void) { return 1; }
"""

SLEEPING_CTOR_C = r"""
#include <unistd.h>
__attribute__((constructor)) static void nap(void) { sleep(60); }
__attribute__((export_name("f"))) int f(void) { return 1; }
"""

GREEDY_CTOR_C = r"""
#include <stdlib.h>
static char *last;
__attribute__((constructor)) static void grab(void) {
  for (;;) {  /* until the heap cannot grow any more */
    char *p = malloc(60000);
    if (!p) __builtin_trap();
    p[0] = 1;
    last = p;
  }
}
__attribute__((export_name("f"))) int f(void) { return last[0]; }
"""

COMMAND_C = r"""
int main(void) { return 0; }
__attribute__((export_name("f"))) int f(void) { return 1; }
"""


def force_reset_mode(pool: TuplePool, mode: ResetMode) -> None:
    """Make the pool reset `mode`'s way whatever its first fill measured (the choice is by timing)."""
    if mode is ResetMode.IN_PLACE and pool.reset_mode is not ResetMode.IN_PLACE:
        pool.snapshot = pool.instantiate().snapshot()  # what the pool takes of a fresh instance
    elif mode is ResetMode.RECYCLE:
        pool.snapshot = None
    pool.reset_mode = mode


@pytest.mark.parametrize("mode", [ResetMode.IN_PLACE, ResetMode.RECYCLE])
async def test_constructors_run_before_the_first_call_and_survive_every_reset(
        make_runtime, tmp_path: Path, mode: ResetMode) -> None:
    path, sha = build_c(tmp_path, CTOR_C)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1)]})
    pool = runtime.registry.pool_for("acme", sha)
    assert pool.template.initializer == "_initialize"
    assert pool.template.reset_mode is ResetMode.TRY_IN_PLACE  # the layout allows both: the test picks one
    force_reset_mode(pool, mode)

    assert await invoke(runtime, "acme", sha, "ready", []) == [42]  # the very first call already sees it
    seen = []  # held, so that no two instances share an id
    for _ in range(4):
        await settle(lambda: pool.warm == 1)
        seen.append(pool._warm[0])
        assert await invoke(runtime, "acme", sha, "bump", []) == [CLEAN_BUMP]
        await settle(lambda: pool.warm == 1)
        assert await invoke(runtime, "acme", sha, "ready", []) == [42]
        await settle(lambda: pool.warm == 1)
        assert await invoke(runtime, "acme", sha, "square", [3]) == [9]
        await settle(lambda: pool.warm == 1)
        assert await invoke(runtime, "acme", sha, "heap", []) == [7]
        await settle(lambda: pool.warm == 1)
        assert await invoke(runtime, "acme", sha, "pick", [0, 21]) == [42]
        await settle(lambda: pool.warm == 1)
        assert await invoke(runtime, "acme", sha, "pick", [1, 41]) == [42]
    assert pool.stats.misses == 0
    if mode is ResetMode.IN_PLACE:
        assert len({id(i) for i in seen}) == 1  # one instance, restored to its post-_initialize state each time
    else:
        assert len({id(i) for i in seen}) == 4  # a fresh instance each time, initialized before it was warm


async def test_a_cold_instance_is_initialized_too(make_runtime, tmp_path: Path) -> None:
    path, sha = build_c(tmp_path, CTOR_C)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 0)]})  # every call is a miss
    for _ in range(3):
        assert await invoke(runtime, "acme", sha, "bump", []) == [CLEAN_BUMP]
        await asyncio.sleep(0)
    assert runtime.registry.pool_for("acme", sha).stats.misses == 3


def test_initialize_is_not_callable_by_clients(make_runtime, tmp_path: Path) -> None:
    path, sha = build_c(tmp_path, CTOR_C)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1)]})
    with pytest.raises(UnknownExport):
        runtime.registry.target("acme", sha, "_initialize")  # running it again would redo the constructors
    assert "_initialize" not in runtime.registry.pool_for("acme", sha).template.signatures


@pytest.mark.parametrize(("source", "limits", "expected"), [
    (TRAPPING_CTOR_C, {}, ("guest_trap (unreachable)", "unreachable")),
    (SPINNING_CTOR_C, {"timeoutMs": 50}, ("deadline_exceeded", "50 ms deadline")),
    (SLEEPING_CTOR_C, {"timeoutMs": 100}, ("deadline_exceeded", "100 ms deadline")),
    (SPINNING_CTOR_C, {"fuel": 100_000, "timeoutMs": 10_000}, ("fuel_exhausted", "100000 units of fuel")),
    (GREEDY_CTOR_C, {"memoryBytes": 1 << 20}, ("memory_limit_exceeded", "memory limit")),
], ids=["trap", "deadline", "host-call-deadline", "fuel", "memory"])
def test_a_failing_initialize_fails_the_load_with_its_reason(
        make_runtime, tmp_path: Path, source: str, limits: dict[str, int], expected: tuple[str, str]) -> None:
    code, reason = expected
    path, sha = build_c(tmp_path, source)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 2, **limits)]}, wait_ready=False)
    error = runtime.registry.load_errors[("acme", sha)]
    assert error.code == "instantiate_failed"
    assert f"_initialize of module {sha[:12]} failed: {code}" in error.message
    assert reason in error.message
    (status,) = runtime.registry.statuses()
    assert (status.state, status.ready) == ("failed", False)


def build_command(directory: Path) -> tuple[Path, str]:
    """COMMAND_C built as a WASI command (clang's default exec model): it exports `_start`."""
    if shutil.which(CLANG) is None:
        pytest.skip(f"{CLANG} with wasi-libc is not installed")
    src, out = directory / "command.c", directory / "command.wasm"
    src.write_text(COMMAND_C)
    flags = [f for f in CLANG_WASI if f != "-mexec-model=reactor"]
    subprocess.run([CLANG, *flags, "-o", str(out), str(src)], check=True, capture_output=True)
    data = out.read_bytes()
    sha = sha256_hex(data)
    path = directory / f"{sha}.wasm"
    path.write_bytes(data)
    return path, sha


def test_module_inspect_names_the_lifecycle_exports_roles(tmp_path: Path) -> None:
    reactor, _ = build_c(tmp_path, CTOR_C)
    info = inspect_module(reactor.read_bytes(), "reactor.wasm")
    roles = {e.name: e.role for e in info.exports}
    assert roles["_initialize"].startswith("not callable: the WASI reactor initializer, run once per instance")
    assert "_initialize" not in {e.name for e in info.abi_functions}
    assert {"ready", "bump", "pick"} <= {e.name for e in info.abi_functions}
    command, _ = build_command(tmp_path)
    roles = {e.name: e.role for e in inspect_module(command.read_bytes(), "command.wasm").exports}
    assert "the runtime refuses the module (build a reactor)" in roles["_start"]


def test_a_wasi_command_is_refused_naming_start(make_runtime, tmp_path: Path) -> None:
    path, sha = build_command(tmp_path)
    runtime = make_runtime({"tuples": [tuple_entry("acme", path, sha, 1)]}, wait_ready=False)
    error = runtime.registry.load_errors[("acme", sha)]
    assert error.code == "module_invalid"
    assert "exports _start: it is a WASI command" in error.message
    assert "-mexec-model=reactor" in error.message

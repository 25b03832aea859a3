"""Test modules written as WAT, compiled to binary and written where a runtime can load them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import wasmtime

# Mutates memory, an unexported mutable global, and an unexported table: a clean instance
# answers peek() == 0, counter() == 1 and slot_is_null() == 1.
STATEFUL = """
(module
  (memory (export "memory") 1 4)
  (global $count (mut i32) (i32.const 0))
  (table $t 2 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "add64") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
  (func (export "scale") (param f64 f32) (result f64) (f64.mul (local.get 0) (f64.promote_f32 (local.get 1))))
  (func (export "counter") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (func (export "poke") (param i32) (i32.store (i32.const 64) (local.get 0)))
  (func (export "peek") (result i32) (i32.load (i32.const 64)))
  (func (export "fill_slot") (table.set $t (i32.const 1) (ref.func $f)))
  (func (export "slot_is_null") (result i32) (ref.is_null (table.get $t (i32.const 1))))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "trap") (result i32) unreachable)
  (func (export "divide") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "work") (param $n i32) (result i32) (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $i))
  (func $recurse (export "recurse") (param i32) (result i32)
    (call $recurse (i32.add (local.get 0) (i32.const 1))))
  (func (export "grow_or_trap") (param i32)
    (if (i32.eq (memory.grow (local.get 0)) (i32.const -1)) (then unreachable)))
)
"""

# The bytes ABI: alloc(len) -> ptr, and upper(ptr, len) -> (ptr << 32 | len) of the output,
# which is the input with ASCII lowercase letters turned to uppercase, written in place.
BYTES = """
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "upper") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $c i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
          (then (i32.store8 (i32.add (local.get $ptr) (local.get $i)) (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))
  (func (export "bad_output") (param i32 i32) (result i64) (i64.const 0x7fffffff00000010))
)
"""

# All mutable state reachable from the host (exported memory and global, no table): reset in place.
IN_PLACE = """
(module
  (memory (export "memory") 1)
  (global $count (export "count") (mut i32) (i32.const 0))
  (global $scale (export "scale") (mut f64) (f64.const 1.5))
  (data (i32.const 64) "*")  ;; 42
  (func (export "counter") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (func (export "poke") (param i32) (i32.store (i32.const 64) (local.get 0)))
  (func (export "peek") (result i32) (i32.load (i32.const 64)))
  (func (export "bump_scale") (result f64)
    (global.set $scale (f64.mul (global.get $scale) (f64.const 2))) (global.get $scale))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "trap") unreachable)
)
"""

PASSIVE_DATA = """(module (memory (export "memory") 1) (data "abc") (func (export "f")))"""

MISSING_IMPORT = """
(module (import "env" "host_secret" (func (result i32))) (func (export "f") (result i32) (call 0)))
"""

WASI = """
(module
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "rand_ok") (result i32) (call $rand (i32.const 0) (i32.const 8)))
)
"""

START_TRAPS = """(module (func $s unreachable) (start $s) (func (export "f")))"""


def compile_wat(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def write_module(directory: Path, wat: str) -> tuple[Path, str]:
    data = compile_wat(wat)
    sha = hashlib.sha256(data).hexdigest()
    path = directory / f"{sha}.wasm"
    path.write_bytes(data)
    return path, sha


def tuple_entry(tenant: str, path: Path, sha: str, warm: int = 2, **limits: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "tenant": tenant, "module": {"sha256": sha, "source": {"path": str(path)}}, "warmInstancesPerTuple": warm,
    }
    if limits:
        entry["limits"] = limits
    return entry


# Sleeps in WASI poll_oneoff on the monotonic clock, relative (`sleep_ms`) or absolute (`sleep_until_ms`),
# then checks on its own clock that the time has come: 1007 (one event, userdata 7) when it has, 2 when
# it woke early, -1 when poll_oneoff failed. `ping` does not wait.
SLEEPY = """
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func $now (result i64) (drop (call $time (i32.const 1) (i64.const 1) (i32.const 256))) (i64.load (i32.const 256)))
  (func $sleep (param $ns i64) (param $flags i32) (param $target i64) (result i32)
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (local.get $ns))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (local.get $flags))
    (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)) (then (return (i32.const -1))))
    (if (i64.lt_u (call $now) (local.get $target)) (then (return (i32.const 2))))
    (i32.add (i32.mul (i32.load (i32.const 128)) (i32.const 1000)) (i32.wrap_i64 (i64.load (i32.const 64)))))
  (func (export "sleep_ms") (param $ms i32) (result i32) (local $ns i64)
    (local.set $ns (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (call $sleep (local.get $ns) (i32.const 0) (i64.add (call $now) (local.get $ns))))
  (func (export "sleep_until_ms") (param $ms i32) (result i32) (local $at i64)
    (local.set $at (i64.add (call $now) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
    (call $sleep (local.get $at) (i32.const 1) (local.get $at)))
  (func (export "ping") (result i32) (i32.const 1))
)
"""

# A start function that sleeps for a minute.
SLEEPY_START = """
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $start
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
  (start $start)
  (func (export "f"))
)
"""

# A C guest that sleeps through wasi-libc (`nanosleep`, `sleep`), as compilers emit it.
NAP_C = r"""
#include <time.h>
#include <unistd.h>
__attribute__((export_name("nap"))) int nap(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, 0);
  return 7;
}
__attribute__((export_name("doze"))) int doze(int seconds) { return (int)sleep((unsigned)seconds); }
"""

CLANG = "clang-14"
CLANG_WASI = ["--target=wasm32-wasi", "--sysroot=/usr", "-isystem", "/usr/include/wasm32-wasi", "-mexec-model=reactor",
              "-fuse-ld=lld", "-L/usr/lib/wasm32-wasi", "-O2"]
"""A wasm32-wasi reactor from C with Debian's clang-14, lld-14, wasi-libc and libclang-rt-14-dev-wasm32."""


def build_c(directory: Path, source: str, name: str = "guest") -> tuple[Path, str]:
    """Compile a C guest (skipping the test when clang-14 is not installed) and write it as `write_module` does."""
    import shutil
    import subprocess

    import pytest

    if shutil.which(CLANG) is None:
        pytest.skip(f"{CLANG} with wasi-libc is not installed")
    src, out = directory / f"{name}.c", directory / f"{name}.wasm"
    src.write_text(source)
    subprocess.run([CLANG, *CLANG_WASI, "-o", str(out), str(src)], check=True, capture_output=True)
    data = out.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    path = directory / f"{sha}.wasm"
    path.write_bytes(data)
    return path, sha

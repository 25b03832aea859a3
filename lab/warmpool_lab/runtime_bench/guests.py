"""The bench's guest modules (written as WAT, compiled to binary Wasm) and the runtime config serving them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from warmpool_runtime.layout import scan
from warmpool_runtime.modules import sha256_hex

TENANT = "bench"
HOST = "127.0.0.1"
OS_PAGE = 4096
WASM_PAGE = 65536
MIB = 1 << 20

# `add` counts its calls in a mutable global it does not export (as a compiler's `__stack_pointer`
# is): the runtime exports it under a reserved name and resets the instance in place. The other
# variant also writes its table on every call, which no in-place restore covers: it is recycled.
COUNTING_ADD_WAT = """(module
  (memory (export "memory") 1)
  (table 1 funcref)
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 0) "warmpool")
  (func (export "add") (param i32 i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    {table_write}
    (i32.add (local.get 0) (local.get 1))))"""

# `touch(len)` writes one word per OS page of [0, len): dirties exactly `len` bytes of memory, and
# records `len` in an exported global (state an in-place reset restores, as a heap pointer would be).
DIRTY_WAT = """(module
  (memory (export "memory") {pages})
  (global $dirtied (export "dirtied") (mut i32) (i32.const 0))
  (data (i32.const 0) "warmpool")
  (func (export "touch") (param $len i32) (result i32) (local $p i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $len)))
      (i64.store (local.get $p) (i64.const -1))
      (local.set $p (i32.add (local.get $p) (i32.const {stride})))
      (br $next)))
    (global.set $dirtied (local.get $len))
    (local.get $p)))"""

IN_PLACE, RECYCLED = "add-in-place", "add-recycled"
SERVED = (IN_PLACE, RECYCLED)
"""The modules the HTTP runs invoke: the same guest, reset by each strategy."""
DIRTY = (("dirty-64k", WASM_PAGE, "1 page (64 KiB)"), ("dirty-1m", MIB, "1 MiB"))
"""Modules whose whole memory the guest dirties: (name, bytes, label)."""

THROUGHPUT_CONNECTIONS = 16
READY_TIMEOUT_S = 30.0


# Fixtures --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: str
    sha256: str
    strategy: str
    """The reset strategy the runtime picks for it, from its binary: "in place" or "recycle (why)"."""


def write_modules(directory: Path) -> dict[str, Module]:
    """The bench's guests, compiled from WAT and written as binary Wasm."""
    texts = {
        IN_PLACE: COUNTING_ADD_WAT.format(table_write=""),
        RECYCLED: COUNTING_ADD_WAT.format(table_write="(table.set 0 (i32.const 0) (ref.null func))"),
        **{name: DIRTY_WAT.format(pages=max(1, size // WASM_PAGE), stride=OS_PAGE) for name, size, _ in DIRTY},
    }
    out = {}
    for name, text in texts.items():
        data = bytes(wasmtime.wat2wasm(text))
        path = directory / f"{name}.wasm"
        path.write_bytes(data)
        why_not = scan(data).why_not_in_place()
        out[name] = Module(name, str(path), sha256_hex(data), "in place" if why_not is None else f"recycle ({why_not})")
    for name in (IN_PLACE, *(d[0] for d in DIRTY)):
        if out[name].strategy != "in place":
            raise RuntimeError(f"bench module {name} should qualify for in-place reset: {out[name].strategy}")
    if out[RECYCLED].strategy == "in place":
        raise RuntimeError(f"bench module {RECYCLED} should be reset by recycling")
    return out


def raw_config(modules: dict[str, Module], warm: int) -> dict[str, Any]:
    """The runtime config document (as the operator would render it) serving the given modules."""
    return {
        "maxTotalWarm": warm * len(modules),
        "tuples": [
            {"tenant": TENANT, "module": {"sha256": m.sha256, "source": {"path": m.path}},
             "warmInstancesPerTuple": warm}
            for m in modules.values()
        ],
    }



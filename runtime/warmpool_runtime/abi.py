"""Invocation ABI: export signatures resolved once per module, arguments into raw slots, results out.

Numeric ABI: JSON numbers in, JSON numbers out, one per Wasm param/result (i32, i64, f32, f64).

Bytes ABI: the guest exports `memory`, `alloc(len: i32) -> i32` and a handler
`(ptr: i32, len: i32) -> i64`. The host calls `alloc(len)`, copies the request payload to
`ptr`, calls the handler, and reads the response from the returned `(out_ptr << 32) | out_len`.

WASI lifecycle: a reactor's `_initialize` (static constructors, wasi-libc set-up) is called by the
host once per instance, before any other export; a command's `_start` (run `main`, then exit) has
no place in a warm pool, so a module exporting it is refused. Neither is callable over HTTP.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime

from warmpool_runtime.errors import BadArguments, BadGuestOutput, ModuleError, UnknownExport

ALLOC_EXPORT = "alloc"
MEMORY_EXPORT = "memory"
INITIALIZE_EXPORT = "_initialize"
"""A WASI reactor's initializer: the host calls it once per instance, before any other export."""
COMMAND_EXPORT = "_start"
"""A WASI command's entry point (`main`, then `proc_exit`): such a module is refused."""
LIFECYCLE_EXPORTS = frozenset({INITIALIZE_EXPORT, COMMAND_EXPORT})
"""Exports the host calls (or refuses) by their role, never on a caller's behalf."""

_I32_RANGE = (-(2**31), 2**32)
_I64_RANGE = (-(2**63), 2**64)


@dataclass(frozen=True, slots=True)
class Signature:
    """An export's parameter and result kinds (`i32`, `i64`, `f32`, `f64`), fixed at load time."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    @property
    def slots(self) -> int:
        return max(1, len(self.params), len(self.results))

    @property
    def all_int(self) -> bool:
        return all(k in ("i32", "i64") for k in self.params)

    @property
    def is_bytes_handler(self) -> bool:
        return self.params == ("i32", "i32") and self.results == ("i64",)


_KINDS = {"i32": "i32", "i64": "i64", "f32": "f32", "f64": "f64"}


def signatures_of(module: wasmtime.Module) -> dict[str, Signature]:
    """Every exported function with a numeric signature, lifecycle exports aside; others cannot be invoked
    over HTTP."""
    out: dict[str, Signature] = {}
    for export in module.exports:
        ty = export.type
        if not isinstance(ty, wasmtime.FuncType) or export.name in LIFECYCLE_EXPORTS:
            continue
        params = tuple(_KINDS.get(str(p), "") for p in ty.params)
        results = tuple(_KINDS.get(str(r), "") for r in ty.results)
        if all(params) and all(results):
            out[export.name] = Signature(params, results)
    return out


def initializer_of(module: wasmtime.Module) -> str | None:
    """The export the host must call once per instance before any other (a WASI reactor's `_initialize`),
    or None. Raises ModuleError for a module the warm pool cannot serve: a WASI command (`_start`), or an
    `_initialize` that is not a `() -> ()` function."""
    found: str | None = None
    for export in module.exports:
        if export.name == COMMAND_EXPORT:
            raise ModuleError(
                f"the module exports {COMMAND_EXPORT}: it is a WASI command (a program whose main runs once, "
                "then exits), which cannot be kept warm and called; build it as a reactor (a library: clang "
                "-mexec-model=reactor, a Rust cdylib, TinyGo -buildmode=c-shared) exporting the functions to call")
        if export.name == INITIALIZE_EXPORT:
            ty = export.type
            if not isinstance(ty, wasmtime.FuncType) or list(ty.params) or list(ty.results):
                raise ModuleError(f"the module exports {INITIALIZE_EXPORT}, but not as a function () -> (): "
                                  "a WASI reactor's initializer takes and returns nothing")
            found = INITIALIZE_EXPORT
    return found


def exports_memory(module: wasmtime.Module) -> bool:
    return any(e.name == MEMORY_EXPORT and isinstance(e.type, wasmtime.MemoryType) for e in module.exports)


def encode_args(signature: Signature, args: Sequence[Any], buf: Any, export: str) -> None:
    """Write JSON numbers into the raw argument slots, rejecting wrong counts, types and ranges."""
    if len(args) != len(signature.params):
        raise BadArguments(f"{export} takes {len(signature.params)} argument(s), got {len(args)}")
    for i, (kind, value) in enumerate(zip(signature.params, args, strict=True)):
        slot = buf[i]
        if kind in ("i32", "i64"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadArguments(f"argument {i} of {export} must be an integer ({kind}), got {value!r}")
            low, high = _I32_RANGE if kind == "i32" else _I64_RANGE
            if not low <= value < high:
                raise BadArguments(f"argument {i} of {export} is out of {kind} range: {value}")
            if kind == "i32":
                slot.i32 = value - 2**32 if value >= 2**31 else value
            else:
                slot.i64 = value - 2**64 if value >= 2**63 else value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise BadArguments(f"argument {i} of {export} must be a finite number ({kind}), got {value!r}")
            if kind == "f32":
                slot.f32 = ctypes.c_float(value).value
            else:
                slot.f64 = float(value)


def encode_int_args(signature: Signature, args: Sequence[Any], words: Any, export: str) -> None:
    """Integer-only signatures: write each argument as a little-endian word of its 16-byte slot."""
    params = signature.params
    if len(args) != len(params):
        raise BadArguments(f"{export} takes {len(params)} argument(s), got {len(args)}")
    for i, value in enumerate(args):
        if value.__class__ is not int:
            raise BadArguments(f"argument {i} of {export} must be an integer ({params[i]}), got {value!r}")
        low, high = _I32_RANGE if params[i] == "i32" else _I64_RANGE
        if not low <= value < high:
            raise BadArguments(f"argument {i} of {export} is out of {params[i]} range: {value}")
        words[2 * i] = value & 0xFFFF_FFFF_FFFF_FFFF


def decode_results(signature: Signature, buf: Any) -> list[int | float]:
    out: list[int | float] = []
    for i, kind in enumerate(signature.results):
        slot = buf[i]
        if kind == "i32":
            out.append(int(slot.i32))
        elif kind == "i64":
            out.append(int(slot.i64))
        elif kind == "f32":
            out.append(float(slot.f32))
        else:
            out.append(float(slot.f64))
    return out


def result_decoder(signature: Signature, buf: Any, words: Any) -> Callable[[], list[int | float]]:
    """A reader of an export's results from its slots, specialised for the common shapes."""
    results = signature.results
    if not results:
        return list
    if results == ("i32",):
        def one_i32() -> list[int | float]:
            value: int = words[0] & 0xFFFF_FFFF
            return [value - 0x1_0000_0000 if value >= 0x8000_0000 else value]
        return one_i32
    if results == ("i64",):
        def one_i64() -> list[int | float]:
            value: int = words[0]
            return [value - 0x1_0000_0000_0000_0000 if value >= 0x8000_0000_0000_0000 else value]
        return one_i64
    return lambda: decode_results(signature, buf)


def lookup(signatures: dict[str, Signature], export: str) -> Signature:
    signature = signatures.get(export)
    if signature is None:
        raise UnknownExport(f"module has no callable export {export!r}", export=export)
    return signature


def unpack_output(packed: int, memory_len: int) -> tuple[int, int]:
    """Split a handler's `(ptr << 32) | len` and bounds-check it against the guest's memory."""
    value = packed & 0xFFFF_FFFF_FFFF_FFFF
    ptr, length = value >> 32, value & 0xFFFF_FFFF
    if ptr + length > memory_len:
        raise BadGuestOutput(f"guest returned output [{ptr}, {ptr + length}) outside its {memory_len}-byte memory")
    return ptr, length

"""What a Wasm module offers the runtime: its exports and imports, and which of them the call ABI uses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import wasmtime

from warmpool_runtime import abi
from warmpool_runtime.wasi_host import WASI_MODULE

WASM_MAGIC = b"\0asm"
START_FUNCTIONS = ("_start", "_initialize")


class NotAModule(ValueError):
    """Bytes that are not a valid binary Wasm module; the message says where they came from."""


@dataclass(frozen=True)
class Export:
    name: str
    kind: str
    """func, memory, global or table."""
    signature: str
    """e.g. `(i32, i32) -> i64` for a function."""
    role: str
    """What the runtime makes of it."""


@dataclass(frozen=True)
class Import:
    module: str
    name: str
    kind: str
    signature: str
    provided: bool
    """Whether the runtime links it (WASI preview 1 only); a module with any other import is refused."""


@dataclass(frozen=True)
class ModuleInfo:
    sha256: str
    size: int
    exports: tuple[Export, ...]
    imports: tuple[Import, ...]

    @property
    def abi_functions(self) -> tuple[Export, ...]:
        """The exports the runtime can call over HTTP (numeric and bytes handlers) and the bytes ABI's parts."""
        return tuple(e for e in self.exports if not e.role.startswith("not"))

    @property
    def refused_imports(self) -> tuple[Import, ...]:
        return tuple(i for i in self.imports if not i.provided)


def _kind_and_signature(ty: object) -> tuple[str, str]:
    if isinstance(ty, wasmtime.FuncType):
        params = ", ".join(str(p) for p in ty.params)
        results = ", ".join(str(r) for r in ty.results)
        return "func", f"({params}) -> ({results})" if len(ty.results) != 1 else f"({params}) -> {results}"
    if isinstance(ty, wasmtime.MemoryType):
        limits = ty.limits
        maximum = f", max {limits.max} pages" if limits.max is not None else ""
        return "memory", f"{limits.min} pages{maximum}"
    if isinstance(ty, wasmtime.GlobalType):
        return "global", f"{'mut ' if ty.mutable else ''}{ty.content}"
    if isinstance(ty, wasmtime.TableType):
        return "table", f"{ty.element} x {ty.limits.min}"
    return type(ty).__name__, ""


def _role(name: str, kind: str, signature: abi.Signature | None, *, has_memory: bool, has_alloc: bool) -> str:
    if kind == "memory":
        return "bytes ABI memory (payloads are copied in and out here)" if name == abi.MEMORY_EXPORT \
            else "not used by the runtime"
    if kind != "func":
        return "not callable (only functions are)"
    if signature is None:
        return "not callable over HTTP (takes or returns non-numeric values)"
    if name in START_FUNCTIONS:
        return "numeric export; a WASI start-up function, which the runtime never calls by itself"
    if name == abi.ALLOC_EXPORT and signature.params == ("i32",) and signature.results == ("i32",):
        return "bytes ABI allocator (the host calls alloc(len) before each bytes call)"
    if signature.is_bytes_handler:
        if has_memory and has_alloc:
            return "bytes handler (request body in, response body out)"
        return "numeric export; a bytes handler too once the module exports `memory` and `alloc`"
    return "numeric export (JSON numbers in, JSON numbers out)"


def inspect_module(data: bytes, origin: str) -> ModuleInfo:
    """Compile the module (validating it) and describe its exports and imports."""
    if not data.startswith(WASM_MAGIC):
        raise NotAModule(f"{origin} is not binary WebAssembly (no \\0asm magic)")
    try:
        module = wasmtime.Module(wasmtime.Engine(), data)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        raise NotAModule(f"{origin} is not a valid Wasm module: {first}") from None
    signatures = abi.signatures_of(module)
    has_memory = abi.exports_memory(module)
    has_alloc = abi.ALLOC_EXPORT in signatures
    exports = []
    for export in module.exports:
        kind, shown = _kind_and_signature(export.type)
        role = _role(export.name, kind, signatures.get(export.name), has_memory=has_memory, has_alloc=has_alloc)
        exports.append(Export(name=export.name, kind=kind, signature=shown, role=role))
    imports = []
    for imported in module.imports:
        kind, shown = _kind_and_signature(imported.type)
        imports.append(Import(module=imported.module, name=imported.name or "", kind=kind, signature=shown,
                              provided=imported.module == WASI_MODULE))
    return ModuleInfo(sha256=hashlib.sha256(data).hexdigest(), size=len(data), exports=tuple(exports),
                      imports=tuple(imports))

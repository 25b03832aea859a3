"""What a module's binary says about its mutable state, to decide whether an in-place reset is complete.

An in-place reset (copy the post-start memory image back, restore the mutable globals) is only
complete when every piece of mutable state is reachable from the host: one memory and it
exported; no table the code can write (`table.set`, `table.grow`, `table.fill`, `table.copy`,
`table.init`; a table only read by `call_indirect` never changes after instantiation), which
needs every function body decoded; no passive data or element segments (`data.drop` and
`elem.drop` cannot be undone). Mutable globals the module does not export are exported by the
runtime under reserved names (`export_hidden_globals`), so compiled guests whose only hidden state
is a `__stack_pointer` qualify too. Anything else is reset by recycling the instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_CUSTOM, _IMPORT, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _ELEMENT, _CODE, _DATA = 0, 2, 4, 5, 6, 7, 9, 10, 11
_KIND_TABLE, _KIND_MEMORY, _KIND_GLOBAL = 1, 2, 3
HIDDEN_GLOBAL_PREFIX = "__warmpool_global_"
"""Exports the runtime adds for mutable globals a module keeps to itself."""


class LayoutError(ValueError):
    """The binary is malformed where the scanner looked (wasmtime reports the details on compile)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Counts of the module's state-bearing items, which globals are exported, and whether code writes tables."""

    tables: int
    memories: int
    exported_memories: int
    mutable_globals: frozenset[int]
    exported_globals: frozenset[int]
    passive_segments: int
    imported_globals: int = 0
    table_writes: bool | None = None
    """True when some function writes a table; None when a body used an instruction the scanner
    does not decode (atomics, exceptions, GC), so nothing can be promised."""
    export_names: frozenset[str] = frozenset()

    @property
    def hidden_globals(self) -> frozenset[int]:
        """Mutable globals the module does not export."""
        return self.mutable_globals - self.exported_globals

    @property
    def in_place_reset_ok(self) -> bool:
        """An in-place reset restores everything, once hidden globals are exported (see `export_hidden_globals`)."""
        return self.why_not_in_place() is None

    def why_not_in_place(self) -> str | None:
        if self.tables and self.table_writes:
            return "the module's code writes a table"
        if self.tables and self.table_writes is None:
            return "the module has a table and code the scanner cannot read"
        if self.memories != 1 or self.exported_memories != 1:
            return "the module does not have exactly one memory, exported"
        if any(index < self.imported_globals for index in self.hidden_globals):
            return "the module imports a mutable global"
        if self.hidden_globals and any(name.startswith(HIDDEN_GLOBAL_PREFIX) for name in self.export_names):
            return f"the module hides mutable globals and already exports names starting {HIDDEN_GLOBAL_PREFIX}"
        if self.passive_segments:
            return "the module has passive data or element segments"
        return None


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise LayoutError("unexpected end of section")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise LayoutError("unexpected end of section")
        self.pos += n

    def name(self) -> str:
        n = self.uleb()
        value = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return value

    def const_expr(self) -> None:
        """Skip a constant expression up to its `end` (0x0B)."""
        while True:
            op = self.byte()
            if op == 0x0B:
                return
            if op in (0x41, 0x42, 0x23, 0xD2):  # i32.const, i64.const (LEB), global.get, ref.func
                self.uleb()
            elif op == 0x43:
                self.skip(4)
            elif op == 0x44:
                self.skip(8)
            elif op == 0xD0:  # ref.null heaptype
                self.uleb()
            elif op == 0xFD:  # v128.const
                self.uleb()
                self.skip(16)
            elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
                continue
            else:
                raise LayoutError(f"unsupported opcode 0x{op:02x} in a constant expression")

    def limits(self) -> None:
        flags = self.byte()
        self.uleb()
        if flags & 1:
            self.uleb()


def _sections(data: bytes) -> Iterator[tuple[int, int, _Reader]]:
    """Each section as (id, offset of its first byte, reader over its body)."""
    if data[:4] != b"\0asm":
        raise LayoutError("not binary WebAssembly")
    r = _Reader(data, 8)
    while r.pos < len(data):
        start = r.pos
        section, size = r.byte(), r.uleb()
        body = _Reader(data, r.pos, r.pos + size)
        r.skip(size)
        yield section, start, body


def scan(data: bytes) -> Layout:
    """Read the import, table, memory, global, export, element, code and data sections."""
    imported_globals = tables = memories = exported_memories = passive = 0
    mutable: set[int] = set()
    exported: set[int] = set()
    names: set[str] = set()
    table_writes: bool | None = False
    for section, _, body in _sections(data):
        if section == _IMPORT:
            for _ in range(body.uleb()):
                body.name()
                body.name()
                kind = body.byte()
                if kind == 0:
                    body.uleb()
                elif kind == _KIND_TABLE:
                    body.byte()
                    body.limits()
                    tables += 1
                elif kind == _KIND_MEMORY:
                    body.limits()
                    memories += 1
                elif kind == _KIND_GLOBAL:
                    body.byte()
                    if body.byte():
                        mutable.add(imported_globals)
                    imported_globals += 1
                else:
                    body.uleb()
        elif section == _TABLE:
            tables += body.uleb()
        elif section == _MEMORY:
            memories += body.uleb()
        elif section == _GLOBAL:
            for i in range(body.uleb()):
                body.byte()  # value type
                if body.byte():
                    mutable.add(imported_globals + i)
                body.const_expr()
        elif section == _EXPORT:
            for _ in range(body.uleb()):
                names.add(body.name())
                kind, index = body.byte(), body.uleb()
                if kind == _KIND_GLOBAL:
                    exported.add(index)
                elif kind == _KIND_MEMORY:
                    exported_memories += 1
        elif section == _DATA:
            for _ in range(body.uleb()):
                flags = body.uleb()
                if flags == 1:
                    passive += 1
                else:
                    if flags == 2:
                        body.uleb()
                    body.const_expr()
                body.skip(body.uleb())
        elif section == _ELEMENT:
            passive += _passive_elements(body)
        elif section == _CODE:
            table_writes = _code_writes_tables(body)
    return Layout(tables, memories, exported_memories, frozenset(mutable), frozenset(exported), passive,
                  imported_globals=imported_globals, table_writes=table_writes, export_names=frozenset(names))


def export_hidden_globals(data: bytes, layout: Layout) -> bytes:
    """The module with every hidden mutable global also exported as `__warmpool_global_<index>`.

    Exports are visible to the host only, so the guest cannot tell; the reset can then restore them.
    """
    extra = b"".join(_name(f"{HIDDEN_GLOBAL_PREFIX}{index}") + bytes([_KIND_GLOBAL]) + _uleb(index)
                     for index in sorted(layout.hidden_globals))
    count = len(layout.hidden_globals)
    out = bytearray(data[:8])
    inserted = False
    for section, start, body in _sections(data):
        if section == _EXPORT:
            existing = body.uleb()
            out += _section(_EXPORT, _uleb(existing + count) + data[body.pos:body.end] + extra)
            inserted = True
            continue
        if not inserted and section != _CUSTOM and _ORDER.get(section, 99) > _ORDER[_EXPORT]:
            out += _section(_EXPORT, _uleb(count) + extra)
            inserted = True
        out += data[start:body.end]
    if not inserted:
        out += _section(_EXPORT, _uleb(count) + extra)
    return bytes(out)


# Binary order of the known sections (the data count section, 12, comes before code, 10).
_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _name(text: str) -> bytes:
    raw = text.encode()
    return _uleb(len(raw)) + raw


def _section(section: int, body: bytes) -> bytes:
    return bytes([section]) + _uleb(len(body)) + body


# Instructions that write a table or drop an element segment (0xFC prefixed sub-opcodes; 0x26 is table.set).
_TABLE_WRITES_FC = frozenset({12, 13, 14, 15, 17})
_VALTYPES = frozenset({0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})
_NO_IMMEDIATE = frozenset({0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)})
_ONE_INDEX = frozenset({0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x3F, 0x40, 0xD2})
_MEMARG = frozenset(range(0x28, 0x3F))


_SIMD_MEMARG = frozenset({*range(0x00, 0x0C), 0x5C, 0x5D})  # loads, store, load-zero
_SIMD_LANE = frozenset(range(0x15, 0x23))  # extract_lane / replace_lane: a lane byte
_SIMD_MEMARG_LANE = frozenset(range(0x54, 0x5C))  # load_lane / store_lane
_SIMD_LAST = 0x113  # the last relaxed-SIMD opcode; every opcode not listed above has no immediate


class _Unknown(Exception):
    """An instruction the scanner does not decode."""


def _code_writes_tables(body: _Reader) -> bool | None:
    """Whether any function body writes a table; None when some instruction is not understood."""
    try:
        for _ in range(body.uleb()):
            size = body.uleb()
            end = body.pos + size
            func = _Reader(body.data, body.pos, end)
            if _function_writes_tables(func):
                return True
            if func.pos != end:
                return None
            body.pos = end
    except (_Unknown, LayoutError):
        return None
    return False


def _skip_memarg(r: _Reader) -> None:
    if r.uleb() & 0x40:  # multi-memory: a memory index follows the alignment
        r.uleb()
    r.uleb()


def _skip_simd_immediates(r: _Reader, sub: int) -> None:
    """SIMD instructions read and write only values and memory: skip their immediates."""
    if sub in _SIMD_MEMARG:
        _skip_memarg(r)
    elif sub in (0x0C, 0x0D):  # v128.const, i8x16.shuffle
        r.skip(16)
    elif sub in _SIMD_LANE:
        r.skip(1)
    elif sub in _SIMD_MEMARG_LANE:
        _skip_memarg(r)
        r.skip(1)
    elif sub > _SIMD_LAST:
        raise _Unknown


def _function_writes_tables(r: _Reader) -> bool:
    for _ in range(r.uleb()):  # local declarations: count, value type
        r.uleb()
        if r.byte() not in _VALTYPES:
            raise _Unknown
    while r.pos < r.end:
        op = r.byte()
        if op in _NO_IMMEDIATE:
            continue
        if op in _ONE_INDEX or op in (0x41, 0x42):  # indices, or i32/i64.const (signed LEB, skipped alike)
            r.uleb()
        elif op in _MEMARG:
            _skip_memarg(r)
        elif op in (0x02, 0x03, 0x04):  # block, loop, if: a block type
            first = r.data[r.pos] if r.pos < r.end else 0
            if first == 0x40 or first in _VALTYPES:
                r.skip(1)
            else:
                r.uleb()  # a type index (s33)
        elif op == 0x0E:  # br_table
            for _ in range(r.uleb() + 1):
                r.uleb()
        elif op in (0x11, 0x13):  # call_indirect, return_call_indirect: type, table
            r.uleb()
            r.uleb()
        elif op == 0x1C:  # select with types
            for _ in range(r.uleb()):
                if r.byte() not in _VALTYPES:
                    raise _Unknown
        elif op == 0x26:  # table.set
            return True
        elif op == 0x43:
            r.skip(4)
        elif op == 0x44:
            r.skip(8)
        elif op == 0xD0:  # ref.null
            if r.byte() not in _VALTYPES:
                raise _Unknown
        elif op == 0xFD:
            _skip_simd_immediates(r, r.uleb())
        elif op == 0xFC:
            sub = r.uleb()
            if sub in _TABLE_WRITES_FC:
                return True
            if sub <= 7:  # saturating truncations
                continue
            if sub in (8, 10):  # memory.init, memory.copy
                r.uleb()
                r.uleb()
            elif sub in (9, 11, 16):  # data.drop, memory.fill, table.size
                r.uleb()
            else:
                raise _Unknown
        else:
            raise _Unknown
    return False


def _passive_elements(body: _Reader) -> int:
    """Count passive element segments (flag bit 0 set, bit 1 clear); declarative ones are harmless."""
    count = 0
    for _ in range(body.uleb()):
        flags = body.uleb()
        if flags & 1 and not flags & 2:
            count += 1
        if not flags & 1:  # active: optional table index, offset expression
            if flags & 2:
                body.uleb()
            body.const_expr()
        if flags & 4:  # element expressions
            if flags & 3:
                body.byte()  # reftype
            for _ in range(body.uleb()):
                body.const_expr()
        else:
            if flags & 3:
                body.byte()  # elemkind
            for _ in range(body.uleb()):
                body.uleb()
    return count

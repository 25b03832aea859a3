"""What a module's binary says about its mutable state, to decide whether an in-place reset is complete.

An in-place reset (copy the post-start memory image back, restore exported globals) is only
complete when every piece of mutable state is reachable from the host: no table (tables can be
mutated by guest code and their funcref contents cannot be copied cheaply), every mutable global
exported, one memory and it exported, no passive data or element segments (`data.drop` and
`elem.drop` cannot be undone). Anything else is reset by recycling the instance.
"""

from __future__ import annotations

from dataclasses import dataclass

_CUSTOM, _IMPORT, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _ELEMENT, _DATA = 0, 2, 4, 5, 6, 7, 9, 11
_KIND_TABLE, _KIND_MEMORY, _KIND_GLOBAL = 1, 2, 3


class LayoutError(ValueError):
    """The binary is malformed where the scanner looked (wasmtime reports the details on compile)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Counts of the module's state-bearing items and which globals are exported."""

    tables: int
    memories: int
    exported_memories: int
    mutable_globals: frozenset[int]
    exported_globals: frozenset[int]
    passive_segments: int

    @property
    def in_place_reset_ok(self) -> bool:
        return (self.tables == 0 and self.memories == 1 and self.exported_memories == 1
                and self.mutable_globals <= self.exported_globals and self.passive_segments == 0)

    def why_not_in_place(self) -> str | None:
        if self.tables:
            return "the module has a table"
        if self.memories != 1 or self.exported_memories != 1:
            return "the module does not have exactly one memory, exported"
        if not self.mutable_globals <= self.exported_globals:
            return "the module has mutable globals it does not export"
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


def scan(data: bytes) -> Layout:
    """Read the import, table, memory, global, export, element and data sections."""
    if data[:4] != b"\0asm":
        raise LayoutError("not binary WebAssembly")
    r = _Reader(data, 8)
    imported_globals = tables = memories = exported_memories = passive = 0
    mutable: set[int] = set()
    exported: set[int] = set()
    while r.pos < len(data):
        section, size = r.byte(), r.uleb()
        body = _Reader(data, r.pos, r.pos + size)
        r.skip(size)
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
                body.name()
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
    return Layout(tables, memories, exported_memories, frozenset(mutable), frozenset(exported), passive)


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

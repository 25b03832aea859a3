"""Which modules can be reset in place: read from the binary, refused whenever any state is unreachable."""

from __future__ import annotations

import pytest

from tests.runtime.wasm import BYTES, IN_PLACE, PASSIVE_DATA, STATEFUL, WASI, compile_wat
from warmpool_runtime.layout import LayoutError, scan

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("wat", "reason"), [
    (IN_PLACE, None),
    (WASI, None),
    (STATEFUL, "the module has a table"),
    (BYTES, "the module has mutable globals it does not export"),
    (PASSIVE_DATA, "the module has passive data or element segments"),
    ("(module (func (export \"f\")))", "the module does not have exactly one memory, exported"),
    ("(module (memory 1) (func (export \"f\")))", "the module does not have exactly one memory, exported"),
    ("(module (import \"env\" \"g\" (global (mut i32))) (memory (export \"memory\") 1))",
     "the module has mutable globals it does not export"),
    ("(module (memory (export \"memory\") 1) (global (export \"g\") (mut i64) (i64.const -5))"
     " (global i32 (i32.const 7)))", None),
])
def test_in_place_reset_only_when_all_state_is_reachable(wat: str, reason: str | None) -> None:
    layout = scan(compile_wat(wat))
    assert layout.why_not_in_place() == reason
    assert layout.in_place_reset_ok is (reason is None)


def test_not_wasm_is_refused() -> None:
    with pytest.raises(LayoutError):
        scan(b"(module)")

"""Without the `lab` extra the lab's commands say how to install it instead of failing on an import."""

from __future__ import annotations

import sys

import pytest

from warmpool.cli import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("argv", [["simulate", "--trace", "t.csv", "--policy", "warmpool"], ["bench", "scaling"]])
def test_lab_commands_name_the_extra_when_numpy_is_missing(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("warmpool_lab.") and m != "warmpool_lab.cli"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "numpy", None)
    assert main(argv) == 2
    assert "pip install 'warmpool[lab]'" in capsys.readouterr().err

"""docs/shipping-modules.md stays true: its C guest builds with the command it gives and inspects as shown."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from warmpool.cli import main

pytestmark = pytest.mark.component
DOC = (Path(__file__).resolve().parents[2] / "docs" / "shipping-modules.md").read_text()


def _blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", DOC, re.DOTALL | re.MULTILINE)]


def _block(language: str, starting: str) -> str:
    for lang, body in _blocks():
        if lang == language and body.startswith(starting):
            return body
    raise AssertionError(f"no ```{language} block starting {starting!r} in docs/shipping-modules.md")


def without_hash_and_size(text: str) -> list[str]:
    """The bytes depend on the exact clang and wasi-libc builds; what the runtime sees of them must not."""
    return [line for line in text.splitlines() if not line.startswith(("sha256", "size"))]


def test_the_c_guest_of_the_doc_builds_and_inspects_as_the_doc_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("clang-14") is None:
        pytest.skip("clang-14 with wasi-libc is not installed (make wasm-toolchain)")
    (tmp_path / "guest.c").write_text(_block("c", "/* guest.c */"))
    command = shlex.split(_block("sh", "clang-14").replace("\\\n", " "))
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)

    assert main(["module", "inspect", str(tmp_path / "guest.wasm")]) == 0
    shown = capsys.readouterr().out.replace(str(tmp_path / "guest.wasm"), "guest.wasm")
    documented = _block("", "module    guest.wasm")
    assert without_hash_and_size(shown) == without_hash_and_size(documented)

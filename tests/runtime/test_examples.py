"""The shipped example module behaves as documented, through a real runtime."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.runtime.conftest import invoke
from tests.runtime.wasm import tuple_entry
from warmpool_runtime.examples import build_example

pytestmark = pytest.mark.component


async def test_example_module_numeric_and_bytes(make_runtime, tmp_path) -> None:
    path, sha = build_example(tmp_path)
    runtime = make_runtime({"tuples": [tuple_entry("demo", path, sha, 2)]})
    (score,) = await invoke(runtime, "demo", sha, "score", [2.0, 0.5])
    assert math.isclose(score, 1 / (1 + math.exp(-2.25)), rel_tol=1e-9)
    assert await invoke(runtime, "demo", sha, "classify", b"good food") == b"positive"
    assert await invoke(runtime, "demo", sha, "classify", b"a bad day") == b"negative"


def test_runtime_demo_runs_end_to_end() -> None:
    result = subprocess.run([sys.executable, "-m", "warmpool.demo", "--runtime-only"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "classify('a good, good movie') -> positive" in result.stdout
    assert 'result="hit"' in result.stdout

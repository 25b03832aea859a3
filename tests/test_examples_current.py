"""The example manifest embeds exactly the bytes of the runtime's example module."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_example_manifest_matches_the_example_module() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "example_module.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr

"""The `warmpool` command tree."""

import pytest

from warmpool.cli import build_parser

pytestmark = pytest.mark.unit


def test_top_level_commands_are_registered() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("runtime", "operator", "bench", "dev"):
        assert command in help_text

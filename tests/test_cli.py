"""The `warmpool` command tree."""

import pytest

from warmpool.cli import build_parser

pytestmark = pytest.mark.unit


def test_top_level_commands_are_registered() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("runtime", "operator", "bench", "dev"):
        assert command in help_text


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])

    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"warmpool {version('warmpool')}"

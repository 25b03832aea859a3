"""Volume files written as the kubelet writes them: versions swapped in by one `..data` rename."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from warmpool.dev.agent.atomicdir import DATA, current, link_changes, top_level, version_name, write

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, 0, 42, 39, tzinfo=dt.UTC)


def test_version_names_sort_by_time_and_serial() -> None:
    assert version_name(NOW, 3) == "..2026_12_01_00_42_39.000000003"
    assert sorted([version_name(NOW, 10), version_name(NOW, 9)]) == [version_name(NOW, 9), version_name(NOW, 10)]


def test_links_follow_the_top_level_entries_of_the_files() -> None:
    assert top_level(["config.yaml", "sub/a", "sub/b"]) == {"config.yaml", "sub"}
    assert link_changes(["..data", "..2026_x", "a", "b", "old"], ["a", "old"], ["a", "b", "c"]) == (
        {"b", "c"}, {"old"})


def test_a_volume_is_written_once_then_swapped_whole_and_the_old_version_removed(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    assert write(root, {"config.yaml": b"v1", "sub/key": b"k1", "gone": b"x"}, 0o644, NOW)
    assert (root / "config.yaml").read_bytes() == b"v1"
    assert os.readlink(root / "config.yaml") == f"{DATA}/config.yaml"
    assert (root / "sub" / "key").read_bytes() == b"k1"
    first = os.readlink(root / DATA)
    before = os.stat(root / "config.yaml").st_ino
    reader = (root / "config.yaml").open("rb")  # a reader that opened the old version keeps it

    assert not write(root, {"config.yaml": b"v1", "sub/key": b"k1", "gone": b"x"}, 0o644, NOW)  # unchanged
    assert os.readlink(root / DATA) == first

    assert write(root, {"config.yaml": b"v2", "sub/key": b"k2"}, 0o600, NOW)
    assert os.readlink(root / DATA) != first
    assert not (root / first).exists()
    assert (root / "config.yaml").read_bytes() == b"v2"
    assert os.stat(root / "config.yaml").st_ino != before  # what a stat-polling reader notices
    assert (root / "config.yaml").stat().st_mode & 0o777 == 0o600
    assert not (root / "gone").exists()
    assert not (root / "gone").is_symlink()
    assert reader.read() == b"v1"
    reader.close()
    assert current(root) == {"config.yaml": b"v2", "sub/key": b"k2"}
    assert sorted(p.name for p in root.iterdir()) == sorted([DATA, os.readlink(root / DATA), "config.yaml", "sub"])


def test_files_from_before_the_swap_layout_are_replaced_by_links(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "dir").mkdir(parents=True)
    (root / "config.yaml").write_bytes(b"flat")
    (root / "dir" / "x").write_bytes(b"flat")
    assert current(root) is None
    assert write(root, {"config.yaml": b"new", "dir/x": b"new"}, 0o644, NOW)
    assert (root / "config.yaml").is_symlink()
    assert (root / "dir").is_symlink()
    assert (root / "dir" / "x").read_bytes() == b"new"


def test_an_emptied_volume_keeps_only_its_empty_version(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    write(root, {"a": b"1"}, 0o644, NOW)
    assert write(root, {}, 0o644, NOW)
    assert current(root) == {}
    assert [p.name for p in root.iterdir() if not p.name.startswith("..")] == []

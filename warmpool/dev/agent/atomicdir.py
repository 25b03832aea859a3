"""Volume files written as the kubelet writes them: each version in a new `..<timestamp>` directory, made current
by renaming one `..data` symlink over the last, with each top-level entry a symlink through `..data`.

A reader that opens `root/name` sees either the whole old version or the whole new one, never a mix;
a process watching the file sees what it resolves to change inode at the swap.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

DATA = "..data"
"""The symlink to the current version directory."""
_DATA_TMP = "..data_tmp"


def version_name(now: dt.datetime, serial: int) -> str:
    """`..2026_12_01_00_42_39.000000001`: sortable, unique per volume (the kubelet uses a random suffix)."""
    return now.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{serial:09d}"


def top_level(paths: Iterable[str]) -> set[str]:
    """The entries directly under the volume root that the files' paths need (a file, or a first directory)."""
    return {path.split("/", 1)[0] for path in paths}


def link_changes(existing: Iterable[str], linked: Iterable[str], wanted: Iterable[str]) -> tuple[set[str], set[str]]:
    """(entries to link through `..data`, stale entries to remove), given the entries under the root and
    those of them already linked; `..`-prefixed names are the writer's own."""
    have = {name for name in existing if not name.startswith("..")}
    want = set(wanted)
    return want - set(linked), have - want


def current(root: Path) -> dict[str, bytes] | None:
    """The files of the current version by relative path, or None when the volume has no `..data` yet."""
    data = root / DATA
    if not data.is_symlink():
        return None
    base = root / os.readlink(data)
    out: dict[str, bytes] = {}
    for path in base.rglob("*"):
        if path.is_file():
            out[path.relative_to(base).as_posix()] = path.read_bytes()
    return out


def write(root: Path, files: Mapping[str, bytes], mode: int, now: dt.datetime | None = None) -> bool:
    """Make `root` show exactly `files`, atomically; False (nothing written) when it already does."""
    root.mkdir(parents=True, exist_ok=True)
    if current(root) == dict(files):
        return False
    previous = os.readlink(root / DATA) if (root / DATA).is_symlink() else None
    stamp = now or dt.datetime.now(dt.UTC)
    serial = 1 + sum(1 for p in root.iterdir() if p.name.startswith("..") and p.name not in (DATA, _DATA_TMP))
    name = version_name(stamp, serial)
    while (root / name).exists():
        serial += 1
        name = version_name(stamp, serial)
    version = root / name
    version.mkdir(mode=0o755)
    for path, data in files.items():
        target = version / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode & 0o777)
    tmp = root / _DATA_TMP
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(name)
    os.replace(tmp, root / DATA)  # the swap: one rename
    entries = list(root.iterdir())
    linked = [p.name for p in entries if p.is_symlink() and os.readlink(p) == f"{DATA}/{p.name}"]
    add, stale = link_changes((p.name for p in entries), linked, top_level(files))
    for entry in sorted(add):
        link = root / entry
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)  # a tree from before the volume was written this way
        elif link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(f"{DATA}/{entry}")
    for entry in sorted(stale):
        gone = root / entry
        if gone.is_dir() and not gone.is_symlink():
            shutil.rmtree(gone)
        else:
            gone.unlink(missing_ok=True)
    if previous is not None and previous != name:
        shutil.rmtree(root / previous, ignore_errors=True)
    return True

"""Example guest modules shipped with the runtime (WAT sources, compiled on demand)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import wasmtime


def example_wat(name: str = "classify") -> str:
    return resources.files(__package__).joinpath(f"{name}.wat").read_text()


def build_example(directory: Path, name: str = "classify") -> tuple[Path, str]:
    """Compile an example to `<directory>/<sha256>.wasm`; returns (path, sha256)."""
    data = bytes(wasmtime.wat2wasm(example_wat(name)))
    sha = hashlib.sha256(data).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sha}.wasm"
    path.write_bytes(data)
    return path, sha

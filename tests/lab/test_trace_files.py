"""Which files of a trace directory the single-pool benches read."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from warmpool_lab.trace import TraceError, load_trace, trace_files

pytestmark = pytest.mark.unit


def _write(path: Path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())


def test_multi_tenant_traces_beside_single_pool_ones_are_left_to_the_fleet_bench(tmp_path: Path) -> None:
    _write(tmp_path / "steady.csv.gz", "t,duration\n0.5,0.1\n1.0,0.2\n")
    _write(tmp_path / "tenants.csv.gz", "t,duration,tenant\n0.5,0.1,acme\n")
    _write(tmp_path / "plain.csv", "t,duration\n0.1,0.1\n")

    files = trace_files(tmp_path)

    assert [f.name for f in files] == ["steady.csv.gz", "plain.csv"]
    assert load_trace(files[0]).name == "steady"


def test_a_directory_of_only_multi_tenant_traces_is_refused_by_name(tmp_path: Path) -> None:
    _write(tmp_path / "tenants.csv.gz", "t,duration,tenant\n0.5,0.1,acme\n")

    with pytest.raises(TraceError, match="no single-pool"):
        trace_files(tmp_path)

"""Invocation traces: gzip or plain CSV `t,duration`, parsed once into a validated Trace."""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the problem."""


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """Arrival times (sorted, seconds from the start) and holding durations of invocations."""

    name: str
    arrivals: npt.NDArray[np.float64]
    durations: npt.NDArray[np.float64]
    end: float
    """The trace covers [0, end): cost is integrated up to here."""

    def __post_init__(self) -> None:
        if self.arrivals.shape != self.durations.shape or self.arrivals.ndim != 1:
            raise TraceError(f"{self.name}: arrivals and durations must be 1-d arrays of one length")
        if self.arrivals.size:
            if not (np.all(np.isfinite(self.arrivals)) and np.all(np.isfinite(self.durations))):
                raise TraceError(f"{self.name}: non-finite values")
            if self.arrivals[0] < 0 or np.any(np.diff(self.arrivals) < 0):
                raise TraceError(f"{self.name}: arrival times must be >= 0 and sorted")
            if np.any(self.durations < 0):
                raise TraceError(f"{self.name}: durations must be >= 0")
            if self.arrivals[-1] >= self.end:
                raise TraceError(f"{self.name}: arrivals must lie before the end ({self.end})")
        if self.end <= 0:
            raise TraceError(f"{self.name}: end must be > 0")

    @classmethod
    def of(cls, name: str, rows: list[tuple[float, float]], end: float | None = None) -> Trace:
        """A trace from (t, duration) rows; `end` defaults to the next whole second after the last."""
        arrivals = np.array([r[0] for r in rows], dtype=np.float64)
        durations = np.array([r[1] for r in rows], dtype=np.float64)
        if end is None:
            end = math.floor(arrivals[-1]) + 1.0 if rows else 1.0
        return cls(name=name, arrivals=arrivals, durations=durations, end=end)

    def __len__(self) -> int:
        return int(self.arrivals.size)


def load_trace(path: Path) -> Trace:
    """Read a `t,duration` CSV (gzip when the name ends in .gz)."""
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: {exc}") from None
    text = raw.decode("utf-8", errors="replace")
    header, _, body = text.partition("\n")
    if header.strip().replace(" ", "") != "t,duration":
        raise TraceError(f"{path}: header must be 't,duration', got {header.strip()!r}")
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise TraceError(f"{path}: {exc}") from None
    if data.size == 0:
        raise TraceError(f"{path}: no invocations")
    if data.shape[1] != 2:
        raise TraceError(f"{path}: expected two columns")
    arrivals, durations = data[:, 0].copy(), data[:, 1].copy()
    return Trace(name=name, arrivals=arrivals, durations=durations, end=math.floor(arrivals[-1]) + 1.0)


def trace_files(directory: Path) -> list[Path]:
    """The single-pool traces of a directory (*.csv.gz, then *.csv), sorted by name.

    Multi-tenant traces (a `tenant` column) share the directory; they belong to the fleet bench.
    """
    if not directory.is_dir():
        raise TraceError(f"{directory}: not a directory of traces")
    files = sorted(directory.glob("*.csv.gz")) + sorted(directory.glob("*.csv"))
    files = [f for f in files if "tenant" not in _header(f)]
    if not files:
        raise TraceError(f"{directory}: no single-pool *.csv.gz or *.csv traces")
    return files


def _header(path: Path) -> list[str]:
    try:
        with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as f:
            return [c.strip() for c in f.readline().split(",")]
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise TraceError(f"{path}: {exc}") from None

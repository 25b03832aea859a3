"""Multi-tenant traces: CSV `t,duration,tenant` (gzip allowed), parsed once into arrays."""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


class TenantTraceError(ValueError):
    """A multi-tenant trace that cannot be replayed; the message names the problem."""


@dataclass(frozen=True, slots=True, eq=False)
class TenantTrace:
    """Arrivals (sorted), holding durations and tenant indices into `tenants`."""

    name: str
    arrivals: npt.NDArray[np.float64]
    durations: npt.NDArray[np.float64]
    tenant: npt.NDArray[np.int64]
    tenants: tuple[str, ...]
    end: float
    """The trace covers [0, end): cost is integrated up to here."""

    def __post_init__(self) -> None:
        n = self.arrivals.size
        if self.durations.size != n or self.tenant.size != n:
            raise TenantTraceError(f"{self.name}: columns of different lengths")
        if n:
            if self.arrivals[0] < 0 or np.any(np.diff(self.arrivals) < 0):
                raise TenantTraceError(f"{self.name}: arrival times must be >= 0 and sorted")
            if np.any(self.durations < 0) or not np.all(np.isfinite(self.durations)):
                raise TenantTraceError(f"{self.name}: durations must be finite and >= 0")
            if self.arrivals[-1] >= self.end:
                raise TenantTraceError(f"{self.name}: arrivals must lie before the end ({self.end})")
            if self.tenant.min() < 0 or self.tenant.max() >= len(self.tenants):
                raise TenantTraceError(f"{self.name}: tenant index out of range")

    def __len__(self) -> int:
        return int(self.arrivals.size)

    @classmethod
    def of(cls, name: str, rows: list[tuple[float, float, str]], end: float | None = None) -> TenantTrace:
        """A trace from (t, duration, tenant) rows in time order; tenants are indexed by first sight."""
        index: dict[str, int] = {}
        for _, _, tenant in rows:
            index.setdefault(tenant, len(index))
        arrivals = np.array([r[0] for r in rows], dtype=np.float64)
        if end is None:
            end = math.floor(float(arrivals[-1])) + 1.0 if rows else 1.0
        return cls(
            name=name,
            arrivals=arrivals,
            durations=np.array([r[1] for r in rows], dtype=np.float64),
            tenant=np.array([index[r[2]] for r in rows], dtype=np.int64),
            tenants=tuple(index),
            end=end,
        )

    def save(self, path: Path) -> None:
        """Write the trace as `t,duration,tenant` CSV (gzip when the name ends in .gz)."""
        lines = ["t,duration,tenant"]
        names = self.tenants
        for t, d, k in zip(self.arrivals.tolist(), self.durations.tolist(), self.tenant.tolist(), strict=True):
            lines.append(f"{t:.4f},{d:.4f},{names[k]}")
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def load_tenant_trace(path: Path) -> TenantTrace:
    """Read a `t,duration,tenant` CSV (gzip when the name ends in .gz)."""
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except OSError as exc:
        raise TenantTraceError(f"{path}: {exc}") from None
    header, _, body = raw.decode("utf-8", errors="replace").partition("\n")
    if header.strip().replace(" ", "") != "t,duration,tenant":
        raise TenantTraceError(f"{path}: header must be 't,duration,tenant', got {header.strip()!r}")
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=str, ndmin=2)
    except ValueError as exc:
        raise TenantTraceError(f"{path}: {exc}") from None
    if table.size == 0 or table.shape[1] != 3:
        raise TenantTraceError(f"{path}: expected rows of three columns")
    try:
        arrivals = table[:, 0].astype(np.float64)
        durations = table[:, 1].astype(np.float64)
    except ValueError as exc:
        raise TenantTraceError(f"{path}: {exc}") from None
    tenants, inverse = np.unique(table[:, 2], return_inverse=True)
    return TenantTrace(
        name=name,
        arrivals=arrivals,
        durations=durations,
        tenant=inverse.astype(np.int64),
        tenants=tuple(str(t) for t in tenants),
        end=math.floor(float(arrivals[-1])) + 1.0,
    )

"""Prometheus text exposition → one runtime pod's pool metrics (pure parsing, no I/O).

The parser is our own rather than `prometheus_client.parser.text_string_to_metric_families`:
reading one tuple's pool metrics from a runtime exposition of 1,000 tuples (49,030 lines, every
runtime family) took 0.70 s here against 3.09 s with prometheus_client's parser, 4.4 times as long
(best of 7, a busy 2-core machine; `warmpool_lab.exposition_bench.bench_parse`). The operator
parses every Ready pod's exposition every tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from warmpool_contract import POOL_CAPACITY as CAPACITY
from warmpool_contract import POOL_DRAWS
from warmpool_contract import POOL_IN_FLIGHT as IN_FLIGHT
from warmpool_contract import POOL_WARM as WARM

DRAWS = f"{POOL_DRAWS}_total"
_POOL_METRICS = frozenset({DRAWS, WARM, CAPACITY, IN_FLIGHT})


class ExpositionError(ValueError):
    """Text that is not valid Prometheus exposition, or pool metrics that cannot be used."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One exposition line: metric name, labels and value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        for name, value in self.labels:
            if name == key:
                return value
        return None


@dataclass(frozen=True, slots=True)
class PodMetrics:
    """What one scrape of a runtime pod says about the pool (summed over the selected tuples)."""

    hits: float
    """`draws_total{result="hit"}`: a counter, reset when the process restarts."""
    misses: float
    """`draws_total{result="miss"}`: a counter."""
    warm: float
    """Idle warm instances now."""
    capacity: float
    """Configured warm instances (the pod's warm floor)."""
    in_flight: float
    """Invocations running now, warm or cold."""


def parse_samples(text: str) -> Iterator[Sample]:
    """Yield every sample of an exposition; comments and blank lines are skipped."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield _parse_line(line)
        except (ValueError, IndexError) as exc:
            raise ExpositionError(f"line {number}: {exc}: {raw!r}") from None


def _parse_line(line: str) -> Sample:
    brace = line.find("{")
    space = line.find(" ")
    labels: list[tuple[str, str]] = []
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        pos = brace + 1
        while True:
            while line[pos] in " ,":
                pos += 1
            if line[pos] == "}":
                pos += 1
                break
            eq = line.index("=", pos)
            key = line[pos:eq].strip()
            if line[eq + 1] != '"':
                raise ValueError("label value must be quoted")
            value, pos = _quoted(line, eq + 2)
            labels.append((key, value))
        rest = line[pos:].split()
    else:
        parts = line.split()
        name, rest = parts[0], parts[1:]
    if not name or not rest:
        raise ValueError("sample needs a name and a value")
    return Sample(name=name, labels=tuple(labels), value=_number(rest[0]))


def _quoted(line: str, pos: int) -> tuple[str, int]:
    """Read an escaped label value starting after its opening quote; return it and the next index."""
    out: list[str] = []
    while True:
        char = line[pos]
        if char == "\\":
            nxt = line[pos + 1]
            out.append("\n" if nxt == "n" else nxt)
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1


def _number(token: str) -> float:
    lowered = token.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(token)


def pool_metrics(text: str, *, tenant: str | None = None, module: str | None = None) -> PodMetrics | None:
    """Sum the pool metrics of the tuples matching tenant/module (None matches any).

    Returns None when the exposition carries no pool metric for the selection (the runtime has
    not registered the tuple yet): that is "no data", never "zero load". A NaN or infinite value
    in a pool metric makes the whole scrape unusable (ExpositionError) rather than a zero.
    """
    sums = {"hit": 0.0, "miss": 0.0, WARM: 0.0, CAPACITY: 0.0, IN_FLIGHT: 0.0}
    seen = False
    for sample in parse_samples(text):
        if sample.name not in _POOL_METRICS:
            continue
        if tenant is not None and sample.label("tenant") != tenant:
            continue
        if module is not None and sample.label("module") != module:
            continue
        if not math.isfinite(sample.value):
            raise ExpositionError(f"{sample.name} is {sample.value}")
        seen = True
        if sample.name == DRAWS:
            result = sample.label("result")
            if result in ("hit", "miss"):
                sums[result] += sample.value
        else:
            sums[sample.name] += sample.value
    if not seen:
        return None
    return PodMetrics(
        hits=sums["hit"],
        misses=sums["miss"],
        warm=sums[WARM],
        capacity=sums[CAPACITY],
        in_flight=sums[IN_FLIGHT],
    )

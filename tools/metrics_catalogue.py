"""Every metric the project exposes, read from the code that registers it (runtime collector, operator registry)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from prometheus_client import CollectorRegistry

TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "warmpool", "container", "endpoint", "service"})
"""Labels Prometheus adds from the scrape target (the chart's PodMonitor adds `warmpool`, the pool's name)."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    """Family name as registered (counters without `_total`)."""
    type: str
    labels: tuple[str, ...]
    help: str
    source: str
    """`runtime` (every runtime pod, port 8080) or `operator` (the operator pod, metrics port)."""

    @property
    def exposed(self) -> str:
        """The name a query uses: counters carry `_total`, histograms are read through `_bucket`."""
        return f"{self.name}_total" if self.type == "counter" else self.name

    def samples(self) -> dict[str, tuple[str, ...]]:
        """Sample names of this family in the exposition, with their labels."""
        if self.type == "counter":
            return {f"{self.name}_total": self.labels}
        if self.type == "histogram":
            return {
                f"{self.name}_bucket": (*self.labels, "le"),
                f"{self.name}_sum": self.labels,
                f"{self.name}_count": self.labels,
            }
        return {self.name: self.labels}


def runtime_metrics() -> list[Metric]:
    from warmpool_runtime.metrics import PoolCollector

    out = []
    for family in PoolCollector(lambda: []).collect():
        labels = tuple(getattr(family, "_labelnames", ()))
        out.append(Metric(family.name, family.type, labels, family.documentation, "runtime"))
    return out


def operator_metrics() -> list[Metric]:
    from warmpool_operator.metrics import OperatorMetrics

    created = OperatorMetrics.create(CollectorRegistry())
    out = []
    for field in fields(created):
        metric = getattr(created, field.name)
        name = str(metric._name)
        kind = str(metric._type)
        out.append(Metric(name, kind, tuple(metric._labelnames), str(metric._documentation), "operator"))
    return out


def catalogue() -> list[Metric]:
    return [*runtime_metrics(), *operator_metrics()]


def sample_labels() -> dict[str, frozenset[str]]:
    """Every sample name a query may select, with the labels it can be filtered or grouped by."""
    out: dict[str, frozenset[str]] = {"up": TARGET_LABELS}
    for metric in catalogue():
        for name, labels in metric.samples().items():
            out[name] = frozenset(labels) | TARGET_LABELS
    return out

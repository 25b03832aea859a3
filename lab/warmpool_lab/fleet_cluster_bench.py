"""The pure parts of `warmpool bench fleet-cluster`: distinct modules, manifests, and the arithmetic of its figures."""

from __future__ import annotations

import hashlib
import statistics
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import wasmtime
from prometheus_client.parser import text_string_to_metric_families

API_VERSION = "tensorwasm.dev/v1alpha1"
FLEET = "bench"
EXPORT = "ident"
MARKER = b"\xde\xad\xbe\xef\xfe\xed\xfa\xce"
# One page of memory whose first eight bytes are a data segment; `ident` returns its first four.
# Compiled once; each module is the same binary with the marker's bytes replaced by its index.
_MARKER_WAT = "".join("\\" + f"{b:02x}" for b in MARKER)
TEMPLATE_WAT = f"""
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{_MARKER_WAT}")
  (func (export "{EXPORT}") (result i32) (i32.load (i32.const 0))))
"""


@dataclass(frozen=True)
class BenchModule:
    """One generated module: its index (what `ident` returns), bytes and sha256 hex."""

    index: int
    wasm: bytes
    sha256: str


def template() -> bytes:
    """The compiled template, checked to hold the marker exactly once."""
    wasm = bytes(wasmtime.wat2wasm(TEMPLATE_WAT))
    if wasm.count(MARKER) != 1:
        raise ValueError("the template module must hold its marker exactly once")
    return wasm


def generate_modules(count: int, first: int = 0) -> list[BenchModule]:
    """`count` distinct valid modules, `ident` of the i-th returning i (from `first`)."""
    if count < 0 or first < 0 or first + count > 2**32:
        raise ValueError("count and first must be >= 0 and index a 32-bit range")
    base = template()
    out = []
    for index in range(first, first + count):
        wasm = base.replace(MARKER, struct.pack("<IHH", index, 0xB0B0, 0xC0C0))
        out.append(BenchModule(index=index, wasm=wasm, sha256=hashlib.sha256(wasm).hexdigest()))
    return out


def tenant_of(index: int) -> str:
    return f"t{index:05d}"


def pool_name(index: int) -> str:
    return f"p{index:05d}"


def fleet_manifest(namespace: str, *, pods: int, tuples: int) -> dict[str, Any]:
    """The RuntimeFleet: `pods` pods, room for every tuple's one warm instance, autoscaling off."""
    return {
        "apiVersion": API_VERSION, "kind": "RuntimeFleet",
        "metadata": {"name": FLEET, "namespace": namespace},
        "spec": {"replicas": {"min": pods, "max": pods}, "maxTotalWarm": max(1024, 2 * tuples),
                 "runtime": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}},
    }


def pool_manifest(namespace: str, module: BenchModule, base_url: str) -> dict[str, Any]:
    """A member WarmPool of the bench fleet serving `module` from the loopback server at `base_url`."""
    return {
        "apiVersion": API_VERSION, "kind": "WarmPool",
        "metadata": {"name": pool_name(module.index), "namespace": namespace},
        "spec": {"tenant": tenant_of(module.index),
                 "module": {"sha256": module.sha256, "source": {"url": base_url + module_path(module.index)}},
                 "warmInstancesPerTuple": 1,
                 "limits": {"memoryBytes": 1 << 20, "timeoutMs": 1000},
                 "fleetRef": {"name": FLEET, "namespace": namespace}},
    }


def module_path(index: int) -> str:
    """Where the loopback server serves module `index`."""
    return f"/m/{index}.wasm"


def api_requests(exposition: str) -> dict[tuple[str, str], float]:
    """(verb, resource) -> apiserver_request_total summed over codes, scopes and groups."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name not in ("apiserver_request", "apiserver_request_total"):
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            resource = sample.labels.get("resource", "")
            if sample.labels.get("subresource"):
                resource = f"{resource}/{sample.labels['subresource']}"
            key = (sample.labels.get("verb", ""), resource)
            out[key] = out.get(key, 0.0) + sample.value
    return out


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE", "DELETECOLLECTION"})


def per_minute(before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float],
               seconds: float) -> dict[str, float]:
    """Requests per minute between two readings, keyed `VERB resource`, zero rates left out."""
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    out = {}
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        if delta > 0:
            out[f"{key[0]} {key[1]}"] = round(delta * 60.0 / seconds, 2)
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def split_reads_writes(rates: Mapping[str, float]) -> tuple[float, float]:
    """(reads, writes) per minute from `per_minute`'s output (WATCH counts as a read)."""
    writes = sum(v for k, v in rates.items() if k.split(" ", 1)[0].upper() in WRITE_VERBS)
    return round(sum(rates.values()) - writes, 2), round(writes, 2)


OPERATOR_RESOURCES = frozenset({"warmpools", "warmpools/status", "runtimefleets", "runtimefleets/status", "secrets",
                                "configmaps", "services", "deployments", "deployments/scale", "poddisruptionbudgets"})
"""Resources only the operator reads or writes by request on this control plane (the controllers watch
them through informers and write `deployments/status`, left out); pods are left out too (the node agent
lists them)."""


def operator_share(rates: Mapping[str, float]) -> tuple[float, float]:
    """(reads, writes) per minute of `per_minute`'s rows on `OPERATOR_RESOURCES`: the operator's own share."""
    mine = {k: v for k, v in rates.items() if k.split(" ", 1)[-1] in OPERATOR_RESOURCES}
    return split_reads_writes(mine)


def distribution(values: Iterable[float]) -> dict[str, float | int | None]:
    """Count, min, median, p90 and max of `values` (None when empty)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "min": None, "median": None, "p90": None, "max": None}
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"count": len(ordered), "min": round(ordered[0], 3), "median": round(statistics.median(ordered), 3),
            "p90": round(p90, 3), "max": round(ordered[-1], 3)}


def proc_ticks(stat: str) -> int:
    """utime + stime of a /proc/PID/stat line, in clock ticks."""
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_rss_bytes(status: str) -> int:
    """VmRSS of a /proc/PID/status text, in bytes (0 when absent, as for a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

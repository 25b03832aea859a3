"""The cost of one Kubernetes API request through the operator's `KubeApi` of several checkouts, in-process.

`python -m warmpool_lab.kube_client_bench NAME=CHECKOUT ... [--repeat 15]` loads each checkout's
`operator/warmpool_operator/kube.py` (with this installation's `warmpool_operator.kinds`) and runs it against
an aiohttp server on loopback in the same process, checkouts in rotating order each repeat:

- `sequential_ms`: wall time of one GET, 300 in a row on an otherwise idle loop;
- `burst_p90_ms`: 90th percentile of 20 "reconciliations" at once (3 GETs then 3 applies each, one after
  another), five bursts;
- `cpu_ms`: process CPU time per request in those bursts (client and server together; the server's share
  is the same for every client).

Medians over the repeats. Client and server share the process, so this isolates the client's own cost;
`warmpool bench operator-api` measures the operator as a whole.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import kopf
from aiohttp import web

from warmpool_operator.kinds import SERVICES

BODY: dict[str, Any] = {"metadata": {"name": "x", "labels": {f"l{i}": "v" * 20 for i in range(20)}},
                        "spec": {"items": list(range(100))}}
SEQUENTIAL = 300
CONCURRENT = 20
BURSTS = 5


def load(name: str, checkout: Path) -> ModuleType:
    path = checkout / "operator" / "warmpool_operator" / "kube.py"
    spec = importlib.util.spec_from_file_location(f"kube_{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not loadable")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def one_client(kube: ModuleType, server: str) -> dict[str, float]:
    api = kube.KubeApi(kopf.ConnectionInfo(server=server, token="t"), timeouts=kube.Timeouts())
    try:
        for _ in range(20):
            await api.get(SERVICES, "ns", "x")
        start = time.perf_counter()
        for _ in range(SEQUENTIAL):
            await api.get(SERVICES, "ns", "x")
        sequential = (time.perf_counter() - start) / SEQUENTIAL

        async def reconcile() -> float:
            began = time.perf_counter()
            for _ in range(3):
                await api.get(SERVICES, "ns", "x")
            for _ in range(3):
                await api.apply(SERVICES, "ns", "x", BODY)
            return time.perf_counter() - began

        durations: list[float] = []
        cpu = time.process_time()
        for _ in range(BURSTS):
            durations += await asyncio.gather(*(reconcile() for _ in range(CONCURRENT)))
        cpu = (time.process_time() - cpu) / (BURSTS * CONCURRENT * 6)
    finally:
        await api.close()
    durations.sort()
    return {"sequential_ms": sequential * 1000, "burst_p90_ms": durations[int(0.9 * len(durations))] * 1000,
            "cpu_ms": cpu * 1000}


async def measure(kubes: dict[str, ModuleType], repeat: int) -> dict[str, dict[str, float]]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(BODY)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server = f"http://127.0.0.1:{runner.addresses[0][1]}"
    names = list(kubes)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for index in range(repeat):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                rows[name].append(await one_client(kubes[name], server))
    finally:
        await runner.cleanup()
    return {name: {key: round(statistics.median(row[key] for row in runs), 2) for key in runs[0]}
            for name, runs in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("checkouts", nargs="+", help="NAME=CHECKOUT")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    kubes = {name: load(name, Path(path)) for name, path in (item.split("=", 1) for item in args.checkouts)}
    print(json.dumps(asyncio.run(measure(kubes, args.repeat)), indent=2))


if __name__ == "__main__":
    main()

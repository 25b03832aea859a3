"""The main job: a local control plane, the operator, an autoscaled WarmPool then an autoscaled RuntimeFleet of
eight tenants, real load, a live view and plots."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from warmpool.demo.fleet_scene import fleet_scene
from warmpool.demo.load import LoadCounts, Phase, rate_at, ready_pod_targets, run_load, total_seconds
from warmpool.demo.plot import Sample, plot
from warmpool.dev import commands
from warmpool.dev.build import ensure_kcluster
from warmpool.dev.controlplane import kubectl
from warmpool.dev.registry import read_access
from warmpool.module.commands import publish
from warmpool.module.credentials import Credentials
from warmpool.module.reference import OciReference
from warmpool_operator.render import selector_string
from warmpool_operator.scaling.exposition import ExpositionError, pool_metrics

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "classify.yaml"
POOL = "classify"
TICK = 2.0
# Well inside the runtime's drain window (5 s): a pod being removed leaves the targets while it still serves.
ENDPOINTS_REFRESH = 0.5
TARGET_MISS = 0.02
HOLD_MS = 100
# A quiet start, a ramp to a plateau, then a drop: about 3 minutes.
PHASES = (Phase(20, 4, 4), Phase(40, 4, 45), Phase(50, 45, 45), Phase(60, 3, 3))


def say(line: str) -> None:
    print(f"[demo] {line}", flush=True)


def demo_manifests() -> list[dict[str, Any]]:
    """The example ConfigMap and WarmPool, with autoscaling tuned so a 3-minute run shows it."""
    documents = [copy.deepcopy(d) for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    out = []
    for document in documents:
        if document["kind"] == "WarmPool":
            spec = document["spec"]
            spec.pop("replicas", None)
            spec["warmInstancesPerTuple"] = 4
            spec["limits"] = {**spec.get("limits", {}), "timeoutMs": 2000}
            spec["autoscaling"] = {
                "enabled": True, "minReplicas": 1, "maxReplicas": 10, "targetMissRatio": TARGET_MISS,
                "stableWindowSeconds": 30, "panicWindowSeconds": 6, "scaleDownDelaySeconds": 20,
                "tickSeconds": TICK,
            }
        out.append(document)
    return out


def module_bytes(manifests: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The example module as its ConfigMap ships it, and its key."""
    pool = next(d for d in manifests if d["kind"] == "WarmPool")
    ref = pool["spec"]["module"]["source"]["configMapRef"]
    config_map = next(d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref["name"])
    return base64.b64decode(config_map["binaryData"][ref["key"]]), ref["key"]


def with_oci_source(manifests: list[dict[str, Any]], reference: OciReference, pull_secret: str) -> list[dict[str, Any]]:
    """The demo's manifests with the module pulled from a registry instead of shipped in a ConfigMap."""
    out = []
    for document in copy.deepcopy(manifests):
        if document["kind"] == "ConfigMap":
            continue
        if document["kind"] == "WarmPool":
            document["spec"]["module"]["source"] = {"oci": {
                "repository": reference.repository, "reference": reference.reference, "insecure": True,
                "pullSecretRef": {"name": pull_secret},
            }}
        out.append(document)
    return out


def publish_to_dev_registry(manifests: list[dict[str, Any]], kubeconfig: Path, state_dir: Path) -> list[dict[str, Any]]:
    """Push the example module to `warmpool dev up`'s registry and point the WarmPool at it."""
    access = read_access(commands.registry_files(commands.resolve_layout(kubeconfig, state_dir)))
    data, key = module_bytes(manifests)
    tag = OciReference(registry=access.host, path=f"demo/{POOL}", tag="v1")
    digest = publish(data, tag, title=key, insecure=True,
                     credentials=Credentials(access.username, access.password, "the dev registry"))
    say(f"published the module to {tag.with_digest(digest)}")
    return with_oci_source(manifests, tag.with_digest(digest), commands.PULL_SECRET)


class Kube:
    """kubectl of the local cluster, as the demo needs it."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def run(self, *args: str, stdin: str | None = None) -> str:
        if stdin is not None:
            import subprocess

            result = subprocess.run([str(self.binary), "kubectl", f"--kubeconfig={self.kubeconfig}", *args],
                                    input=stdin, capture_output=True, text=True, timeout=120, check=False)
        else:
            result = kubectl(self.binary, self.kubeconfig, *args)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))


def ready_targets(kube: Kube) -> list[str]:
    """The pool's pods a Service would send requests to, by pod IP."""
    return ready_pod_targets(kube.json("get", "pods", "-l", selector_string(POOL))["items"])


async def follow_endpoints(kube: Kube, targets: list[str], until: asyncio.Task[None]) -> None:
    """Keep `targets` at the ready pods until `until` is done (on its own cadence, not the tick's)."""
    loop = asyncio.get_running_loop()
    while not until.done():
        try:
            targets[:] = await loop.run_in_executor(None, ready_targets, kube)
        except RuntimeError as exc:  # a failed kubectl keeps the last list
            say(f"  endpoints not refreshed: {exc}")
        await asyncio.sleep(ENDPOINTS_REFRESH)


def wait_ready(kube: Kube, timeout_s: float = 300) -> dict[str, Any]:
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        pool = kube.json("get", "warmpool", POOL)
        conditions = {c["type"]: c for c in pool.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready", {})
        line = f"Ready={ready.get('status', '?')} ({ready.get('reason', '')}: {ready.get('message', '')})"
        if line != last:
            say(f"  {line}")
            last = line
        if ready.get("status") == "True":
            return dict(pool)
        stalled = conditions.get("Stalled", {})
        if stalled.get("status") == "True":
            raise RuntimeError(f"the pool stalled: {stalled.get('reason')}: {stalled.get('message')}")
        time.sleep(1)
    raise RuntimeError("the WarmPool did not become Ready in time")


async def scrape(session: aiohttp.ClientSession, bases: Sequence[str]) -> tuple[float, float, float]:
    """Sum of hits, misses and idle warm instances over the pods that answered."""
    hits = misses = warm = 0.0

    async def one(base: str) -> None:
        nonlocal hits, misses, warm
        try:
            async with session.get(f"{base}/metrics") as resp:
                metrics = pool_metrics(await resp.text(), tenant="acme")
        except (aiohttp.ClientError, TimeoutError, ExpositionError):
            return
        if metrics is not None:
            hits, misses, warm = hits + metrics.hits, misses + metrics.misses, warm + metrics.warm

    await asyncio.gather(*(one(b) for b in bases))
    return hits, misses, warm


async def drive(kube: Kube, sha: str) -> list[Sample]:
    """Run the load schedule and watch the pool, printing a line per tick."""
    loop = asyncio.get_running_loop()
    targets: list[str] = await loop.run_in_executor(None, ready_targets, kube)
    counts = LoadCounts()
    body = json.dumps({"args": [HOLD_MS]}).encode()
    load = asyncio.create_task(run_load(PHASES, lambda: targets, f"/v1/acme/{sha}/hold", body, counts,
                                        clock=time.monotonic, rng=random.Random(7)))
    follower = asyncio.create_task(follow_endpoints(kube, targets, load))
    samples: list[Sample] = []
    start = last = time.monotonic()
    seen: dict[str, tuple[float, float]] = {}  # per pod: last (hits, misses); pods come and go
    say(f"{'t':>5}  {'offered':>8}  {'draws/s':>7}  {'miss %':>6}  {'pods desired/ready':>18}  warm  reason")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as session:
        while not load.done():
            await asyncio.sleep(TICK)
            delta_hits = delta_misses = warm = 0.0
            for base in list(targets):
                hits, misses, idle = await scrape(session, [base])
                last_hits, last_misses = seen.get(base, (hits, misses))
                delta_hits += max(0.0, hits - last_hits)
                delta_misses += max(0.0, misses - last_misses)
                warm += idle
                seen[base] = (hits, misses)
            status = (await loop.run_in_executor(None, kube.json, "get", "warmpool", POOL)).get("status", {})
            now = time.monotonic()
            t, interval, last = now - start, now - last, now
            draws = delta_hits + delta_misses
            sample = Sample(t=t, offered_rps=rate_at(PHASES, t), served_rps=draws / interval,
                            miss_ratio=delta_misses / draws if draws else None,
                            desired=int(status.get("desiredReplicas") or status.get("replicas") or 0),
                            ready=int(status.get("readyReplicas") or 0), warm=int(warm))
            samples.append(sample)
            miss = f"{100 * sample.miss_ratio:6.1f}" if sample.miss_ratio is not None else "     -"
            say(f"{t:5.0f}  {sample.offered_rps:8.1f}  {sample.served_rps:7.1f}  {miss}  "
                f"{sample.desired:>9}/{sample.ready:<8}  {sample.warm:4d}  {status.get('scalingReason', '')[:60]}")
    await load
    await follower
    say(f"load: {counts.sent} sent, {counts.ok} ok, {counts.shed} shed (429/503 with Retry-After), "
        f"{counts.failed} failed {counts.errors or ''}")
    return samples


def run(state_dir: Path, out: Path, keep: bool, module_source: str = "oci", fleet: bool = True) -> int:
    kubeconfig = state_dir / "kubeconfig"
    oci = module_source == "oci"
    say("starting the local control plane, node agent and operator" + (" and an OCI registry" if oci else "")
        + " (the first run on a machine compiles the control plane: 10-25 minutes)")
    if commands.up(kubeconfig=kubeconfig, state_dir=state_dir / "cluster", operator=True, crds=None,
                   registry=oci) != 0:
        return 1
    try:
        kube = Kube(ensure_kcluster(log=say), kubeconfig)
        manifests = demo_manifests()
        wasm, _ = module_bytes(manifests)
        limits = dict(next(d for d in manifests if d["kind"] == "WarmPool")["spec"]["limits"])
        if oci:
            manifests = publish_to_dev_registry(manifests, kubeconfig, state_dir / "cluster")
        sha = next(d for d in manifests if d["kind"] == "WarmPool")["spec"]["module"]["sha256"]
        say(f"applying the example WarmPool {POOL!r} (tenant acme, module {sha[:12]}, autoscaling on)")
        kube.run("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
        wait_ready(kube)
        print(kube.run("get", "warmpool", POOL), flush=True)
        say(f"driving load: {total_seconds(PHASES):.0f} s of Poisson arrivals of hold({HOLD_MS} ms), "
            "routed at random over Ready pods by pod IP, as a Service would")
        samples = asyncio.run(drive(kube, sha))
        picture = plot(samples, TARGET_MISS, out / "demo.png")
        print(kube.run("get", "warmpool", POOL), flush=True)
        say(f"plot written to {picture}")
        misses = [s.miss_ratio for s in samples if s.miss_ratio is not None]
        say(f"peak pods {max(s.desired for s in samples)}, ticks over target "
            f"{sum(m > TARGET_MISS for m in misses)} of {len(misses)}")
        if fleet:
            say("scene 2: the same module shared; a RuntimeFleet keeps eight tenants' variants warm on one set of pods")
            say(f"plot written to {fleet_scene(kube, wasm, limits, out / 'demo-fleet.png', say)}")
        return 0
    except (RuntimeError, ValueError) as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        if keep:
            say(f"left running; stop with: warmpool dev down --kubeconfig {kubeconfig} "
                f"--state-dir {state_dir / 'cluster'}")
        else:
            commands.down(kubeconfig=kubeconfig, state_dir=state_dir / "cluster", keep_state=False)


if __name__ == "__main__":
    sys.exit(run(ROOT / ".state" / "demo", ROOT / "out", keep=False))

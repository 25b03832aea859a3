"""One pod on the local node: its volumes, one supervised process per container, probes, status pushes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from warmpool.dev.agent import atomicdir, podstatus
from warmpool.dev.agent.kubeapi import MERGE_PATCH, ApiError, KubeApi
from warmpool.dev.agent.podips import PodIPs
from warmpool.dev.agent.podspec import CONFIG_ERROR, CREATE_ERROR, Container, HttpProbe, ObjectKind, PodPlan, Refused
from warmpool.dev.agent.podstatus import ContainerView, Terminated
from warmpool.dev.agent.resolve import (
    Addresses,
    Missing,
    ObjectKey,
    container_env,
    local_mounts,
    needed_objects,
    pod_mounts,
    process_argv,
    rewrite_paths,
    volume_files,
)

log = logging.getLogger("warmpool.dev.agent")
RETRY_S = 2.0
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class RunnerSettings:
    host_ip: str
    warmpool: tuple[str, ...]
    """argv prefix that runs this installation's `warmpool` CLI."""
    backoff_initial_s: float = podstatus.BACKOFF_INITIAL_S
    backoff_cap_s: float = podstatus.BACKOFF_CAP_S
    resync_s: float = 10.0


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodRunner:
    """Runs one pod until stop(); every change of what it observes is pushed to the pod's status."""

    def __init__(self, *, plan: PodPlan | None, refusal: Refused | None, pod: Mapping[str, Any],
                 api: KubeApi, http: aiohttp.ClientSession, ips: PodIPs, pod_dir: Path,
                 settings: RunnerSettings) -> None:
        self.pod = pod
        self._plan = plan
        self._refusal = refusal
        self._api, self._http, self._ips, self._dir, self._settings = api, http, ips, pod_dir, settings
        self._ip: str | None = None
        self._start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        containers = (pod.get("spec") or {}).get("containers") or ()
        reason, message = ("ContainerCreating", None) if refusal is None else (refusal.reason, refusal.message)
        self._views = {
            str(c["name"]): ContainerView(name=str(c["name"]), image=str(c.get("image") or ""), state="waiting",
                                          reason=reason, message=message)
            for c in containers
        }
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._objects: dict[ObjectKey, Mapping[str, Any] | None] = {}
        self._dirty = asyncio.Event()
        self._refresh = asyncio.Event()
        self._needs = set() if plan is None else needed_objects(plan)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_pushed: dict[str, Any] = dict(pod.get("status") or {})

    @property
    def uid(self) -> str:
        return str((self.pod.get("metadata") or {}).get("uid"))

    @property
    def where(self) -> str:
        meta = self.pod.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._push_loop()), asyncio.create_task(self._main())]
        self._dirty.set()

    def needs(self, kind: ObjectKind, namespace: str, name: str) -> bool:
        """The pod's volumes or environment read this ConfigMap or Secret."""
        return self._plan is not None and self._plan.namespace == namespace and (kind, name) in self._needs

    def refresh(self) -> None:
        """An object the pod reads changed: rewrite its volumes now rather than at the next resync."""
        self._refresh.set()

    def update(self, pod: Mapping[str, Any]) -> None:
        """A newer version of the pod (labels and annotations feed downward API values)."""
        self.pod = pod

    def _set(self, name: str, **changes: Any) -> None:
        self._views[name] = dataclasses.replace(self._views[name], **changes)
        self._dirty.set()

    # --- status -----------------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        refusal = None if self._refusal is None else (self._refusal.reason, self._refusal.message)
        return podstatus.pod_status(
            policy=self._plan.restart_policy if self._plan else str(
                (self.pod.get("spec") or {}).get("restartPolicy") or "Always"),
            views=list(self._views.values()), pod_ip=self._ip, host_ip=self._settings.host_ip,
            start_time=self._start_time, previous=self._last_pushed, now=now_rfc3339(), refusal=refusal,
        )

    async def _push_loop(self) -> None:
        meta = self.pod.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace"))
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=self._settings.resync_s)
            self._dirty.clear()
            status = self._status()
            if not podstatus.status_changed(self._last_pushed, status) or self._stopping:
                continue
            try:
                await self._api.call(self._api.core.patch_namespaced_pod_status, name, namespace, {"status": status},
                                     _content_type=MERGE_PATCH)
                self._last_pushed = status
            except ApiError as exc:
                if exc.status == 404:
                    return
                log.warning("%s: status update failed: %s", self.where, exc)
                self._dirty.set()
                await asyncio.sleep(RETRY_S)

    # --- volumes ----------------------------------------------------------------------------------

    async def _fetch_objects(self, plan: PodPlan) -> None:
        core = self._api.core
        for kind, name in needed_objects(plan):
            read = core.read_namespaced_config_map if kind == "configmaps" else core.read_namespaced_secret
            self._objects[(kind, name)] = await self._api.call(read, name, plan.namespace, allow=(404,))

    async def _tokens(self, plan: PodPlan) -> dict[str, str]:
        tokens: dict[str, str] = {}
        for volume in plan.volumes:
            for source in volume.tokens:
                spec: dict[str, Any] = {
                    "expirationSeconds": max(600, source.expiration_s),
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": plan.name, "uid": plan.uid},
                }
                if source.audience:
                    spec["audiences"] = [source.audience]
                answer = await self._api.call(
                    self._api.core.create_namespaced_service_account_token, plan.service_account, plan.namespace,
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
                tokens[source.path] = str(((answer or {}).get("status") or {}).get("token") or "")
        return tokens

    async def _materialise(self, plan: PodPlan, *, first: bool) -> None:
        await self._fetch_objects(plan)
        tokens = await self._tokens(plan) if first else {}
        addresses = Addresses(pod_ip=self._ip or "", host_ip=self._settings.host_ip)
        for volume in plan.volumes:
            root = self._dir / ".volumes" / volume.name
            if volume.kind == "emptyDir":
                root.mkdir(parents=True, exist_ok=True)
            elif volume.kind == "files" and (first or not volume.tokens):
                files = volume_files(volume, self.pod, self._objects, addresses, tokens,
                                     text_mounts=pod_mounts(plan, str(self._dir)))
                if atomicdir.write(root, files, volume.mode) and not first:
                    log.info("%s: volume %s updated", self.where, volume.name)
        if first:
            for container in plan.containers:
                for mount in container.mounts:
                    volume = next(v for v in plan.volumes if v.name == mount.volume)
                    base = Path(volume.host_path) if volume.host_path else self._dir / ".volumes" / volume.name
                    target = base / mount.sub_path if mount.sub_path else base
                    link = self._dir / mount.mount_path.lstrip("/")
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.is_symlink():
                        link.symlink_to(target)

    # --- processes --------------------------------------------------------------------------------

    async def _main(self) -> None:
        if self._plan is None:
            return
        try:
            await self._prepare_and_run(self._plan)
        except Exception as exc:
            # An agent bug or a local failure must show on the pod, not vanish with the task.
            log.exception("%s: cannot run the pod", self.where)
            self._refusal = Refused(CREATE_ERROR, f"the local node agent failed: {exc}")
            for name in self._views:
                self._set(name, state="waiting", reason=CREATE_ERROR, message=self._refusal.message)

    async def _prepare_and_run(self, plan: PodPlan) -> None:
        meta_ip = str((self.pod.get("status") or {}).get("podIP") or "")
        ports = [p for c in plan.containers for p in c.ports]
        self._ip = self._ips.acquire(ports, preferred=meta_ip if meta_ip.startswith("127.") else None)
        (self._dir / "logs").mkdir(parents=True, exist_ok=True)
        first = True
        while not self._stopping:
            self._refresh.clear()  # before reading the objects: a change while they are read wakes the next round
            try:
                await self._materialise(plan, first=first)
                if first:
                    first = False
                    self._tasks += [asyncio.create_task(self._supervise(plan, c)) for c in plan.containers]
            except Missing as exc:
                if first:
                    for name in self._views:
                        self._set(name, reason="ContainerCreating", message=f"MountVolume.SetUp failed: {exc}")
                else:
                    log.warning("%s: refreshing volumes: %s", self.where, exc)
            except Refused as exc:
                if first:
                    self._refusal = exc
                    for name in self._views:
                        self._set(name, state="waiting", reason=exc.reason, message=exc.message)
                    return
                log.warning("%s: refreshing volumes: %s", self.where, exc.message)
            except ApiError as exc:
                log.warning("%s: preparing volumes: %s", self.where, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), RETRY_S if first else self._settings.resync_s)

    def _process_env(self, plan: PodPlan, container: Container) -> tuple[list[str], dict[str, str]]:
        addresses = Addresses(pod_ip=self._ip or "", host_ip=self._settings.host_ip)
        pod_env = container_env(container, self.pod, self._objects, addresses)
        mounts = local_mounts(container, str(self._dir))
        env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        env["HOSTNAME"] = plan.name
        env.update({k: rewrite_paths(v, mounts) for k, v in pod_env.items()})
        argv = process_argv(container, pod_env, warmpool=self._settings.warmpool, pod_dir=str(self._dir),
                            pod_ip=self._ip or "")
        return argv, env

    async def _supervise(self, plan: PodPlan, container: Container) -> None:
        name = container.name
        failures = 0
        while not self._stopping:
            try:
                argv, env = self._process_env(plan, container)
            except Refused as exc:
                self._set(name, state="waiting", reason=exc.reason, message=exc.message)
                await asyncio.sleep(RETRY_S)
                continue
            started_at, started = now_rfc3339(), time.monotonic()
            try:
                with (self._dir / "logs" / f"{name}.log").open("ab") as out:
                    process = await asyncio.create_subprocess_exec(
                        *argv, env=env, cwd=self._dir, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                        stderr=asyncio.subprocess.STDOUT)
            except OSError as exc:
                self._set(name, state="waiting", reason=CONFIG_ERROR, message=f"cannot start {argv[0]}: {exc}")
                await asyncio.sleep(RETRY_S)
                continue
            self._processes[name] = process
            self._set(name, state="running", started_at=started_at, pid=process.pid, reason=None, message=None,
                      ready=container.readiness is None)
            probes = [asyncio.create_task(self._probe(container, process, container.readiness, liveness=False)),
                      asyncio.create_task(self._probe(container, process, container.liveness, liveness=True))]
            code = await process.wait()
            for task in probes:
                task.cancel()
            self._processes.pop(name, None)
            ended = Terminated(exit_code=128 - code if code < 0 else code, started_at=started_at,
                               finished_at=now_rfc3339(), signal=-code if code < 0 else None)
            if self._stopping:
                return
            if not podstatus.should_restart(plan.restart_policy, ended.exit_code):
                self._set(name, state="terminated", terminated=ended, ready=False)
                return
            failures = 0 if time.monotonic() - started >= podstatus.BACKOFF_RESET_AFTER_S else failures
            delay = podstatus.restart_delay(failures, initial_s=self._settings.backoff_initial_s,
                                            cap_s=self._settings.backoff_cap_s)
            failures += 1
            view = self._views[name]
            self._set(name, state="waiting" if delay else "terminated", terminated=ended, last_terminated=ended,
                      ready=False, reason="CrashLoopBackOff",
                      message=f"back-off {delay:.0f}s restarting failed container={name} pod={plan.name}",
                      restart_count=view.restart_count + 1)
            await asyncio.sleep(delay)

    async def _probe(self, container: Container, process: asyncio.subprocess.Process,
                     probe: HttpProbe | None, *, liveness: bool) -> None:
        if probe is None:
            return
        await asyncio.sleep(probe.initial_delay_s)
        url = f"{probe.scheme}://{probe.host or self._ip}:{probe.port}{probe.path}"
        successes = failures = 0
        while process.returncode is None:
            ok = await self._http_ok(url, probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if liveness and failures >= probe.failure_threshold:
                log.warning("%s: container %s failed its liveness probe; restarting", self.where, container.name)
                await _terminate(process, grace_s=self._grace_s())
                return
            if not liveness:
                ready = self._views[container.name].ready
                if not ready and successes >= probe.success_threshold:
                    self._set(container.name, ready=True)
                elif ready and failures >= probe.failure_threshold:
                    self._set(container.name, ready=False)
            await asyncio.sleep(probe.period_s)

    async def _http_ok(self, url: str, probe: HttpProbe) -> bool:
        try:
            async with self._http.get(url, headers=dict(probe.headers),
                                      timeout=aiohttp.ClientTimeout(total=probe.timeout_s)) as response:
                return 200 <= response.status < 400
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def _grace_s(self) -> float:
        spec = self.pod.get("spec") or {}
        grace = spec.get("terminationGracePeriodSeconds")
        return 30.0 if grace is None else float(grace)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop the processes (SIGTERM, SIGKILL after the grace period), release the IP, drop the pod dir."""
        self._stopping = True
        grace = self._grace_s() if grace_s is None else grace_s
        await asyncio.gather(*(_terminate(p, grace_s=grace) for p in list(self._processes.values())))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ip is not None:
            self._ips.release(self._ip)
        shutil.rmtree(self._dir, ignore_errors=True)


async def _terminate(process: asyncio.subprocess.Process, *, grace_s: float) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=max(grace_s, 0.1))
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

"""Wiring: settings, API adapter, prober, metrics and kopf handlers assembled into one operator run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import kopf
from prometheus_client import CollectorRegistry

from warmpool_operator import handlers, kube, scaling_handlers
from warmpool_operator.controller import Controller
from warmpool_operator.election import LeaderElector, LeaseConfig
from warmpool_operator.heap import trim_forever
from warmpool_operator.liveness import Heartbeat, serve_health
from warmpool_operator.metrics import OperatorMetrics, register_process_collectors, serve_metrics
from warmpool_operator.probe import HttpProber
from warmpool_operator.render import LABEL_MANAGED_BY, MANAGED_BY
from warmpool_operator.settings import OperatorConfig
from warmpool_operator.spec import GROUP

log = logging.getLogger(__name__)

LoginFn = Callable[[], Awaitable[kopf.ConnectionInfo]]
Registrar = Callable[[kopf.OperatorRegistry, Controller], None]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

EXTRA_REGISTRARS: tuple[Registrar, ...] = (scaling_handlers.register,)
"""Handler sets beyond reconciliation: the autoscaler's per-pool loops."""


def kopf_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    """kopf's knobs, each set on purpose."""
    settings = kopf.OperatorSettings()
    # Everything kopf stores on WarmPools lives under our own API group, not kopf's.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Bounded API calls: a hung API server must surface as a retryable error, not a stuck handler.
    settings.networking.request_timeout = config.request_timeout_seconds
    settings.networking.connect_timeout = config.connect_timeout_seconds
    settings.watching.connect_timeout = config.connect_timeout_seconds
    # Watches are renewed periodically (a fresh list catches anything a broken stream missed)
    # and a silent stream is dropped and reopened instead of waiting forever.
    # Sent as `timeoutSeconds`, which the API server parses as an integer.
    settings.watching.server_timeout = int(config.watch_server_timeout_seconds)
    settings.watching.client_timeout = config.watch_server_timeout_seconds + 30
    settings.watching.inactivity_timeout = config.watch_inactivity_seconds
    # Unexpected exceptions (not our TemporaryError with its own delay) retry after this long.
    settings.execution.default_backoff = config.retry_backoff_seconds[-1]
    settings.networking.error_backoffs = config.retry_backoff_seconds
    # Only the Events we post on purpose (state transitions), never one per log line.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "warmpool-operator"
    # A stream that broke is reopened after this pause (410 Gone makes kopf list again).
    settings.watching.reconnect_backoff = 1.0
    # Coordination of replicas: a Lease (see `election`) decides who runs kopf at all, so kopf's
    # own peering is off then; it pauses every replica when their priorities are equal.
    peering = not config.standalone and not config.leader_election
    settings.peering.name = config.peering_name
    settings.peering.priority = config.priority
    settings.peering.standalone = not peering
    settings.peering.mandatory = peering
    # kopf refreshes the record 5-10 s before it expires; shorter than kopf's 60 s default so that
    # a replica restarted after a crash resumes sooner.
    settings.peering.lifetime = config.peering_lifetime_seconds
    return settings


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_operator(
    config: OperatorConfig,
    *,
    namespaces: Sequence[str] = (),
    clusterwide: bool = False,
    login: LoginFn | None = None,
    metrics_registry: CollectorRegistry | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    registrars: Sequence[Registrar] | None = None,
) -> None:
    """Run until `stop_flag` is set or a signal arrives; `login` defaults to in-cluster/kubeconfig."""
    if clusterwide == bool(namespaces):
        raise ValueError("watch either some namespaces or all of them (clusterwide), not both or neither")
    settings = kopf_settings(config)
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    for group, _, plural in handlers.CHILD_RESOURCES:
        # Only our children stream in, not every Deployment, Service and ConfigMap around.
        settings.watching.label_selectors[(group, plural) if group else plural] = selector

    async def default_login() -> kopf.ConnectionInfo:
        return await kube.login(settings, log)

    do_login = login or default_login
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    register_process_collectors(registry)
    metrics = OperatorMetrics.create(registry)
    api = kube.KubeApi(
        await do_login(),
        login=do_login,
        timeouts=kube.Timeouts(config.request_timeout_seconds, config.connect_timeout_seconds),
        requests=metrics.api_requests,
    )
    prober = HttpProber(timeout_seconds=config.probe_timeout_seconds, max_pods=config.max_probed_pods)
    ctl = Controller(
        config=config,
        api=api,
        prober=prober,
        metrics=metrics,
        clock=utc_now,
        namespaces=tuple(namespaces),
    )
    kopf_registry = kopf.OperatorRegistry()
    fleets = await ctl.fleets_allowed()
    handlers.register(kopf_registry, ctl, login=do_login, fleets=fleets,
                      secrets=fleets and await ctl.secrets_watchable())
    for registrar in registrars if registrars is not None else EXTRA_REGISTRARS:
        registrar(kopf_registry, ctl)

    metrics_runner = None
    if config.metrics_port:
        metrics_runner = await serve_metrics(registry, config.metrics_host, config.metrics_port)
    heartbeat = Heartbeat()
    heartbeat.beat()
    beating = asyncio.create_task(heartbeat.run())
    trimming = asyncio.create_task(trim_forever())
    elector = None
    if config.leader_election and not config.standalone:
        elector = LeaderElector(api, lease_config(config))
        heartbeat.state.update(identity=elector.config.identity, leading=False)
    health_runner = None
    if config.health_port:
        health_runner = await serve_health(heartbeat, config.health_host, config.health_port,
                                           readiness=lambda: {"lastWatchEventAgeSeconds": ctl.watch.age_seconds()})

    async def run_kopf(kopf_stop: asyncio.Event | None) -> None:
        heartbeat.state["kopfRunning"] = True
        try:
            await kopf.operator(
                registry=kopf_registry,
                settings=settings,
                clusterwide=clusterwide,
                namespaces=list(namespaces),
                stop_flag=kopf_stop,
                ready_flag=ready_flag,
            )
        finally:
            heartbeat.state["kopfRunning"] = False

    try:
        if elector is None:
            await run_kopf(stop_flag)
        else:
            await lead(elector, run_kopf, heartbeat, stop_flag)
    finally:
        beating.cancel()
        trimming.cancel()
        if health_runner is not None:
            await health_runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await prober.close()
        await ctl.readyz.close()
        await api.close()


def lease_config(config: OperatorConfig) -> LeaseConfig:
    """The Lease's place and this replica's identity, from the settings or the pod's environment."""
    namespace = config.lease_namespace or os.environ.get("POD_NAMESPACE", "")
    if not namespace:
        with contextlib.suppress(OSError):
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else ""
    identity = config.identity or f"{os.environ.get('POD_NAME') or socket.gethostname()}-{secrets.token_hex(4)}"
    return LeaseConfig(
        namespace=namespace or "default",
        name=config.lease_name,
        identity=identity,
        duration_seconds=config.lease_duration_seconds,
        renew_deadline_seconds=config.lease_renew_deadline_seconds,
        retry_seconds=config.lease_retry_seconds,
    )


async def lead(
    elector: LeaderElector,
    run_kopf: Callable[[asyncio.Event], Awaitable[None]],
    heartbeat: Heartbeat,
    stop_flag: asyncio.Event | None,
) -> None:
    """Run kopf only while this replica holds the Lease; stop it at once when the Lease is lost.

    Until `stop_flag` is set, or a signal arrives (kopf's own handlers while it runs, ours otherwise).
    """
    stop = stop_flag or asyncio.Event()
    loop = asyncio.get_running_loop()
    electing = asyncio.create_task(elector.run())

    def on_signal() -> None:
        stop.set()

    def own_signals(install: bool) -> None:
        if stop_flag is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                if install:
                    loop.add_signal_handler(sig, on_signal)
                else:
                    loop.remove_signal_handler(sig)

    try:
        while not stop.is_set():
            own_signals(True)
            await _first(elector.leading.wait(), stop.wait())
            own_signals(False)
            if stop.is_set():
                break
            heartbeat.state["leading"] = True
            kopf_stop = asyncio.Event()
            guard = asyncio.create_task(_stop_when_any(kopf_stop, elector.lost, stop))
            try:
                await run_kopf(kopf_stop)
            finally:
                guard.cancel()
                heartbeat.state["leading"] = elector.is_leader
            if not kopf_stop.is_set():
                break  # kopf stopped by itself: a signal it handled
            if not stop.is_set():
                log.warning("leadership lost: reconciliation paused until this replica leads again")
    finally:
        own_signals(False)
        electing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await electing


async def _stop_when_any(target: asyncio.Event, *events: asyncio.Event) -> None:
    await _first(*(event.wait() for event in events))
    target.set()


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

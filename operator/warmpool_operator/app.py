"""Wiring: settings, API adapter, prober, metrics and kopf handlers assembled into one operator run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import kopf
from prometheus_client import CollectorRegistry

from warmpool_operator import handlers, kube, scaling_handlers
from warmpool_operator.controller import Controller
from warmpool_operator.metrics import OperatorMetrics, serve_metrics
from warmpool_operator.probe import HttpProber
from warmpool_operator.render import LABEL_MANAGED_BY, MANAGED_BY
from warmpool_operator.settings import OperatorConfig
from warmpool_operator.spec import GROUP

log = logging.getLogger(__name__)

LoginFn = Callable[[], Awaitable[kopf.ConnectionInfo]]
Registrar = Callable[[kopf.OperatorRegistry, Controller], None]

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
    # Peering: replicas of the operator agree on one active instance.
    settings.peering.name = config.peering_name
    settings.peering.priority = config.priority
    settings.peering.standalone = config.standalone
    settings.peering.mandatory = not config.standalone
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
    api = kube.KubeApi(
        await do_login(),
        login=do_login,
        timeouts=kube.Timeouts(config.request_timeout_seconds, config.connect_timeout_seconds),
    )
    prober = HttpProber(timeout_seconds=config.probe_timeout_seconds, max_pods=config.max_probed_pods)
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    ctl = Controller(
        config=config,
        api=api,
        prober=prober,
        metrics=OperatorMetrics.create(registry),
        clock=utc_now,
        namespaces=tuple(namespaces),
    )
    kopf_registry = kopf.OperatorRegistry()
    handlers.register(kopf_registry, ctl, login=do_login)
    for registrar in registrars if registrars is not None else EXTRA_REGISTRARS:
        registrar(kopf_registry, ctl)

    metrics_runner = None
    if config.metrics_port:
        metrics_runner = await serve_metrics(registry, config.metrics_host, config.metrics_port)
    liveness = f"http://{config.health_host}:{config.health_port}/healthz" if config.health_port else None
    try:
        await kopf.operator(
            registry=kopf_registry,
            settings=settings,
            clusterwide=clusterwide,
            namespaces=list(namespaces),
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await prober.close()
        await api.close()

"""Wiring: settings, API adapter, prober, metrics and kopf handlers assembled into one operator run."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import kopf
from prometheus_client import CollectorRegistry

from warmpool_operator import handlers, kube
from warmpool_operator.controller import Controller
from warmpool_operator.metrics import OperatorMetrics, serve_metrics
from warmpool_operator.probe import HttpProber
from warmpool_operator.render import LABEL_MANAGED_BY, MANAGED_BY
from warmpool_operator.settings import OperatorConfig, kopf_settings

log = logging.getLogger(__name__)

LoginFn = Callable[[], Awaitable[kopf.ConnectionInfo]]
Registrar = Callable[[kopf.OperatorRegistry, Controller], None]

# The autoscaler plugs in here: a module defining `register(registry, controller)`.
SCALING_HANDLERS = "warmpool_operator.scaling.handlers"


def extra_registrars() -> list[Registrar]:
    """Handler sets beyond reconciliation, present when their package provides them."""
    if importlib.util.find_spec(SCALING_HANDLERS) is None:
        return []
    module = importlib.import_module(SCALING_HANDLERS)
    registrar: Registrar = module.register
    return [registrar]


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
    for registrar in registrars if registrars is not None else extra_registrars():
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

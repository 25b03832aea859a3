"""kopf registration of the autoscaler: a per-WarmPool loop ticking every `spec.autoscaling.tickSeconds`.

kopf timers share one fixed interval per handler, so the per-pool tick is a kopf daemon that
waits `tickSeconds` (read from the live spec each time) between ticks. Its `when` filter makes
kopf stop it when `spec.autoscaling.enabled` turns false and start it again when it turns true.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from warmpool_operator.actuator import Actuator, TickOutcome
from warmpool_operator.controller import Controller
from warmpool_operator.defaults import parse_pool
from warmpool_operator.fields import SpecError
from warmpool_operator.kinds import describe
from warmpool_operator.kube import TRANSIENT
from warmpool_operator.ownership import ReplicaOwner, manifest_replica_owner
from warmpool_operator.scalers import pause_seconds
from warmpool_operator.scaling.spec import AutoscalingSpec
from warmpool_operator.spec import GROUP, PLURAL, VERSION, PoolMeta

STOPPED_BY_FILTER = kopf.DaemonStoppingReason.FILTERS_MISMATCH
STOPPED_BY_DELETION = kopf.DaemonStoppingReason.RESOURCE_DELETED


def autoscaling_enabled(*, spec: Mapping[str, Any], **_: Any) -> bool:
    """kopf's `when` filter: the pool's Deployment replicas belong to the autoscaler."""
    return manifest_replica_owner(spec) is ReplicaOwner.AUTOSCALER


def register(
    registry: kopf.OperatorRegistry, ctl: Controller, *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Attach the autoscaler's handlers to `registry` (found by `app.EXTRA_REGISTRARS`)."""
    actuator = Actuator(ctl, clock=clock)

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, id="autoscale", when=autoscaling_enabled)
    async def autoscale(*, body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
        meta: PoolMeta | None = None
        failing = False
        try:
            while not stopped:
                started = actuator.clock()
                tick = AutoscalingSpec().tick_seconds
                try:
                    pool = parse_pool(body, ctl.config.defaults)
                except SpecError:
                    pass  # reconciliation reports InvalidSpec; nothing is scaled by a spec that cannot work
                else:
                    meta, tick = pool.meta, pool.spec.autoscaling.tick_seconds
                    try:
                        outcome = await actuator.tick(pool)
                    except TRANSIENT as exc:
                        # Said once per run of failures, not every tick; the next tick retries.
                        (logger.debug if failing else logger.warning)("autoscaling tick failed: %s", describe(exc))
                        failing = True
                    else:
                        if failing:
                            logger.info("autoscaling ticks succeed again")
                        failing = False
                        if outcome is not None:
                            report(outcome, body, logger)
                await stopped.wait(pause_seconds(tick, actuator.clock() - started))
        finally:
            # Only when kopf asked the loop to end: after an exception kopf restarts it, and the
            # pool's observations must survive that.
            why = stopped.reason
            if meta is not None and why is not None:
                await actuator.stop(
                    meta, turned_off=bool(why & STOPPED_BY_FILTER), deleted=bool(why & STOPPED_BY_DELETION)
                )

    @kopf.on.cleanup(registry=registry, id="autoscaler-session")
    async def close_session(**_: Any) -> None:
        await actuator.close()


def report(outcome: TickOutcome, body: kopf.Body, logger: kopf.Logger) -> None:
    """Post the Event of a replica change and log it; holds and keeps are in status only."""
    notice = outcome.notice
    if notice is not None:
        kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
        logger.info("%s: %s", notice.reason, notice.message)
    if outcome.failures:
        pods = ", ".join(f"{s.pod} ({s.error})" for s in outcome.failures[:3])
        logger.debug("no usable metrics from %d pod(s): %s", len(outcome.failures), pods)

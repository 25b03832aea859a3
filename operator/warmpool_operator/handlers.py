"""kopf registration: each handler turns a trigger into `Controller.reconcile` and reports back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from warmpool_operator.controller import Controller, Result
from warmpool_operator.kinds import describe
from warmpool_operator.kube import TRANSIENT
from warmpool_operator.render import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from warmpool_operator.settings import backoff_delay
from warmpool_operator.spec import GROUP, PLURAL, VERSION

CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
)
CHILD_LABELS = {LABEL_MANAGED_BY: MANAGED_BY}

LoginFn = Callable[[], Any]


def register(registry: kopf.OperatorRegistry, ctl: Controller, *, login: LoginFn) -> None:
    """Attach every handler to `registry`, closed over one controller (no module-level state)."""
    config = ctl.config

    @kopf.on.login(registry=registry, id="login")
    async def log_in(**_: Any) -> kopf.ConnectionInfo:
        info: kopf.ConnectionInfo = await login()
        await ctl.api.use(info)
        return info

    if not config.standalone and not config.leader_election:

        @kopf.on.startup(registry=registry, id="peering")
        async def ensure_peering(logger: kopf.Logger, **_: Any) -> None:
            for where in await ctl.ensure_peering():
                logger.info("created the peering object %s", where)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    async def reconcile_pool(
        *, namespace: str | None, name: str, reason: str, retry: int, logger: kopf.Logger, **_: Any
    ) -> None:
        assert namespace is not None  # WarmPool is namespaced
        ctl.watch.seen()
        try:
            result = await ctl.reconcile(namespace, name, trigger=str(reason))
        except TRANSIENT as exc:
            delay = backoff_delay(config, retry)
            raise kopf.TemporaryError(f"API request failed: {describe(exc)}", delay=delay) from exc
        if result is None:
            return
        report(result, logger)
        problem = result.outcome.problem
        if problem is not None and problem.permanent:
            raise kopf.PermanentError(f"{problem.reason}: {problem.message}")
        if problem is not None:
            raise kopf.TemporaryError(f"{problem.reason}: {problem.message}", delay=backoff_delay(config, retry))

    # The level-based resync: drift nobody announced, pod health, status. A stalled pool is
    # reported, not raised: the create/update handler above carries the retries with backoff.
    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="resync",
        interval=config.resync_seconds,
        initial_delay=config.resync_seconds,
    )
    async def resync(*, namespace: str | None, name: str, logger: kopf.Logger, **kwargs: Any) -> None:
        assert namespace is not None
        retry = int(kwargs.get("retry", 0))
        try:
            result = await ctl.reconcile(namespace, name, trigger="resync")
        except TRANSIENT as exc:
            delay = backoff_delay(config, retry)
            raise kopf.TemporaryError(f"API request failed: {describe(exc)}", delay=delay) from exc
        if result is not None:
            report(result, logger)

    async def child_changed(
        *, type: str, labels: Mapping[str, str], namespace: str | None, logger: kopf.Logger, **_: Any
    ) -> None:
        """A child edited or deleted by hand is restored at once, not at the next resync."""
        ctl.watch.seen()
        owner = labels.get(LABEL_INSTANCE)
        if not owner or namespace is None:
            return
        try:
            result = await ctl.reconcile(namespace, owner, trigger="child")
        except TRANSIENT as exc:
            logger.warning("reconcile of %s after a %s event failed: %s", owner, type, describe(exc))
            return
        if result is not None:
            report(result, logger)

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, registry=registry, labels=CHILD_LABELS, id=f"child-{plural}")(
            child_changed
        )

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, optional=True, id="forget")
    async def forget(*, namespace: str | None, name: str, **_: Any) -> None:
        assert namespace is not None
        # Children carry owner references, so the garbage collector deletes them; the finalizer kopf
        # keeps (for the resync and autoscaling loops) is released once this handler returns.
        ctl.locks.forget(namespace, name)


def report(result: Result, logger: kopf.Logger) -> None:
    """Log what was written and post Events for state transitions."""
    outcome = result.outcome
    for write in outcome.writes:
        detail = f" ({', '.join(write.fields[:5])})" if write.fields else ""
        logger.info("%s %s %s%s", write.verb, write.kind, write.name, detail)
    for notice in outcome.notices:
        body = kopf.Body(cast(kopf.RawBody, result.body))
        kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
        log = logger.warning if notice.type == "Warning" else logger.info
        log("%s: %s", notice.reason, notice.message)
    if outcome.problem is not None:
        # Already said once at the transition; a lasting problem is not re-logged every resync.
        logger.debug("still %s: %s", outcome.problem.reason, outcome.problem.message)

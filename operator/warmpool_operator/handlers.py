"""kopf registration: each handler turns a trigger into `Controller.reconcile` and reports back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from warmpool_operator.controller import Controller, FleetResult, Result
from warmpool_operator.fields import SpecError
from warmpool_operator.kinds import describe
from warmpool_operator.kube import TRANSIENT
from warmpool_operator.render import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from warmpool_operator.runtimefleet.autoscaler import FleetAutoscaler
from warmpool_operator.runtimefleet.reconcile import token_digests
from warmpool_operator.runtimefleet.render import LABEL_FLEET
from warmpool_operator.runtimefleet.spec import PLURAL as FLEETS
from warmpool_operator.runtimefleet.spec import parse_fleet
from warmpool_operator.scalers import scale_notice
from warmpool_operator.settings import backoff_delay
from warmpool_operator.spec import GROUP, PLURAL, VERSION

CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
)
"""Children watched for hand edits (a fleet's token Secret is not: the operator may not watch Secrets
in every namespace for it, and the resync restores it)."""
CHILD_LABELS = {LABEL_MANAGED_BY: MANAGED_BY}

LoginFn = Callable[[], Any]


def register(
    registry: kopf.OperatorRegistry, ctl: Controller, *, login: LoginFn, fleets: bool = True, secrets: bool = False
) -> None:
    """Attach every handler to `registry`, closed over one controller (no module-level state).

    `fleets=False` leaves RuntimeFleets unwatched: kopf stops the whole operator when a watch is forbidden.
    `secrets=True` watches Secrets, so that a member's token rotation reaches its fleet at once.
    """
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
        *,
        namespace: str | None,
        name: str,
        reason: str,
        retry: int,
        logger: kopf.Logger,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> None:
        assert namespace is not None  # WarmPool is namespaced
        ctl.watch.seen()
        left = fleet_of(old, namespace)
        if left is not None and left != fleet_of(new, namespace):
            # The pool left a fleet (or changed fleets): the fleet it left drops its tuple now.
            await refresh_fleet(*left, logger=logger)
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
        if fleet_of(result.body, namespace) is not None and reconciling(result.outcome.status):
            # A tuple warming on pods that are already Ready changes no Kubernetes object: look again
            # soon (with backoff) rather than at the next resync.
            raise kopf.TemporaryError("waiting for the fleet's pods to warm the tuple",
                                      delay=backoff_delay(config, retry))

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
    async def resync(
        *, namespace: str | None, name: str, body: kopf.Body, logger: kopf.Logger, **kwargs: Any
    ) -> None:
        assert namespace is not None
        retry = int(kwargs.get("retry", 0))
        try:
            result = await ctl.reconcile(namespace, name, trigger="resync", seen=body)
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
        fleet = labels.get(LABEL_FLEET)
        if fleet and namespace is not None:
            await refresh_fleet(namespace, fleet, logger=logger)
            return
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
    async def forget(*, namespace: str | None, name: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        assert namespace is not None
        # Children carry owner references, so the garbage collector deletes them; the finalizer kopf
        # keeps (for the resync and autoscaling loops) is released once this handler returns.
        ctl.forget_pool(namespace, name)
        fleet = fleet_of(body, namespace)
        if fleet is not None:
            await refresh_fleet(*fleet, logger=logger)  # it skips pools being deleted: the tuple goes

    async def refresh_fleet(namespace: str, name: str, *, logger: kopf.Logger) -> None:
        """Reconcile a fleet on behalf of one of its members or children; failures wait for its resync."""
        try:
            result = await ctl.reconcile_fleet(namespace, name, trigger="member")
        except TRANSIENT as exc:
            logger.warning("reconcile of RuntimeFleet %s/%s failed: %s", namespace, name, describe(exc))
            return
        if result is not None:
            report_fleet(result, logger)

    async def run_fleet(namespace: str, name: str, *, trigger: str, retry: int, logger: kopf.Logger) -> None:
        try:
            result = await ctl.reconcile_fleet(namespace, name, trigger=trigger)
        except TRANSIENT as exc:
            delay = backoff_delay(config, retry)
            raise kopf.TemporaryError(f"API request failed: {describe(exc)}", delay=delay) from exc
        if result is None:
            return
        report_fleet(result, logger)
        problem = result.outcome.problem
        if problem is not None and trigger != "resync":
            if problem.permanent:
                raise kopf.PermanentError(f"{problem.reason}: {problem.message}")
            raise kopf.TemporaryError(f"{problem.reason}: {problem.message}", delay=backoff_delay(config, retry))

    if not fleets:
        return  # the operator may not watch RuntimeFleets (see Controller.fleets_allowed)

    @kopf.on.resume(GROUP, VERSION, FLEETS, registry=registry, id="reconcile-fleet")
    @kopf.on.create(GROUP, VERSION, FLEETS, registry=registry, id="reconcile-fleet")
    @kopf.on.update(GROUP, VERSION, FLEETS, registry=registry, id="reconcile-fleet")
    async def reconcile_fleet(
        *, namespace: str | None, name: str, reason: str, retry: int, logger: kopf.Logger, **_: Any
    ) -> None:
        assert namespace is not None  # RuntimeFleet is namespaced
        ctl.watch.seen()
        await run_fleet(namespace, name, trigger=str(reason), retry=retry, logger=logger)

    @kopf.timer(
        GROUP,
        VERSION,
        FLEETS,
        registry=registry,
        id="resync-fleet",
        interval=config.resync_seconds,
        initial_delay=config.resync_seconds,
    )
    async def resync_fleet(*, namespace: str | None, name: str, logger: kopf.Logger, **kwargs: Any) -> None:
        assert namespace is not None
        await run_fleet(namespace, name, trigger="resync", retry=int(kwargs.get("retry", 0)), logger=logger)

    if secrets:
        ctl.tokens.watching = True

        def token_secret(*, namespace: str | None, name: str | None, **_: Any) -> bool:
            return ctl.tokens.referenced(namespace, name)

        @kopf.on.event("", "v1", "secrets", registry=registry, id="token-secrets", when=token_secret)
        async def token_secret_changed(
            *, type: str | None, body: kopf.Body, namespace: str | None, name: str, logger: kopf.Logger, **_: Any
        ) -> None:
            """A member's `spec.auth` Secret changed: its fleets rewrite their digests now, not at their resync."""
            assert namespace is not None
            digests = None if type == "DELETED" else token_digests(body)
            for fleet_namespace, fleet_name in sorted(ctl.tokens.observe((namespace, name), digests)):
                await refresh_fleet(fleet_namespace, fleet_name, logger=logger)

    fleet_scaler = FleetAutoscaler(ctl)

    @kopf.daemon(GROUP, VERSION, FLEETS, registry=registry, id="autoscale-fleet", when=fleet_autoscaled)
    async def autoscale_fleet(
        *, body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any
    ) -> None:
        """The two-level loop, every tickSeconds: warm counts per tuple first, pods only when those no
        longer fit."""
        uid = str(body.get("metadata", {}).get("uid", ""))
        failing = False
        try:
            while not stopped:
                tick = 2.0
                try:
                    fleet = parse_fleet(body)
                except SpecError:
                    pass  # reconciliation reports InvalidSpec
                else:
                    tick = fleet.spec.autoscaling.tick_seconds
                    try:
                        outcome = await fleet_scaler.tick(fleet)
                    except TRANSIENT as exc:
                        (logger.debug if failing else logger.warning)("fleet autoscaling tick failed: %s",
                                                                      describe(exc))
                        failing = True
                    else:
                        failing = False
                        notice = None if outcome is None else scale_notice(
                            outcome.before, outcome.decision.pods, outcome.decision.reason.value)
                        if notice is not None:
                            kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
                            logger.info("%s: %s", notice.reason, notice.message)
                await stopped.wait(tick)
        finally:
            if stopped.reason is not None:
                fleet_scaler.forget(uid)

    @kopf.on.cleanup(registry=registry, id="fleet-autoscaler-session")
    async def close_fleet_session(**_: Any) -> None:
        await fleet_scaler.close()

    @kopf.on.delete(GROUP, VERSION, FLEETS, registry=registry, optional=True, id="orphan-members")
    async def fleet_deleted(*, namespace: str | None, name: str, logger: kopf.Logger, **_: Any) -> None:
        """Its children go with it (owner references); its members are told, each Stalled naming it."""
        assert namespace is not None
        ctl.forget_fleet(namespace, name)
        for pool_namespace, pool_name in await ctl.fleet_members(namespace, name):
            try:
                result = await ctl.reconcile(pool_namespace, pool_name, trigger="fleet-deleted")
            except TRANSIENT as exc:
                logger.warning("reconcile of member %s/%s failed: %s", pool_namespace, pool_name, describe(exc))
                continue
            if result is not None:
                report(result, logger)


def reconciling(status: Mapping[str, Any]) -> bool:
    """Whether a status says work is in progress (its Reconciling condition is True)."""
    return any(c.get("type") == "Reconciling" and c.get("status") == "True" for c in status.get("conditions") or [])


def fleet_autoscaled(*, spec: Mapping[str, Any], **_: Any) -> bool:
    """kopf's `when` filter of the fleet autoscaler."""
    autoscaling = (spec or {}).get("autoscaling")
    return isinstance(autoscaling, Mapping) and autoscaling.get("enabled") is True


def fleet_of(body: Mapping[str, Any] | None, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the RuntimeFleet a raw WarmPool names, if any."""
    ref = ((body or {}).get("spec") or {}).get("fleetRef")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        return None
    fleet_namespace = ref.get("namespace")
    return (fleet_namespace if isinstance(fleet_namespace, str) and fleet_namespace else namespace, ref["name"])


def report_fleet(result: FleetResult, logger: kopf.Logger) -> None:
    """Log a fleet's writes, post its Events and its members' (state transitions only)."""
    outcome = result.outcome
    for write in outcome.writes:
        detail = f" ({', '.join(write.fields[:5])})" if write.fields else ""
        logger.info("%s %s %s%s", write.verb, write.kind, write.name, detail)
    body = kopf.Body(cast(kopf.RawBody, result.body))
    for notice in outcome.notices:
        kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
        (logger.warning if notice.type == "Warning" else logger.info)("%s: %s", notice.reason, notice.message)
    for (namespace, name), member in outcome.members.items():
        for notice in member.notices:
            ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WarmPool",
                   "metadata": {"name": name, "namespace": namespace, "uid": member.uid}}
            pool = kopf.Body(cast(kopf.RawBody, ref))
            kopf.event(pool, type=notice.type, reason=notice.reason, message=notice.message)
            (logger.warning if notice.type == "Warning" else logger.info)(
                "WarmPool %s/%s %s: %s", namespace, name, notice.reason, notice.message)


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

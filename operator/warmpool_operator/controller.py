"""The reconcile use case between kopf and the pure core: fetch, parse, serialise per pool, measure.

Every trigger (create/update/resume, the resync timer, a child's event) goes through
`Controller.reconcile`, which re-reads the WarmPool under a per-pool lock so that concurrent
triggers never act on a stale status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warmpool_operator.defaults import parse_pool
from warmpool_operator.diff import drift, is_controlled_by
from warmpool_operator.fields import SpecError
from warmpool_operator.fleet.observations import TupleKey
from warmpool_operator.health import Problem, pod_is_ready
from warmpool_operator.kinds import (
    CLUSTER_PEERINGS,
    DEPLOYMENTS,
    PEERINGS,
    PODS,
    RUNTIMEFLEETS,
    SECRETS,
    WARMPOOLS,
    Conflict,
    Forbidden,
    Kind,
    NotFound,
)
from warmpool_operator.kube import TRANSIENT, KubeApi
from warmpool_operator.metrics import OperatorMetrics
from warmpool_operator.ownership import ReplicaOwner, manifest_replica_owner
from warmpool_operator.probing import Prober, probe_target
from warmpool_operator.reconcile import Outcome, Write, reconcile
from warmpool_operator.render import RenderOptions, deployment_name, selector_string
from warmpool_operator.runtimefleet.moves import (
    HOST_FIELD,
    LINGER_SECONDS,
    dedicated_took_over,
    fleet_key,
    host_of,
    moved_status,
    named_fleet,
)
from warmpool_operator.runtimefleet.reader import ReadyzReader
from warmpool_operator.runtimefleet.reconcile import (
    FleetOutcome,
    invalid_fleet_problem,
    missing_fleet_problem,
    naming_pools,
    reconcile_fleet,
    stall_members,
    stalled_fleet_status,
)
from warmpool_operator.runtimefleet.render import deployment_name as fleet_deployment
from warmpool_operator.runtimefleet.render import selector_string as fleet_selector
from warmpool_operator.runtimefleet.spec import parse_fleet
from warmpool_operator.runtimefleet.specs import ParsedSpecs
from warmpool_operator.runtimefleet.tokens import TokenSecrets
from warmpool_operator.settings import OperatorConfig
from warmpool_operator.spec import WarmPool
from warmpool_operator.status import invalid_spec_status, notices, scaling_off_status, scaling_status

log = logging.getLogger(__name__)


def is_glob(namespace: str) -> bool:
    """kopf accepts shell-style patterns (`team-*`) for namespaces; they name no single namespace."""
    return bool(set("*?[!") & set(namespace))


@dataclass(frozen=True, slots=True)
class Result:
    """One reconciliation: the WarmPool as read, and what came of it."""

    body: Mapping[str, Any]
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class FleetResult:
    """One reconciliation of a RuntimeFleet: the fleet as read, and what came of it (its members too)."""

    body: Mapping[str, Any]
    outcome: FleetOutcome


@dataclass
class PoolLocks:
    """One lock per WarmPool; forgotten when the pool is deleted."""

    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, namespace: str, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            yield

    def forget(self, namespace: str, name: str) -> None:
        lock = self._locks.get((namespace, name))
        if lock is not None and not lock.locked():
            del self._locks[(namespace, name)]


@dataclass
class WatchHealth:
    """When a watch stream last delivered an event that reached a handler (informative only)."""

    last_event: float | None = None

    def seen(self) -> None:
        self.last_event = time.monotonic()

    def age_seconds(self) -> float | None:
        return None if self.last_event is None else round(time.monotonic() - self.last_event, 3)


@dataclass(frozen=True)
class Controller:
    config: OperatorConfig
    api: KubeApi
    prober: Prober
    metrics: OperatorMetrics
    clock: Callable[[], datetime]
    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty means all of them."""
    locks: PoolLocks = field(default_factory=PoolLocks)
    watch: WatchHealth = field(default_factory=WatchHealth)
    fleet_locks: PoolLocks = field(default_factory=PoolLocks)
    """One lock per RuntimeFleet, taken after a member's pool lock (never the other way round)."""
    readyz: ReadyzReader = field(default_factory=ReadyzReader)
    fleet_warm: dict[tuple[str, str], dict[TupleKey, int]] = field(default_factory=dict)
    """The fleet autoscaler's last warm counts per fleet, rendered into its ConfigMap."""
    fleet_hosted: dict[tuple[str, str], frozenset[TupleKey]] = field(default_factory=dict)
    """The tuples each fleet's config holds, as its last reconciliation found them."""
    fleet_results: dict[tuple[str, str], tuple[float, FleetResult]] = field(default_factory=dict)
    """Each fleet's last reconciliation and when (time.monotonic()) it ran."""
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    """Fleets to reconcile once a pool that left them has lingered (held so they are not collected)."""
    fleet_queued: dict[tuple[str, str], asyncio.Future[FleetResult | None]] = field(default_factory=dict)
    """Per fleet, the reconciliation waiting for its lock, whose result later callers share."""
    retiring: set[tuple[str, str]] = field(default_factory=set)
    """Members warm on their fleet whose dedicated Deployment could not be scaled to zero yet (retried by
    their next reconciliation; dropped when the pool is deleted)."""
    fleet_specs: dict[tuple[str, str], ParsedSpecs] = field(default_factory=dict)
    """Per fleet, its members' parsed specs by uid and generation (bounded by its members)."""
    tokens: TokenSecrets = field(default_factory=TokenSecrets)
    """The token Secrets fleet members name, and their digests while a Secret watch runs."""

    @property
    def render_options(self) -> RenderOptions:
        return RenderOptions(default_image=self.config.runtime_image, image_pull_policy=self.config.image_pull_policy,
                             log_format=self.config.runtime_log_format)

    async def reconcile(
        self, namespace: str, name: str, *, trigger: str, seen: Mapping[str, Any] | None = None
    ) -> Result | None:
        """None when the WarmPool is gone or being deleted (its children go with it).

        `seen` is the pool as the watch last delivered it: a fleet member's resync answers from its
        fleet's last reconciliation with no API call when that is recent and saw this generation.
        """
        async with self.locks.hold(namespace, name):
            started = time.perf_counter()
            try:
                cached = None if trigger != "resync" or seen is None else self._cached_member(seen)
                result = cached or await self._reconcile(namespace, name, trigger)
            except Exception as exc:
                self.metrics.reconciles.labels(trigger=trigger, result="error").inc()
                self.metrics.errors.labels(namespace, name, type(exc).__name__).inc()
                raise
            finally:
                self.metrics.duration.labels(trigger=trigger).observe(time.perf_counter() - started)
            if result is None:
                self.metrics.forget_pool(namespace, name)
                return None
            outcome = result.outcome
            self.metrics.record_status(namespace, name, outcome.status)
            for write in outcome.writes:
                self.metrics.child_writes.labels(kind=write.kind, verb=write.verb).inc()
            if outcome.problem is not None:
                self.metrics.errors.labels(namespace, name, outcome.problem.reason).inc()
            kind = "ok" if outcome.problem is None else "stalled"
            self.metrics.reconciles.labels(trigger=trigger, result=kind).inc()
            return result

    def _cached_member(self, seen: Mapping[str, Any]) -> Result | None:
        """A member's status as its fleet's reconciliation of the last two resync periods wrote it.

        The fleet's own resync (and every event of its members, children and token Secrets) keeps
        that current; what it read is what a member's reconciliation would read again.
        """
        meta = seen.get("metadata") or {}
        fleet = named_fleet(seen)
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if fleet is None or meta.get("deletionTimestamp") or key in self.retiring:
            return None
        fleet_namespace, fleet_name = fleet.split("/")
        recent = self.fleet_results.get((fleet_namespace, fleet_name))
        if recent is None or time.monotonic() - recent[0] >= 2 * self.config.resync_seconds:
            return None
        found = recent[1].outcome.members.get(key)
        if found is None or found.status.get("observedGeneration") != meta.get("generation"):
            return None
        # Its notices were posted by the fleet's reconciliation that wrote this status.
        return Result(seen, Outcome(status=found.status, problem=found.problem, notices=(), writes=(),
                                    status_written=False))

    async def _reconcile(self, namespace: str, name: str, trigger: str) -> Result | None:
        body = await self.api.get(WARMPOOLS, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        try:
            pool = parse_pool(body, self.config.defaults)
        except SpecError as exc:
            return Result(body, await self._report_invalid(body, exc))
        if pool.spec.fleet_ref is not None:
            try:
                return Result(body, await self._reconcile_member(pool, body, trigger))
            except Forbidden as exc:
                message = f"the operator may not {exc.verb} {exc.resource}: {exc.message}"
                return Result(body, await self._report_stalled(body, Problem("Forbidden", message)))
        try:
            outcome = await reconcile(
                pool, store=self.api, prober=self.prober, options=self.render_options, now=self.clock()
            )
        except Forbidden as exc:
            # RBAC refused part of the work: say which verb on which resource, on the pool itself.
            message = f"the operator may not {exc.verb} {exc.resource} in namespace {namespace}: {exc.message}"
            return Result(body, await self._report_stalled(body, Problem("Forbidden", message)))
        await self._release_old_fleet(body, outcome)
        return Result(body, outcome)

    async def _release_old_fleet(self, body: Mapping[str, Any], outcome: Outcome) -> None:
        """Back on its own Deployment: once that is Ready, the fleet the pool left drops its tuple."""
        previous = host_of(body.get("status"))
        conditions = outcome.status.get("conditions") or ()
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if previous is None or not dedicated_took_over(previous, ready):
            return
        meta = body["metadata"]
        await self.api.patch_status(WARMPOOLS, str(meta["namespace"]), str(meta["name"]),
                                    {HOST_FIELD: None, **moved_status(previous, self.clock())})
        self._release_later(previous)

    def _release_later(self, fleet: str) -> None:
        """Reconcile a fleet a pool left once its linger is over, so it drops the tuple then (not at its resync)."""
        namespace, name = fleet.split("/")

        async def release() -> None:
            await asyncio.sleep(LINGER_SECONDS + 1)
            try:
                await self.reconcile_fleet(namespace, name, trigger="move")
            except Exception:  # its resync does it then
                log.exception("RuntimeFleet %s/%s not reconciled after a move", namespace, name)

        task = asyncio.get_running_loop().create_task(release())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reconcile_member(self, pool: WarmPool, body: Mapping[str, Any], trigger: str) -> Outcome:
        """A pool hosted by a RuntimeFleet: the fleet's reconciliation writes its status.

        A member's resync reuses the fleet's reconciliation of the last resync periods (every member's
        resync would otherwise reconcile the whole fleet again: members squared per period).
        """
        assert pool.spec.fleet_ref is not None
        namespace, name = pool.spec.fleet_ref.resolve(pool.meta.namespace)
        key = (pool.meta.namespace, pool.meta.name)
        fleet = await self.api.get(RUNTIMEFLEETS, namespace, name)
        found = None
        if fleet is not None and not (fleet.get("metadata") or {}).get("deletionTimestamp"):
            recent = self.fleet_results.get((namespace, name))
            fresh = recent is not None and time.monotonic() - recent[0] < 2 * self.config.resync_seconds
            cached = recent[1].outcome.members.get(key) if fresh and recent is not None else None
            if trigger == "resync" and cached is not None \
                    and cached.status.get("observedGeneration") == pool.meta.generation:
                found = cached
            else:
                result = await self.reconcile_fleet(namespace, name, trigger="member")
                found = None if result is None else result.outcome.members.get(key)
        if found is None:
            members = await stall_members(self.api, [body], missing_fleet_problem(namespace, name), self.clock())
            found = members[key]
        writes: tuple[Write, ...] = ()
        if host_of(found.status) == fleet_key(namespace, name) and (trigger != "resync" or key in self.retiring):
            # Warm here: a dedicated Deployment left from before the pool joined is scaled to zero. Looked
            # for when the pool changes, joins (see `_after_fleet`) or the operator starts, not every resync.
            writes = await self._retire_dedicated(pool.meta.namespace, pool.meta.name, pool.meta.uid)
        return Outcome(status=found.status, problem=found.problem, notices=found.notices, writes=writes,
                       status_written=False)

    async def _retire_dedicated(self, namespace: str, name: str, uid: str) -> tuple[Write, ...]:
        """A pool that joined a fleet stops its own pods: its dedicated Deployment is scaled to zero.

        The operator deletes nothing (its RBAC has no delete verb); the Deployment, Service and
        ConfigMap stay, idle, and serve again if the pool leaves the fleet.
        """
        self.retiring.add((namespace, name))
        deployment = await self.api.get(DEPLOYMENTS, namespace, deployment_name(name))
        writes: tuple[Write, ...] = ()
        if deployment is not None and is_controlled_by(deployment, uid) \
                and (deployment.get("spec") or {}).get("replicas") != 0:
            await self.api.scale_deployment(namespace, deployment_name(name), 0)
            writes = (Write("patch", "Deployment", deployment_name(name), (".spec.replicas",)),)
        self.retiring.discard((namespace, name))
        return writes

    async def _after_fleet(self, fleet: tuple[str, str], outcome: FleetOutcome) -> None:
        """Members this reconciliation recorded warm here: their old host lets go (a dedicated Deployment
        scaled to zero now, a fleet's config rewritten once the pool has lingered there)."""
        here = fleet_key(*fleet)
        for (namespace, name), member in outcome.members.items():
            if member.arrived_from is None:
                continue
            if member.arrived_from and member.arrived_from != here:
                self._release_later(member.arrived_from)
            try:
                await self._retire_dedicated(namespace, name, member.uid)
            except TRANSIENT as exc:  # kept in `retiring`: the member's next reconciliation tries again
                log.warning("WarmPool %s/%s: its own Deployment not scaled to zero yet: %s", namespace, name, exc)

    async def reconcile_fleet(self, namespace: str, name: str, *, trigger: str) -> FleetResult | None:
        """None when the RuntimeFleet is gone or being deleted (its children go with it).

        Callers that arrive while a reconciliation of the fleet is queued (waiting for its lock, so it
        has read nothing yet) share that one's result: it reads everything they could have changed.
        Without this, N members created or warming together reconcile the whole fleet N times over.
        """
        key = (namespace, name)
        while (queued := self.fleet_queued.get(key)) is not None:
            try:
                return await asyncio.shield(queued)
            except asyncio.CancelledError:
                if not queued.cancelled():
                    raise  # this caller was cancelled, not the queued reconciliation
        future: asyncio.Future[FleetResult | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self.fleet_queued[key] = future
        try:
            result = await self._reconcile_fleet_locked(namespace, name, trigger, future)
        except BaseException as exc:
            if self.fleet_queued.get(key) is future:
                del self.fleet_queued[key]
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            raise
        future.set_result(result)
        return result

    async def _reconcile_fleet_locked(
        self, namespace: str, name: str, trigger: str, queued: asyncio.Future[FleetResult | None]
    ) -> FleetResult | None:
        async with self.fleet_locks.hold(namespace, name):
            if self.fleet_queued.get((namespace, name)) is queued:
                del self.fleet_queued[(namespace, name)]  # running now: later callers queue a new one
            started = time.perf_counter()
            try:
                result = await self._reconcile_fleet(namespace, name)
            finally:
                self.metrics.duration.labels(trigger=f"fleet-{trigger}").observe(time.perf_counter() - started)
            if result is not None:
                for write in result.outcome.writes:
                    self.metrics.child_writes.labels(kind=write.kind, verb=write.verb).inc()
                await self._after_fleet((namespace, name), result.outcome)
            return result

    async def _reconcile_fleet(self, namespace: str, name: str) -> FleetResult | None:
        body = await self.api.get(RUNTIMEFLEETS, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self.forget_fleet(namespace, name)  # also when its delete handler did not run
            return None
        now = self.clock()
        try:
            fleet = parse_fleet(body)
        except SpecError as exc:
            problem = Problem("InvalidSpec", str(exc), permanent=True)
            status = await self._stall_fleet(body, problem, now)
            pools = await naming_pools(self.api, namespace, name, self._plain_namespaces())
            members = await stall_members(self.api, pools, invalid_fleet_problem(f"{namespace}/{name}", exc), now)
            invalid = FleetResult(body, FleetOutcome(status, problem, tuple(notices(body.get("status") or {}, status)),
                                                     (), members))
            self.tokens.forget_fleet((namespace, name))
            self.fleet_results[(namespace, name)] = (time.monotonic(), invalid)
            return invalid
        decided = self.fleet_warm.get((namespace, name)) if fleet.spec.autoscaling.enabled else None
        warm = None if decided is None else {(key.tenant, key.module): count for key, count in decided.items()}
        try:
            outcome = await reconcile_fleet(fleet, store=self.api, reader=self.readyz, options=self.render_options,
                                            now=now, watched=self._plain_namespaces(), warm=warm,
                                            defaults=self.config.defaults, tokens=self.tokens,
                                            specs=self.fleet_specs.setdefault((namespace, name), ParsedSpecs()))
        except Forbidden as exc:
            problem = Problem("Forbidden", f"the operator may not {exc.verb} {exc.resource}: {exc.message}")
            status = await self._stall_fleet(body, problem, now)
            return FleetResult(body, FleetOutcome(status, problem, tuple(notices(body.get("status") or {}, status)),
                                                  (), {}))
        self.fleet_hosted[(namespace, name)] = frozenset(TupleKey(*key) for key in outcome.hosted)
        result = FleetResult(body, outcome)
        self.fleet_results[(namespace, name)] = (time.monotonic(), result)
        return result

    async def _stall_fleet(self, body: Mapping[str, Any], problem: Problem, now: datetime) -> dict[str, Any]:
        status = stalled_fleet_status(body, problem, now)
        if drift(status, body.get("status") or {}):
            meta = body["metadata"]
            await self.api.patch_status(RUNTIMEFLEETS, str(meta["namespace"]), str(meta["name"]), status)
        return status

    async def fleets_allowed(self) -> bool:
        """Whether the operator may list RuntimeFleets where it watches; logged when it may not."""
        for scope in self._plain_namespaces() or ((None,) if not self.namespaces else ()):
            try:
                await self.api.list(RUNTIMEFLEETS, scope, limit=1)
            except Forbidden as exc:
                log.warning("RuntimeFleets are not reconciled: the operator may not %s %s (%s); "
                            "WarmPools with spec.fleetRef stay Stalled", exc.verb, exc.resource, exc.message)
                return False
            except NotFound:
                return True  # the CRD is not installed (yet): kopf waits for it
        return True

    async def secrets_watchable(self) -> bool:
        """Whether the operator may list (and so watch) Secrets where it watches; without it a token
        rotation reaches the fleet's pods at the fleet's next resync. Namespace patterns are not checked:
        Secrets are not watched then (kopf stops the whole operator when a watch is forbidden)."""
        if any(is_glob(ns) for ns in self.namespaces):
            return False
        for scope in self._plain_namespaces() or (None,):
            try:
                await self.api.list(SECRETS, scope, limit=1)
            except Forbidden as exc:
                log.info("Secrets are not watched (the operator may not %s %s): a member's token rotation "
                         "reaches its fleet at the fleet's next resync", exc.verb, exc.resource)
                return False
        return True

    async def fleet_members(self, namespace: str, name: str) -> list[tuple[str, str]]:
        """(namespace, name) of the WarmPools naming this fleet."""
        pools = await naming_pools(self.api, namespace, name, self._plain_namespaces())
        return [(str(p["metadata"]["namespace"]), str(p["metadata"]["name"])) for p in pools]

    # The fleet autoscaler's seam (`runtimefleet.autoscaler.FleetScalingSeam`).

    async def fleet_targets(self, namespace: str, name: str) -> list[tuple[str, str, int]]:
        """(pod name, pod IP, http port) of the fleet's Ready pods."""
        pods = await self.api.list(PODS, namespace, label_selector=fleet_selector(name))
        out = []
        for pod in pods:
            target = probe_target(pod)
            if target is not None and pod_is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                out.append((str(pod["metadata"]["name"]), *target))
        return out

    def fleet_tuples(self, namespace: str, name: str) -> frozenset[TupleKey]:
        return self.fleet_hosted.get((namespace, name), frozenset())

    async def fleet_replicas(self, namespace: str, name: str) -> int | None:
        deployment = await self.api.get(DEPLOYMENTS, namespace, fleet_deployment(name))
        if deployment is None:
            return None
        replicas = (deployment.get("spec") or {}).get("replicas")
        return replicas if isinstance(replicas, int) else 1

    async def apply_fleet_decision(
        self, namespace: str, name: str, *, pods: int, warm: Mapping[TupleKey, int], miss_ratio: float | None
    ) -> bool:
        """Replicas into the Deployment, warm counts into the ConfigMap (each written only when changed)."""
        scaled = False
        async with self.fleet_locks.hold(namespace, name):
            deployment = await self.api.get(DEPLOYMENTS, namespace, fleet_deployment(name))
            if deployment is None:
                return False
            if (deployment.get("spec") or {}).get("replicas") != pods:
                await self.api.scale_deployment(namespace, fleet_deployment(name), pods)
                scaled = True
            self.fleet_warm[(namespace, name)] = dict(warm)
            fleet = await self.api.get(RUNTIMEFLEETS, namespace, name)
            if fleet is not None and miss_ratio is not None:
                status = {"missRatio": round(miss_ratio, 6)}
                if drift(status, fleet.get("status") or {}):
                    await self.api.patch_status(RUNTIMEFLEETS, namespace, name, status)
        await self.reconcile_fleet(namespace, name, trigger="autoscale")
        return scaled

    def forget_fleet(self, namespace: str, name: str) -> None:
        self.fleet_locks.forget(namespace, name)
        self.fleet_warm.pop((namespace, name), None)
        self.fleet_hosted.pop((namespace, name), None)
        self.fleet_results.pop((namespace, name), None)
        self.fleet_specs.pop((namespace, name), None)
        self.tokens.forget_fleet((namespace, name))

    def forget_pool(self, namespace: str, name: str) -> None:
        """A deleted WarmPool: nothing of it is kept."""
        self.locks.forget(namespace, name)
        self.retiring.discard((namespace, name))
        self.metrics.forget_pool(namespace, name)

    def _plain_namespaces(self) -> tuple[str, ...]:
        return tuple(ns for ns in self.namespaces if not is_glob(ns))

    async def _report_invalid(self, body: Mapping[str, Any], error: SpecError) -> Outcome:
        return await self._report_stalled(body, Problem("InvalidSpec", str(error), permanent=True))

    async def _report_stalled(self, body: Mapping[str, Any], problem: Problem) -> Outcome:
        meta = body.get("metadata") or {}
        previous = body.get("status") if isinstance(body.get("status"), Mapping) else {}
        assert isinstance(previous, Mapping)
        raw_generation = meta.get("generation")
        generation = raw_generation if isinstance(raw_generation, int) else 0
        status = invalid_spec_status(
            generation=generation, reason=problem.reason, message=problem.message, previous=previous, now=self.clock()
        )
        written = bool(drift(status, previous))
        if written:
            await self.api.patch_status(WARMPOOLS, str(meta["namespace"]), str(meta["name"]), status)
        return Outcome(
            status=status,
            problem=problem,
            notices=tuple(notices(previous, status)),
            writes=(),
            status_written=written,
        )

    async def ensure_peering(self) -> list[str]:
        """Create the peering object(s) kopf records replicas in, where missing.

        With mandatory peering kopf keeps every replica paused until it has seen that object,
        so it must exist; namespace globs cannot be resolved here and are left to the installer.
        Returns where an object was created.
        """
        name = self.config.peering_name
        if not self.namespaces:
            targets: list[tuple[Kind, str | None, str]] = [(CLUSTER_PEERINGS, None, "ClusterKopfPeering")]
        else:
            targets = [(PEERINGS, ns, "KopfPeering") for ns in self.namespaces if not is_glob(ns)]
        created = []
        for kind, namespace, kind_name in targets:
            body = {"apiVersion": kind.api_version, "kind": kind_name, "metadata": {"name": name}}
            try:
                await self.api.create(kind, namespace, body)
            except Conflict:
                continue
            except NotFound:
                log.warning("the %s resource is not installed: replicas cannot coordinate", kind.plural)
                continue
            except Forbidden:
                log.warning("not allowed to create %s %s/%s: it must be installed with the operator",
                            kind_name, namespace or "cluster", name)
                continue
            created.append(f"{namespace or 'cluster'}/{name}")
        return created

    # The autoscaler's seam: what to scrape, and how its decision is applied.

    async def ready_pod_targets(self, namespace: str, name: str) -> list[tuple[str, str, int]]:
        """(pod name, pod IP, http port) of the pool's Ready pods, to scrape directly by IP."""
        pods = await self.api.list(PODS, namespace, label_selector=selector_string(name))
        targets = []
        for pod in pods:
            target = probe_target(pod)
            if target is not None and pod_is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                targets.append((str(pod["metadata"]["name"]), *target))
        return targets

    async def deployment_replicas(self, namespace: str, name: str) -> int | None:
        """The replica count the pool's Deployment asks for now; None before it exists."""
        deployment = await self.api.get(DEPLOYMENTS, namespace, deployment_name(name))
        if deployment is None:
            return None
        replicas = (deployment.get("spec") or {}).get("replicas")
        return replicas if isinstance(replicas, int) else 1  # the API server's default

    async def apply_scaling(
        self,
        namespace: str,
        name: str,
        *,
        desired_replicas: int,
        miss_ratio: float | None,
        reason: str | None = None,
    ) -> bool:
        """Set the Deployment's replicas and the status fields the autoscaler owns.

        Serialised with reconciliation of the same pool; writes only what changed, and nothing
        once `spec.autoscaling.enabled` is off (a decision made just before must not undo the
        hand-back to `spec.replicas`). Returns whether the replica count changed (then
        `status.lastScaleTime` moves too).
        """
        async with self.locks.hold(namespace, name):
            pool = await self.api.get(WARMPOOLS, namespace, name)
            deployment = await self.api.get(DEPLOYMENTS, namespace, deployment_name(name))
            if pool is None or deployment is None or _owner(pool) is not ReplicaOwner.AUTOSCALER:
                return False
            scaled = (deployment.get("spec") or {}).get("replicas") != desired_replicas
            if scaled:
                await self.api.scale_deployment(namespace, deployment_name(name), desired_replicas)
            status = scaling_status(
                desired_replicas=desired_replicas,
                miss_ratio=miss_ratio,
                last_scale_time=self.clock() if scaled else None,
                reason=reason,
            )
            if drift(status, pool.get("status") or {}):
                await self.api.patch_status(WARMPOOLS, namespace, name, status)
            return scaled

    async def release_scaling(self, namespace: str, name: str) -> bool:
        """Autoscaling was turned off: say so in status and drop the miss ratio nobody measures now.

        Returns whether the status was written (not when the pool is gone or autoscaled again).
        """
        async with self.locks.hold(namespace, name):
            pool = await self.api.get(WARMPOOLS, namespace, name)
            if pool is None or _owner(pool) is ReplicaOwner.AUTOSCALER:
                return False
            status = scaling_off_status()
            if not drift(status, pool.get("status") or {}):
                return False
            await self.api.patch_status(WARMPOOLS, namespace, name, status)
            return True


def _owner(pool: Mapping[str, Any]) -> ReplicaOwner:
    return manifest_replica_owner(pool.get("spec"))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared reconciliation's failure as seen: its own caller raises it, waiters may be none."""
    if not future.cancelled():
        future.exception()

"""Who owns a WarmPool's `Deployment.spec.replicas`: the one rule its writers and readers follow (pure)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from warmpool_operator.spec import WarmPoolSpec


class ReplicaOwner(enum.Enum):
    """Who sets the runtime pods' Deployment replicas."""

    SPEC = "spec"
    """Autoscaling off: the WarmPool's `spec.replicas` (which `/scale`, an HPA or KEDA may drive);
    reconciliation writes it and status reports it as `desiredReplicas`."""
    AUTOSCALER = "autoscaler"
    """Autoscaling on: only the autoscaler writes it (and `desiredReplicas`); the spec never does,
    so GitOps tools see no drift, except for the first size of a Deployment not yet created."""


def replica_owner(spec: WarmPoolSpec) -> ReplicaOwner:
    """The owner under a parsed spec."""
    return ReplicaOwner.AUTOSCALER if spec.autoscaling.enabled else ReplicaOwner.SPEC


def manifest_replica_owner(manifest_spec: Mapping[str, Any] | None) -> ReplicaOwner:
    """The owner under a raw `spec` as read from the API, before (or without) parsing it.

    kopf's filter for the autoscaler's loop and the autoscaler's write under the pool's lock both
    need the answer for specs that may not parse; only `autoscaling.enabled: true` hands over.
    """
    autoscaling = (manifest_spec or {}).get("autoscaling")
    enabled = isinstance(autoscaling, Mapping) and autoscaling.get("enabled") is True
    return ReplicaOwner.AUTOSCALER if enabled else ReplicaOwner.SPEC


def deployment_replicas(spec: WarmPoolSpec, existing: Mapping[str, Any] | None) -> int | None:
    """The replicas reconciliation renders into the Deployment; None leaves the field to the autoscaler."""
    if replica_owner(spec) is ReplicaOwner.SPEC:
        return spec.replicas
    if existing is not None:
        return None
    return max(1, spec.autoscaling.min_replicas)


def carried_replicas(spec: WarmPoolSpec, existing: Mapping[str, Any] | None) -> int | None:
    """The replicas sent along in the Deployment's apply without being part of its intent.

    None when the spec owns them (they are rendered). Under the autoscaler: the first size for a
    Deployment not yet created, else the Deployment's current value, unchanged. Server-side apply
    deletes a field the applier set before and leaves out now unless another manager holds it too,
    and the API server would then default the Deployment to one replica; the autoscaler's own
    write takes ownership only when it changes the value. So reconciliation keeps sending the
    value it finds, never decides it, and never writes because of it (it is left out of the applied
    hash and of the drift check). The autoscaler writes under the same per-pool lock.
    """
    if replica_owner(spec) is ReplicaOwner.SPEC:
        return None
    if existing is None:
        return deployment_replicas(spec, existing)
    replicas = (existing.get("spec") or {}).get("replicas")
    return replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else None

"""Pure diagnosis of a pool's rollout from its Deployment, its pods and the pods' `/readyz` bodies."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warmpool_contract import redact_url
from warmpool_operator.readyz import ERROR_REASONS, ReadyzReport
from warmpool_operator.render import ANNOTATION_CONFIG_HASH

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SIGNALS = {137: "SIGKILL", 143: "SIGTERM", 139: "SIGSEGV", 134: "SIGABRT"}


def redact_text(text: str) -> str:
    """Free text (a runtime's error message) with every URL in it redacted by `redact_url`."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        trail = len(url) - len(url.rstrip(".,;:)]"))
        kept = url[: len(url) - trail]
        return redact_url(kept) + url[len(kept) :]

    return _URL.sub(one, text)


def exit_summary(terminated: Mapping[str, Any]) -> str:
    """How a container's last run ended, without guessing a crash where there was none."""
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or ""
    if reason == "OOMKilled":
        return f"killed for exceeding its memory limit (OOMKilled, exit code {code})"
    if code == 0:
        # A server does not exit by itself with 0: the kubelet stopped it (SIGTERM, drained), and the
        # kubelet stops a running container only when its liveness probe fails.
        return (f"exited cleanly (exit code 0{', ' + reason if reason else ''}) after being stopped from outside: "
                "most likely killed by the kubelet for failing its liveness probe (`kubectl describe pod` "
                "shows the Unhealthy and Killing events)")
    if isinstance(code, int) and code in _SIGNALS:
        return (f"killed by {_SIGNALS[code]} (exit code {code}{', ' + reason if reason else ''}): "
                "an out-of-memory kill or a liveness probe failure")
    return f"last exit code {code}{' (' + reason + ')' if reason and reason != 'Error' else ''}"


_IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_CONTAINER_CONFIG = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a pool cannot become Ready without someone changing something."""

    reason: str
    message: str
    permanent: bool = False
    """True when only a change to the WarmPool can fix it (retrying the same spec cannot help)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Rollout counters of the pool's Deployment."""

    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    observed: bool

    @property
    def rolled_out(self) -> bool:
        """Every wanted pod runs the current template and is Ready, and no old pod is left."""
        return (
            self.observed
            and self.updated >= self.desired
            and self.ready >= self.desired
            and self.available >= self.desired
            and self.replicas == self.updated
        )


def progress_of(deployment: Mapping[str, Any] | None) -> Progress:
    if deployment is None:
        return Progress(desired=0, replicas=0, updated=0, ready=0, available=0, observed=False)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed_generation = status.get("observedGeneration")
    observed = observed_generation is not None and (generation is None or observed_generation >= generation)
    return Progress(
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        observed=observed,
    )


def current_pods(pods: Sequence[Mapping[str, Any]], config_digest: str) -> list[Mapping[str, Any]]:
    """Pods of the current template (same config hash) that are not being deleted."""
    return [
        pod
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
        and ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_CONFIG_HASH) == config_digest
    ]


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def diagnose(
    *,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    reports: Mapping[str, ReadyzReport],
) -> Problem | None:
    """The most specific blocking problem, if any; `reports` are keyed by pod name.

    Module errors the runtime reports are the most precise, then container-level failures,
    then scheduling, then a rollout past its deadline (which only says "something is wrong").
    """
    for pod_name, report in sorted(reports.items()):
        for state, error in report.errors():
            reason = ERROR_REASONS.get(error.code, "ModuleFailed")
            return Problem(
                reason,
                f"pod {pod_name} reports {error.code} for tenant {state.tenant} "
                f"module {state.sha256[:12]}: {redact_text(error.message)}",
            )
    for problem in (_container_problem(pods), _scheduling_problem(pods), _deadline_problem(deployment)):
        if problem is not None:
            return problem
    return None


def _container_problem(pods: Sequence[Mapping[str, Any]]) -> Problem | None:
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            detail = waiting.get("message") or ""
            if reason == "CrashLoopBackOff":
                last = ((container.get("lastState") or {}).get("terminated")) or {}
                exit_detail = exit_summary(last) if last else "restarting"
                if last.get("message"):
                    exit_detail += f": {redact_text(str(last['message']).strip())}"
                return Problem(
                    "CrashLoopBackOff",
                    f"pod {name} container {container.get('name')} is crash-looping "
                    f"({container.get('restartCount', 0)} restarts, {exit_detail})",
                )
            if reason in _IMAGE_PULL:
                return Problem("ImagePullFailed", f"pod {name}: {reason}: {redact_text(detail)}".rstrip(": "))
            if reason in _CONTAINER_CONFIG:
                return Problem("ContainerConfigError", f"pod {name}: {reason}: {redact_text(detail)}".rstrip(": "))
    return None


def _scheduling_problem(pods: Sequence[Mapping[str, Any]]) -> Problem | None:
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                name = (pod.get("metadata") or {}).get("name", "?")
                return Problem("Unschedulable", f"pod {name} cannot be scheduled: {condition.get('message', '')}")
    return None


def _deadline_problem(deployment: Mapping[str, Any] | None) -> Problem | None:
    if deployment is None:
        return None
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Problem("RolloutStuck", condition.get("message") or "the rollout exceeded its progress deadline")
    return None

"""Pod status the node agent reports: phase, conditions, container states, back-off."""

from __future__ import annotations

import pytest

from warmpool.dev.agent.podstatus import (
    ContainerView,
    Terminated,
    pod_phase,
    pod_status,
    restart_delay,
    should_restart,
    status_changed,
)

pytestmark = pytest.mark.unit

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def running(ready: bool) -> ContainerView:
    return ContainerView(name="c", image="i", state="running", started_at=T0, ready=ready, pid=42)


def conditions(status: dict[str, object]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}  # type: ignore[attr-defined]


def test_a_ready_running_pod_reports_every_condition_true_and_its_ip() -> None:
    status = pod_status(policy="Always", views=[running(True)], pod_ip="127.0.0.2", host_ip="127.0.0.1",
                        start_time=T0, previous={}, now=T0)
    assert status["phase"] == "Running"
    assert conditions(status) == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                                  "ContainersReady": "True", "PodScheduled": "True"}
    assert status["podIP"] == "127.0.0.2"
    assert status["podIPs"] == [{"ip": "127.0.0.2"}]
    (container,) = status["containerStatuses"]
    assert container["state"] == {"running": {"startedAt": T0}}
    assert container["containerID"] == "warmpool-local://42"


def test_transition_times_move_only_when_a_condition_flips() -> None:
    first = pod_status(policy="Always", views=[running(False)], pod_ip="127.0.0.2", host_ip="h",
                       start_time=T0, previous={}, now=T0)
    same = pod_status(policy="Always", views=[running(False)], pod_ip="127.0.0.2", host_ip="h",
                      start_time=T0, previous=first, now=T1)
    flipped = pod_status(policy="Always", views=[running(True)], pod_ip="127.0.0.2", host_ip="h",
                         start_time=T0, previous=first, now=T1)
    times = {c["type"]: c["lastTransitionTime"] for c in same["conditions"]}
    assert times["Ready"] == T0
    flipped_times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert (flipped_times["Ready"], flipped_times["PodScheduled"]) == (T1, T0)
    assert not status_changed(first, first)
    assert status_changed(first, flipped)


def test_a_crash_looping_container_keeps_the_pod_running_with_its_last_exit_code() -> None:
    crashed = Terminated(exit_code=3, started_at=T0, finished_at=T1)
    view = ContainerView(name="c", image="i", state="waiting", reason="CrashLoopBackOff", terminated=crashed,
                         last_terminated=crashed, restart_count=2)
    status = pod_status(policy="Always", views=[view], pod_ip="127.0.0.2", host_ip="h", start_time=T0,
                        previous={}, now=T1)
    (container,) = status["containerStatuses"]
    assert status["phase"] == "Running"
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert container["restartCount"] == 2
    assert conditions(status)["Ready"] == "False"


@pytest.mark.parametrize(
    ("policy", "exit_code", "phase"),
    [("Never", 0, "Succeeded"), ("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded"), ("Always", 0, "Running")],
)
def test_terminal_phases_follow_the_restart_policy(policy: str, exit_code: int, phase: str) -> None:
    done = Terminated(exit_code=exit_code, started_at=T0, finished_at=T1)
    view = ContainerView(name="c", image="i", state="terminated", terminated=done, restart_count=0)
    assert pod_phase(policy, [view]) == phase


def test_a_refused_pod_is_pending_with_the_reason_or_failed_when_it_never_restarts() -> None:
    view = ContainerView(name="c", image="i", state="waiting", reason="CreateContainerError", message="no")
    for policy, phase in (("Always", "Pending"), ("Never", "Failed")):
        status = pod_status(policy=policy, views=[view], pod_ip=None, host_ip="h", start_time=T0, previous={},
                            now=T0, refusal=("CreateContainerError", "no"))
        assert status["phase"] == phase
        assert status["reason"] == "CreateContainerError"
        assert status["containerStatuses"][0]["state"]["waiting"] == {"reason": "CreateContainerError",
                                                                       "message": "no"}
        assert "podIP" not in status


def test_backoff_starts_immediately_then_doubles_to_the_cap() -> None:
    delays = [restart_delay(n, initial_s=10, cap_s=300) for n in range(8)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [("Always", 0, True), ("OnFailure", 0, False), ("OnFailure", 2, True), ("Never", 2, False)],
)
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart

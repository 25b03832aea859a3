"""Diagnosis of pods, Deployment status and runtime /readyz bodies (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from warmpool_operator.health import current_pods, diagnose, pod_is_ready, progress_of
from warmpool_operator.probing import probe_target
from warmpool_operator.readyz import ReadyzReport, parse_readyz
from warmpool_operator.render import ANNOTATION_CONFIG_HASH

pytestmark = pytest.mark.unit

SHA = "c" * 64


def readyz(code: str | None) -> ReadyzReport:
    error = None if code is None else {"code": code, "message": f"{code} details"}
    return parse_readyz(
        {"ready": code is None,
         "tuples": [{"tenant": "acme", "sha256": SHA, "warm": 0, "target": 4, "ready": code is None, "error": error}]}
    )


def pod(name: str = "p-0", *, waiting: str | None = None, unschedulable: bool = False,
        ready: bool = False, digest: str = "h1", **status: Any) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/1 nodes available"})
    container: dict[str, Any] = {"name": "runtime", "restartCount": 3, "state": {"running": {}}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": "details"}}
        container["lastState"] = {"terminated": {"exitCode": 1, "message": "bad config\n"}}
    return {
        "metadata": {"name": name, "annotations": {ANNOTATION_CONFIG_HASH: digest}},
        "status": {"conditions": conditions, "containerStatuses": [container], **status},
    }


def test_readyz_body_is_parsed_and_malformed_bodies_refused() -> None:
    report = readyz("module_hash_mismatch")
    assert report.ready is False
    ((state, error),) = report.errors()
    assert (state.tenant, state.target, error.code) == ("acme", 4, "module_hash_mismatch")
    bad: Any
    for bad in (None, [], {"ready": "yes"}, {"ready": True, "tuples": {}}, {"ready": False, "tuples": [1]},
                {"ready": False, "tuples": [{"error": {"message": "no code"}}]}):
        with pytest.raises(ValueError):
            parse_readyz(bad)


@pytest.mark.parametrize(
    ("code", "reason"),
    [("module_hash_mismatch", "ModuleHashMismatch"), ("module_unreachable", "ModuleUnreachable"),
     ("module_invalid", "ModuleInvalid"), ("module_too_large", "ModuleTooLarge"),
     ("missing_import", "MissingImport"), ("instantiate_failed", "InstantiateFailed"),
     ("something_new", "ModuleFailed")],
)
def test_runtime_error_codes_become_reasons(code: str, reason: str) -> None:
    problem = diagnose(deployment=None, pods=[pod()], reports={"p-0": readyz(code)})
    assert problem is not None
    assert problem.reason == reason
    assert "p-0" in problem.message
    assert SHA[:12] in problem.message


def test_module_errors_win_over_container_and_scheduling_problems() -> None:
    pods = [pod("a", waiting="CrashLoopBackOff"), pod("b", unschedulable=True)]
    problem = diagnose(deployment=None, pods=pods, reports={"c": readyz("module_unreachable")})
    assert problem is not None
    assert problem.reason == "ModuleUnreachable"
    problem = diagnose(deployment=None, pods=pods, reports={})
    assert problem is not None
    assert problem.reason == "CrashLoopBackOff"
    assert "3 restarts" in problem.message
    assert "last exit code 1: bad config" in problem.message


@pytest.mark.parametrize(
    ("waiting", "reason"),
    [("ImagePullBackOff", "ImagePullFailed"), ("ErrImagePull", "ImagePullFailed"),
     ("CreateContainerConfigError", "ContainerConfigError")],
)
def test_container_waiting_reasons(waiting: str, reason: str) -> None:
    problem = diagnose(deployment=None, pods=[pod(waiting=waiting)], reports={})
    assert problem is not None
    assert problem.reason == reason


def test_unschedulable_and_deadline_and_healthy() -> None:
    problem = diagnose(deployment=None, pods=[pod(unschedulable=True)], reports={})
    assert problem is not None
    assert (problem.reason, problem.message) == ("Unschedulable", "pod p-0 cannot be scheduled: 0/1 nodes available")
    stuck = {"status": {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "m"}]}}
    problem = diagnose(deployment=stuck, pods=[], reports={})
    assert problem is not None
    assert problem.reason == "RolloutStuck"
    assert diagnose(deployment={"status": {}}, pods=[pod(ready=True)], reports={"p": readyz(None)}) is None


def test_only_pods_of_the_current_template_count() -> None:
    pods = [pod("new", digest="h2"), pod("old", digest="h1"),
            {**pod("leaving", digest="h2"), "metadata": {"name": "leaving", "deletionTimestamp": "t",
                                                         "annotations": {ANNOTATION_CONFIG_HASH: "h2"}}}]
    assert [p["metadata"]["name"] for p in current_pods(pods, "h2")] == ["new"]


def test_progress_reads_the_deployment() -> None:
    deployment = {"metadata": {"generation": 3}, "spec": {"replicas": 2},
                  "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                             "availableReplicas": 2}}
    assert progress_of(deployment).rolled_out
    deployment["status"]["observedGeneration"] = 2
    assert not progress_of(deployment).rolled_out
    assert not progress_of(None).rolled_out
    assert progress_of({"spec": {}, "status": {}}).desired == 1


def test_probe_targets_come_from_the_pod_itself() -> None:
    assert probe_target(pod()) is None
    with_ip = {**pod(), "spec": {"containers": [{"name": "runtime", "ports": [{"name": "http", "containerPort": 9}]}]}}
    with_ip["status"]["podIP"] = "127.0.0.9"
    assert probe_target(with_ip) == ("127.0.0.9", 9)
    without_port = {**pod(), "status": {"podIP": "127.0.0.9"}}
    assert probe_target(without_port) == ("127.0.0.9", 8080)
    assert pod_is_ready(pod(ready=True))
    assert not pod_is_ready(pod())


def crash_looping(terminated: dict[str, Any]) -> str:
    found = pod("a", waiting="CrashLoopBackOff")
    found["status"]["containerStatuses"][0]["lastState"] = {"terminated": terminated}
    problem = diagnose(deployment=None, pods=[found], reports={})
    assert problem is not None
    assert problem.reason == "CrashLoopBackOff"
    return problem.message


def test_a_container_stopped_by_its_liveness_probe_is_not_reported_as_a_crash() -> None:
    # A pod status, not the local control plane: its node agent posts no kubelet Events, and a liveness
    # kill there takes the probe's full failure budget (over 60 s) per restart.
    message = crash_looping({"exitCode": 0, "reason": "Completed"})
    assert "last exit code 0" not in message
    assert "liveness probe" in message
    assert "exit code 0, Completed" in message


@pytest.mark.parametrize(
    ("terminated", "said"),
    [
        ({"exitCode": 137, "reason": "OOMKilled"}, "exceeding its memory limit (OOMKilled, exit code 137)"),
        ({"exitCode": 137, "reason": "Error"}, "killed by SIGKILL (exit code 137, Error)"),
        ({"exitCode": 2, "reason": "Error"}, "last exit code 2"),
    ],
)
def test_how_the_last_run_ended_is_said_as_the_kubelet_saw_it(terminated: dict[str, Any], said: str) -> None:
    assert said in crash_looping(terminated)


def test_urls_in_runtime_messages_are_redacted() -> None:
    secret = "https://user:pw@bucket.example/m.wasm?X-Amz-Signature=s3cr3t#frag"
    report = parse_readyz({"ready": False, "tuples": [{
        "tenant": "acme", "sha256": SHA, "warm": 0, "target": 1, "ready": False,
        "error": {"code": "module_unreachable", "message": f"cannot fetch {secret}: HTTP 403"},
    }]})
    problem = diagnose(deployment=None, pods=[], reports={"p": report})
    assert problem is not None
    assert "s3cr3t" not in problem.message
    assert "pw" not in problem.message
    assert "cannot fetch https://bucket.example/m.wasm?<redacted>: HTTP 403" in problem.message
